"""Committed images beyond the host that made them: downloads from the page, and starts
on another host (docs/inside.md, *Images across hosts*).

A committed image lives in the store of the host that committed it. Its bytes leave it
only through a Redis pipe (sandbox/images/pipe.py), a bounded window at a time:
- a download: the web server asks that host to stream the archive and passes it on to
  the browser as it comes (the web server needs no store of its own);
- a start elsewhere: the session is placed like any other (the host with the most free
  places); if that host's store lacks the image, its start task fetches the blobs it
  does not have from a host that holds it (the one that made it, or one that fetched it
  since: `CommittedImage.holders`), checks each against its digest (and the manifest
  against the digest recorded at commit), and tags it.
"""
from __future__ import annotations

import secrets
from typing import AsyncIterator

from asgiref.sync import sync_to_async
from celery import current_app
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from labs import selectors
from labs.exceptions import BadRequest, Conflict, NotFound, ServiceUnavailable
from labs.models import CommittedImage
from sandbox.images.pipe import (IDLE, PipeBroken, PipeReader, pipe_close, pipe_entry, pipe_key, pipe_open, pipe_read,
                                  reader_key)
from sandbox.images.stream import FORMATS
from labs.i18n import say

# At most this many blob digests go to the sender as "already here" (else it sends all).
SKIP_MAX = 4096


def _send_task(host: str, ref: str, token: str, **kwargs) -> None:
    current_app.send_task("labs.inside.image_send", args=[ref, token], kwargs=kwargs, queue=f"host.{host}", expires=IDLE)


def image_sources(image: CommittedImage, *, exclude: str = "") -> list[str]:
    """Hosts online whose stores hold this commit: the one that made it, then those that
    fetched it since."""
    alive = {h["host"] for h in selectors.hosts_alive()}
    return [h for h in dict.fromkeys([image.host, *(image.holders or [])]) if h in alive and h != exclude]


def _redis():
    import redis

    return redis.Redis.from_url(settings.STREAMS_REDIS_URL, socket_timeout=IDLE + 10, socket_connect_timeout=2)


# ---- on a host: fetch an image it lacks --------------------------------------------

def image_fetch_here(*, ref: str) -> bool:
    """Make sure this host's store holds the committed image `ref` (fetching what it
    lacks from the host that made it); True if it was fetched."""
    from labs.hostconfig import host_config
    from sandbox.images.store import ImageStore
    from sandbox.images.stream import blobs_present, receive_image

    cfg = host_config()
    store = ImageStore(cfg.images_dir, uid_base=cfg.uid_base, id_count=cfg.id_count)
    image = CommittedImage.objects.filter(ref=ref).first()
    if image is None:
        raise NotFound(say(f"没有名为 {ref} 的镜像。", f"There is no image called {ref}."))
    local = store.refs().get(ref)
    if local is not None and local["digest"] == image.digest:
        return False  # here already, and not an older commit of the same name
    sources = image_sources(image, exclude=cfg.host)
    if not sources:
        raise ServiceUnavailable(say(f"存放 {ref} 的工作节点都不在线。", f"No worker host that holds {ref} is online."))
    have = blobs_present(store)
    r = _redis()
    failures = []
    for source in sources:
        token = secrets.token_hex(16)
        key = pipe_key(token)
        pipe_open(r, key)
        try:
            _send_task(source, ref, token, fmt="oci", skip=have if len(have) <= SKIP_MAX else [])
            receive_image(store, PipeReader(pipe_read(r, key)), ref=ref, manifest_digest=image.digest)
            break
        except PipeBroken as exc:
            failures.append(f"{source}: {exc}")
        finally:
            pipe_close(r, key)
    else:
        raise ServiceUnavailable(say(f"无法取得镜像 {ref}。", f"Could not fetch {ref}: {'; '.join(failures)}."))
    _holder_add(ref=ref, digest=image.digest, host=cfg.host)
    return True


