"""/metrics: off without METRICS_TOKEN, behind the bearer token, parsed with Prometheus'
own text parser, and moved by a real sandbox start, check and stop in a real worker."""
from __future__ import annotations

import json

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import IS_ROOT, ROOT, wait_for
from tests.support import free_port

TOKEN = "metrics-token-for-tests-0123456789"


def scrape(client) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} as Prometheus would read the page."""
    resp = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert resp.status_code == 200, resp.content
    assert resp["Content-Type"].startswith("text/plain; version=")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.content.decode()) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_are_off_when_no_token_is_set(client, db, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_metrics_need_the_bearer_token(client, db, settings):
    settings.METRICS_TOKEN = TOKEN
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong-token").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_redis_reachability_is_reported_and_the_database_part_still_answers(transactional_db):
    from prometheus_client import CollectorRegistry, generate_latest

    from monitoring.collector import LabCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(LabCollector(redis.Redis(port=free_port(), socket_connect_timeout=0.5)))
    text = generate_latest(registry).decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["lab_redis_up"] == 0.0
    assert "lab_sessions" in samples and "lab_host_up" not in samples


@pytest.fixture
def smoke_lab(transactional_db):
    from labs.labfile import load_lab
    from labs.services import lab_import

    return lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / "smoke"))[0]


@pytest.mark.root
@pytest.mark.sandbox
@pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root")
def test_a_real_start_check_and_stop_move_the_metrics(worker, smoke_lab, make_user, client, settings):
    settings.METRICS_TOKEN = TOKEN
    host = settings.LAB_HOST_NAME
    before = scrape(client)
    assert value(before, "lab_redis_up") == 1.0
    assert value(before, "lab_host_up", host=host) == 1.0
    beat = json.loads(redis.Redis.from_url(settings.REDIS_URL).get(f"lab:host:{host}"))
    assert value(before, "lab_host_capacity", host=host) == beat["capacity"] > 0  # derived from the host

    client.force_login(make_user())
    sid = client.post("/api/sessions/", {"lab": "smoke"}, content_type="application/json").json()["id"]
    wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] == "ready", timeout=30, what="ready")
    # The worker (another process, two pool children) counted; this process only reads Redis.
    started = wait_for(lambda: (s := scrape(client)) and value(s, "lab_host_sandboxes", host=host) >= 1 and s,
                       timeout=10, what="the heartbeat to show the sandbox")
    assert value(started, "lab_sandbox_starts_total", host=host) == value(before, "lab_sandbox_starts_total",
                                                                           host=host) + 1
    assert value(started, "lab_sandbox_start_seconds_count", host=host) == value(
        before, "lab_sandbox_start_seconds_count", host=host) + 1
    assert value(started, "lab_sandbox_start_seconds_bucket", host=host, le="+Inf") == value(
        started, "lab_sandbox_start_seconds_count", host=host)
    assert value(started, "lab_sandbox_start_seconds_sum", host=host) > value(
        before, "lab_sandbox_start_seconds_sum", host=host)
    assert value(started, "lab_active_trainees", lab="smoke") == 1.0
    assert value(started, "lab_sessions", state="ready") >= 1.0

    result = client.post(f"/api/sessions/{sid}/check?wait=1", {"step": "make-file"}, content_type="application/json").json()
    assert result["passed"] is False
    checked = wait_for(lambda: (s := scrape(client)) and value(s, "lab_checks_total", host=host, result="failed")
                       > value(before, "lab_checks_total", host=host, result="failed") and s,
                       timeout=10, what="the check to be counted")
    assert value(checked, "lab_checks_total", host=host, result="failed") == value(
        before, "lab_checks_total", host=host, result="failed") + 1
    assert value(checked, "lab_check_seconds_count", host=host) == value(before, "lab_check_seconds_count",
                                                                         host=host) + 1

    assert client.delete(f"/api/sessions/{sid}/").status_code in (200, 202, 204)
    wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] == "stopped", timeout=30, what="stopped")
    stopped = wait_for(lambda: (s := scrape(client)) and value(s, "lab_sandbox_stops_total", host=host,
                                                               reason="stopped") > 0 and s, timeout=10, what="stop")
    assert value(stopped, "lab_sandbox_stops_total", host=host, reason="stopped") == value(
        before, "lab_sandbox_stops_total", host=host, reason="stopped") + 1
    assert value(stopped, "lab_active_trainees", lab="smoke") == 0.0


def test_the_reapers_actions_are_counted(transactional_db, client, settings):
    """Run the reaper task as the worker would (Celery's signals fire around apply())."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from labs.models import Lab, Session
    from labs.tasks import reap_sessions

    settings.METRICS_TOKEN = TOKEN
    user = get_user_model().objects.create_user("late")
    lab = Lab.objects.create(slug="l1", title={"en": "L"}, image="lab/base:latest", version="1")
    session = Session.objects.create(user=user, lab=lab, host="gone-host", state=Session.State.STARTING)
    Session.objects.filter(id=session.id).update(created_at=timezone.now() - timedelta(hours=1),
                                                 state_changed_at=timezone.now() - timedelta(hours=1))
    before = scrape(client)
    assert reap_sessions.apply().get()["stale"] == 1
    after = scrape(client)
    assert value(after, "lab_reaper_actions_total", action="stale") == value(
        before, "lab_reaper_actions_total", action="stale") + 1
    assert value(after, "lab_sandbox_start_failures_total", host="", reason="no_host") == value(
        before, "lab_sandbox_start_failures_total", host="", reason="no_host") + 1


@pytest.mark.root
@pytest.mark.sandbox
@pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root")
def test_a_terminal_nobody_reads_shows_as_paused_with_its_backlog(worker, smoke_lab, make_user, client, settings):
    """`yes` with no viewer acknowledging: the relay stops reading at its window, and the
    heartbeat (so /metrics) says so."""
    from labs.redis import sync_redis
    from sandbox.relay import streams
    from sandbox.relay.server import WINDOW_BYTES

    settings.METRICS_TOKEN = TOKEN
    host = settings.LAB_HOST_NAME
    client.force_login(make_user())
    sid = client.post("/api/sessions/", {"lab": "smoke"}, content_type="application/json").json()["id"]
    wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] == "ready", timeout=30, what="ready")
    assert value(scrape(client), "lab_relay_paused_terminals", host=host) == 0.0
    sync_redis().xadd(streams.in_key(sid), {"d": b"yes\r"})  # typed as the terminal's WebSocket would
    paused = wait_for(lambda: (s := scrape(client)) and value(s, "lab_relay_paused_terminals", host=host) == 1.0 and s,
                      timeout=30, what="the relay to pause the terminal")
    assert value(paused, "lab_relay_backlog_bytes", host=host) >= WINDOW_BYTES
    assert client.delete(f"/api/sessions/{sid}/").status_code in (200, 202, 204)
    wait_for(lambda: value(scrape(client), "lab_relay_paused_terminals", host=host) == 0.0, timeout=30,
             what="the stopped terminal to leave the count")
