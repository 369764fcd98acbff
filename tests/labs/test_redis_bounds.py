"""Redis and the database stay bounded against a hostile web user (issue 13, item 6):
no input to an ended session, capped input streams, every stream of an ended session
expires, a per-user WebSocket cap, and recordings kept for a retention period only."""
from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client

from tests.conftest import IS_ROOT, wait_for
from tests.labs.test_sessions import smoke_lab, start_session, ws_connect  # noqa: F401  (fixture)

pytestmark = [pytest.mark.django_db(transaction=True)]


def redis():
    from labs.redis import sync_redis

    return sync_redis()


@pytest.mark.root
@pytest.mark.sandbox
@pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root")
def test_input_to_an_ended_session_is_refused_and_its_streams_expire(worker, web, smoke_lab, make_user, client):
    from sandbox.relay import streams

    client.force_login(make_user())
    session = start_session(client)
    sid = session["id"]
    with ws_connect(web, client, session["ws"]) as ws:
        ws.send(b"echo still-typing\r")
        assert redis().exists(streams.in_key(sid))
        assert client.delete(f"/api/sessions/{sid}/").status_code == 204
        wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] == "stopped", timeout=30, what="stopped")
        # The open socket keeps sending, as a hostile page would: nothing is stored.
        for _ in range(64):
            ws.send(b"x" * 65536)
        wait_for(lambda: not redis().exists(streams.in_key(sid)), timeout=5, what="no input stream")
    assert redis().exists(streams.in_key(sid)) == 0
    ttl = redis().ttl(streams.out_key(sid))
    assert 0 < ttl <= streams.ENDED_TTL, ttl
    # A new socket to the ended session is closed at once.
    with ws_connect(web, client, session["ws"]) as ws:
        with pytest.raises(Exception):
            while True:
                ws.recv(timeout=5)
    assert ws.close_code == 4410
    # Another session starts and takes input as usual.
    other = Client()
    other.force_login(make_user("other"))
    fresh = start_session(other)
    with ws_connect(web, other, fresh["ws"]) as ws:
        ws.send(b"echo ok-$((6*7))\r")
        seen = bytearray()

        def echoed() -> bool:
            try:
                msg = ws.recv(timeout=0.2)
            except TimeoutError:
                return False
            if isinstance(msg, bytes):
                seen.extend(msg)
            return b"ok-42" in seen

        wait_for(echoed, timeout=10, what="echo in the other session")


def test_an_input_stream_nobody_reads_is_capped_in_length(web, smoke_lab, make_user, client):
    from labs.models import Session
    from sandbox.relay import streams

    # A live session whose host's relay does not read (it is away): the worst case.
    user = make_user()
    session = Session.objects.create(user=user, lab=smoke_lab, host="away", state=Session.State.READY)
    redis().xadd(streams.in_key(session.id), {"o": b""})
    client.force_login(user)
    with ws_connect(web, client, f"/ws/terminal/{session.id}/") as ws:
        for _ in range(2000):
            ws.send(b"y" * 1024)
        ws.send('{"type": "resize", "cols": 80, "rows": 24}')
        wait_for(lambda: redis().xrevrange(streams.in_key(session.id), count=1)[0][1].get(b"r"), timeout=20,
                 what="the last frame stored")
    # Approximate trimming works per radix-tree node (100 entries): within one node of the cap.
    assert redis().xlen(streams.in_key(session.id)) <= streams.INPUT_MAXLEN + 100


def test_websockets_per_user_are_capped_and_other_users_still_connect(web, smoke_lab, make_user, client):
    from labs.models import Session

    user = make_user()
    session = Session.objects.create(user=user, lab=smoke_lab, host="away", state=Session.State.STOPPED)
    client.force_login(user)
    path = f"/ws/terminal/{session.id}/"
    limit = settings.LAB_USER_WEBSOCKET_LIMIT
    # Sockets to an ended session close at once and free their place.
    for _ in range(limit + 3):
        with ws_connect(web, client, path) as ws:
            with pytest.raises(Exception):
                while True:
                    ws.recv(timeout=5)
        assert ws.close_code == 4410
    live = Session.objects.create(user=user, lab=smoke_lab, host="away", state=Session.State.READY)
    stack = contextlib.ExitStack()
    held = [stack.enter_context(ws_connect(web, client, f"/ws/terminal/{live.id}/")) for _ in range(limit)]
    with stack:
        for ws in held:
            assert '"hello"' in ws.recv(timeout=5)
        with ws_connect(web, client, f"/ws/terminal/{live.id}/") as extra:
            assert "Too many terminals" in extra.recv(timeout=5)
            with pytest.raises(Exception):
                extra.recv(timeout=5)
        assert extra.close_code == 4429
        other_user = make_user("other")
        theirs = Session.objects.create(user=other_user, lab=smoke_lab, host="away", state=Session.State.READY)
        other = Client()
        other.force_login(other_user)
        with ws_connect(web, other, f"/ws/terminal/{theirs.id}/") as ws:
            assert '"hello"' in ws.recv(timeout=5)
        held.pop().close()
        # One closed: a place is free again.
        with ws_connect(web, client, f"/ws/terminal/{live.id}/") as ws:
            assert '"hello"' in ws.recv(timeout=5)


def test_recordings_past_their_retention_are_deleted(smoke_lab, make_user):
    from django.utils import timezone

    from labs.models import Recording, Session
    from labs.services import recordings_expire

    user = make_user()
    old, new = (Session.objects.create(user=user, lab=smoke_lab, host="h", state=Session.State.STOPPED) for _ in range(2))
    Recording.objects.create(session=old, cast="{}")
    Recording.objects.create(session=new, cast="{}")
    Recording.objects.filter(session=old).update(created_at=timezone.now() - timedelta(days=settings.LAB_RECORDING_DAYS + 1))
    assert recordings_expire() == 1
    assert list(Recording.objects.values_list("session_id", flat=True)) == [new.id]