def _holder_add(*, ref: str, digest: str, host: str) -> None:
    """Record that this host's store holds this commit (unless the name was committed
    again meanwhile: then it holds an older one)."""
    with transaction.atomic():
        image = CommittedImage.objects.select_for_update().filter(ref=ref, digest=digest).first()
        if image is not None and host != image.host and host not in (image.holders or []):
            image.holders = [*(image.holders or []), host]
            image.save(update_fields=["holders"])


# ---- on the web: a download --------------------------------------------------------

def download_target(*, user: AbstractBaseUser, ref: str, fmt: str) -> CommittedImage:
    """The user's own image to download as `fmt`; NotFound for any other."""
    if fmt not in FORMATS:
        raise BadRequest(say("format：oci 或 docker。", "format: oci or docker."))
    if not ref:
        raise BadRequest(say("请用 ?image=<名字:标签> 指明要下载的镜像。", "Say which image to download: ?image=<name:tag>."))
    image = CommittedImage.objects.filter(user=user, ref=ref).first()
    if image is None:
        raise NotFound(say(f"你没有名为 {ref} 的镜像。", f"You have no image called {ref}."))
    if not image_sources(image):
        raise ServiceUnavailable(say(f"存放 {ref} 的工作节点不在线。", f"The worker host that holds {ref} is offline."))
    return image


def download_name(image: CommittedImage, fmt: str) -> str:
    """The file name a browser saves the archive as."""
    name = image.ref.replace("/", "_").replace(":", "_")
    return f"{name}.{'oci' if fmt == 'oci' else 'docker'}.tar"


def _download_lock(user_id: int) -> str:
    return f"lab:download:{user_id}"


async def download_stream(*, image: CommittedImage, fmt: str) -> AsyncIterator[bytes]:
    """The archive's bytes as the image's host sends them. The first chunk is awaited
    before this returns, so a host that cannot send raises here (ServiceUnavailable),
    before any response has started. One download per user at a time: each holds one
    of its host's worker slots while it runs."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(settings.STREAMS_REDIS_URL, socket_timeout=IDLE + 10, socket_connect_timeout=2)
    token = secrets.token_hex(16)
    key = pipe_key(token)
    lock = _download_lock(image.user_id)
    if not await r.set(lock, token, nx=True, ex=int(IDLE * 2)):
        await r.aclose()
        raise Conflict(say("你已有一个下载正在进行，请等它结束。", "One of your downloads is still running: wait for it to end."))
    await r.set(reader_key(key), 1, ex=int(IDLE * 2))
    try:
        sources = await sync_to_async(image_sources)(image)
        if not sources:
            raise ServiceUnavailable(say(f"存放 {image.ref} 的工作节点不在线。", f"The worker host that holds {image.ref} is offline."))
        await sync_to_async(_send_task)(sources[0], image.ref, token, fmt=fmt)
    except BaseException:
        await r.delete(reader_key(key), lock)
        await r.aclose()
        raise
    chunks = _read(r, key, lock)
    try:
        first = await chunks.__anext__()
    except (PipeBroken, StopAsyncIteration) as exc:
        await chunks.aclose()
        raise ServiceUnavailable(say(f"镜像所在的主机无法发送它：{exc}。", f"The image's host could not send it: {exc}.")) from None

    async def body() -> AsyncIterator[bytes]:
        try:
            yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    return body()


async def _read(r, key: str, lock: str) -> AsyncIterator[bytes]:
    """pipe_read over asyncio Redis, keeping the user's download lock while it reads."""
    last = "0-0"
    try:
        while True:
            got = await r.xread({key: last}, count=8, block=int(IDLE * 1000))
            if not got:
                raise PipeBroken(f"the host sent nothing for {IDLE:g} s")
            await r.expire(reader_key(key), int(IDLE * 2))
            await r.expire(lock, int(IDLE * 2))
            for entry_id, fields in got[0][1]:
                last = entry_id
                await r.xdel(key, entry_id)
                chunk = pipe_entry(fields)
                if chunk is None:
                    return
                if chunk:
                    yield chunk
    finally:
        await r.delete(reader_key(key), key, lock)
        await r.aclose()
