"""Host tasks of the inside feature: each runs on the sandbox's own host (its queue),
reads or changes the sandbox from outside, and returns data (docs/inside.md). The web
host may be another machine: nothing here touches the database."""
from __future__ import annotations

from celery import shared_task

from labs.inside.host import WRITE_TIMEOUT, host_errors, images_untag, layer_commit


@shared_task(name="labs.inside.inside_read", soft_time_limit=20, time_limit=30)
@host_errors
def inside_read(sid: str, views: list[str]) -> dict:
    """The asked views (layers, changes, container) of a sandbox of this host."""
    from labs.hostconfig import host_config
    from sandbox.inside.host import VIEWS, inside_view

    return inside_view(host_config(), sid, tuple(v for v in views if v in VIEWS))


@shared_task(name="labs.inside.inside_tree", soft_time_limit=20, time_limit=30)
@host_errors
def inside_tree(sid: str, path: str) -> dict:
    """One directory of a sandbox's merged root, entry by entry with its layer."""
    from labs.hostconfig import host_config
    from sandbox.inside.host import inside_tree as tree

    return tree(host_config(), sid, path)


@shared_task(name="labs.inside.inside_commit", soft_time_limit=WRITE_TIMEOUT, time_limit=WRITE_TIMEOUT + 30)
def inside_commit(sid: str, ref: str, created_by: str, comment: str = "", author: str = "",
                  replace: bool = True, squash_at: int = 0) -> dict:
    """Tag `ref` as the sandbox's stack plus its container layer (checkpoint or commit)."""
    return layer_commit(sid, ref, created_by, comment=comment, author=author, replace=replace, squash_at=squash_at)


@shared_task(name="labs.inside.inside_untag", soft_time_limit=60, time_limit=90)
def inside_untag(refs: list[str]) -> int:
    """Untag images in this host's store (their layers go at the next `image gc`)."""
    return images_untag(refs)


@shared_task(name="labs.inside.image_send", soft_time_limit=1800, time_limit=1860)
def image_send(ref: str, token: str, fmt: str = "oci", skip: list[str] | None = None) -> dict:
    """Stream an image of this host's store, as an `oci` or `docker` archive, into the
    Redis pipe `token` (a download, or another host fetching it); {"sent": bytes} or {"error"}."""
    import redis

    from labs.hostconfig import host_config
    from sandbox.images.exceptions import ImageError
    from sandbox.images.pipe import IDLE, PipeBroken, PipeWriter, pipe_key
    from sandbox.images.store import ImageStore
    from sandbox.images.stream import write_archive

    cfg = host_config()
    out = PipeWriter(redis.Redis.from_url(cfg.redis_url, socket_timeout=IDLE + 10), pipe_key(token))
    try:
        store = ImageStore(cfg.images_dir, uid_base=cfg.uid_base, id_count=cfg.id_count)
        write_archive(store.resolve(ref), store, out, fmt=fmt, skip=skip or ())
        out.finish()
    except PipeBroken as exc:
        return {"error": str(exc)}
    except (ImageError, OSError) as exc:
        out.fail(str(exc))
        return {"error": str(exc)}
    return {"sent": out.sent}
