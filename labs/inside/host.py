"""Work of the inside feature done on the sandbox's own host: what its Celery tasks
(labs.inside.tasks) run, and what labs.inside.services runs in-process when it is
already on that host. The web host may be another machine: nothing here touches the
database."""
from __future__ import annotations

from labs.hostconfig import host_config
from sandbox.exceptions import SandboxError
from sandbox.images.exceptions import ImageError, ImageNotFound
from sandbox.images.store import ImageStore
from sandbox.inside.checkpoint import upper_commit
from sandbox.service import layout_for

READ_TIMEOUT = 15
WRITE_TIMEOUT = 60


def host_errors(func):
    """Turn the engine's errors into {"error": message} for the web to raise."""
    def run(*args, **kwargs) -> dict:
        try:
            return func(*args, **kwargs)
        except (SandboxError, ImageError) as exc:
            return {"error": str(exc)}

    run.__name__, run.__doc__ = func.__name__, func.__doc__
    return run


@host_errors
def layer_commit(sid: str, ref: str, created_by: str, comment: str = "", author: str = "",
                 replace: bool = True, squash_at: int = 0) -> dict:
    """Tag `ref` as the sandbox's stack plus its container layer (checkpoint or commit)."""
    cfg = host_config()
    if not replace and ref in ImageStore(cfg.images_dir).refs():
        # Sent back through Celery: plain text, the web cannot choose a language here.
        return {"error": f"已有名为 {ref} 的镜像，请换一个名字或标签。An image called {ref} already exists; choose another name or tag."}
    image, seconds = upper_commit(cfg, layout_for(cfg, sid), ref=ref, created_by=created_by,
                                 comment=comment, author=author, squash_at=squash_at)
    top = image.layers[-1]
    return {"ref": image.ref, "digest": image.manifest_digest, "id": image.id, "diff_id": top.diff_id,
            "size": top.size, "tar_seconds": seconds}


def images_untag(refs: list[str]) -> int:
    """Untag images in this host's store (their layers go at the next `image gc`)."""
    store = ImageStore(host_config().images_dir)
    removed = 0
    for ref in refs:
        try:
            store.remove(ref)
            removed += 1
        except ImageNotFound:
            pass
    return removed
