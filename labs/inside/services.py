"""Services of the inside feature: who may read and change what, quotas, records;
the work on a sandbox is done by the host tasks (labs.inside.tasks) on its host."""
from __future__ import annotations

import logging
import re

from celery import shared_task
from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Sum
from django.dispatch import receiver

from labs.exceptions import BadRequest, Conflict, NotFound, ServiceUnavailable
from labs.inside.host import READ_TIMEOUT, WRITE_TIMEOUT, images_untag, layer_commit
from labs.inside.transfer import image_sources
from labs import selectors
from labs.models import Checkpoint, CommittedImage, Lab, Session, SessionImage, Step
from labs.progress import current_step
from labs.services import START_EXPIRES, _choose_host, session_broadcast, session_set_state, session_start
from labs.signals import step_passed
from labs.i18n import say

log = logging.getLogger(__name__)
S = Session.State
CHECKPOINT_REPO = "lab-checkpoints"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def checkpoint_ref(sid: str, checkpoint_id: str) -> str:
    """The store's name for a checkpoint: the session's stack plus its container layer."""
    return f"{CHECKPOINT_REPO}/{sid}:{checkpoint_id}"


# Namespaces of the platform's own images: a user who happens to be called so gets another.
RESERVED_NAMESPACES = ("lab", CHECKPOINT_REPO, "library")


def user_namespace(user: AbstractBaseUser) -> str:
    """The image-name namespace of a user: the user name in image-name characters."""
    name = re.sub(r"[^a-z0-9._-]+", "-", user.get_username().lower()).strip("._-")
    if not name or name in RESERVED_NAMESPACES:
        return f"u{user.pk}-{name}".rstrip("-")
    return name


def checkpoints_collect(*, sid: str) -> int:
    """On the session's host, as it ends: its checkpoints go (store tags and rows)."""
    refs = list(Checkpoint.objects.filter(session_id=sid).values_list("ref", flat=True))
    if refs:
        images_untag(refs)
    Checkpoint.objects.filter(session_id=sid).delete()
    return len(refs)


def checkpoints_orphaned(*, refs: list[str]) -> list[str]:
    """Checkpoint tags in a store whose session is no longer live (it ended while its
    host was away): `image gc` untags them, and forgets their records."""
    sids = {ref.split("/", 1)[1].split(":", 1)[0] for ref in refs if ref.startswith(CHECKPOINT_REPO + "/")}
    live = set(Session.objects.filter(id__in=sids, state__in=Session.LIVE_STATES).values_list("id", flat=True))
    Checkpoint.objects.filter(session_id__in=sids - live).delete()
    return [ref for ref in refs if ref.startswith(CHECKPOINT_REPO + "/")
            and ref.split("/", 1)[1].split(":", 1)[0] not in live]


# ---- services --------------------------------------------------------------------------

def _send(session: Session, task: str, timeout: float, **kwargs) -> dict:
    """Run a host task for a ready session and wait for its answer."""
    from celery import current_app as app

    if session.state != S.READY:
        raise Conflict(say(f"沙箱现在是 {session.state}，还没就绪。", f"The sandbox is {session.state}, not ready."))
    try:
        result = app.send_task(task, args=[session.id], kwargs=kwargs, queue=f"host.{session.host}",
                               expires=timeout).get(timeout=timeout + 5)
    except CeleryTimeout:
        raise ServiceUnavailable(say("沙箱主机没有及时响应。", "The sandbox host did not answer in time; try again.")) from None
    if isinstance(result, dict) and "error" in result:
        raise Conflict(result["error"])
    return result


def session_inside(*, session: Session, views: tuple[str, ...]) -> dict:
    """Views of the session's sandbox, read on its host."""
    return _send(session, "labs.inside.inside_read", READ_TIMEOUT, views=list(views))


def session_tree(*, session: Session, path: str) -> dict:
    """A directory of the session's merged root, read on its host (like `dive`)."""
    if len(path) > 4096:
        raise BadRequest(say("路径太长。", "The path is too long."))
    return _send(session, "labs.inside.inside_tree", READ_TIMEOUT, path=path)


def _quota(user: AbstractBaseUser, *, images: int = 0, checkpoints: int = 0) -> None:
    """Refuse what would take the user past their checkpoints, images or bytes."""
    if checkpoints and Checkpoint.objects.filter(user=user).count() + checkpoints > settings.LAB_USER_CHECKPOINTS:
        raise Conflict(say(f"最多保留 {settings.LAB_USER_CHECKPOINTS} 个检查点。",
                           f"You may keep at most {settings.LAB_USER_CHECKPOINTS} checkpoints: stop an old session to free them."))
    if images and CommittedImage.objects.filter(user=user).count() + images > settings.LAB_USER_IMAGES:
        raise Conflict(say(f"最多保留 {settings.LAB_USER_IMAGES} 个镜像。",
                           f"You may keep at most {settings.LAB_USER_IMAGES} images: remove one first."))
    used = ((Checkpoint.objects.filter(user=user).aggregate(n=Sum("size"))["n"] or 0)
            + (CommittedImage.objects.filter(user=user).aggregate(n=Sum("size"))["n"] or 0))
    if used > settings.LAB_USER_LAYER_MB << 20:
        raise Conflict(say(f"你的检查点和镜像已占用 {used >> 20} MiB（上限 {settings.LAB_USER_LAYER_MB} MiB）。",
                           f"Your checkpoints and images hold {used >> 20} MiB, over your "
                           f"{settings.LAB_USER_LAYER_MB} MiB: remove some first."))


def checkpoint_view(cp: Checkpoint) -> dict:
    """A checkpoint as the API shows it."""
    return {"id": cp.id, "diff_id": cp.diff_id, "size": cp.size, "step": cp.step, "auto": cp.auto,
            "created_at": cp.created_at.isoformat()}


def _current_step_key(session: Session) -> str:
    """The trainee's current step (the first not passed: labs.progress.current_step)."""
    step = current_step(user=session.user, lab=session.lab)
    return step.key if step is not None else ""


def checkpoint_create(*, session: Session, step: Step | None = None, here: bool = False) -> Checkpoint:
    """The session's container layer now, as an OCI layer in the store, and its record.
    `step`: the step that just passed (an automatic checkpoint); `here`: already on
    the session's host, so no round trip through the broker."""
    _quota(session.user, checkpoints=1)
    key = step.key if step is not None else _current_step_key(session)
    cp = Checkpoint(session=session, user=session.user, step=key, auto=step is not None)
    ref = checkpoint_ref(session.id, cp.id)
    args = {"ref": ref, "created_by": f"lab checkpoint {cp.id}" + (f" (step {key})" if key else ""),
            "comment": f"container layer of session {session.id}", "squash_at": settings.LAB_CHECKPOINT_SQUASH}
    if here:
        result = layer_commit(session.id, **args)
        if "error" in result:
            raise Conflict(result["error"])
    else:
        result = _send(session, "labs.inside.inside_commit", WRITE_TIMEOUT, **args)
    cp.ref, cp.diff_id, cp.size = ref, result["diff_id"], result["size"]
    if not Session.objects.filter(id=session.id, state__in=Session.LIVE_STATES).exists():
        _send_untag(session, [ref])  # the session ended meanwhile: nothing to keep
        raise Conflict(say("建检查点时会话已经结束。", "The session ended while the checkpoint was taken."))
    cp.save()
    session_broadcast(sid=session.id, event={"type": "inside", "view": "checkpoints", "data": checkpoint_view(cp)})
    return cp


def _send_untag(session: Session, refs: list[str]) -> None:
    from celery import current_app as app

    app.send_task("labs.inside.inside_untag", args=[refs], queue=f"host.{session.host}", expires=3600)


@receiver(step_passed, dispatch_uid="inside-checkpoint-after-pass")
def _on_step_passed(sender, *, user: AbstractBaseUser, step: Step, **_) -> None:
    checkpoint_after_pass(user=user, step=step)


def checkpoint_after_pass(*, user: AbstractBaseUser, step: Step) -> None:
    """A step passed for the first time: checkpoint the user's live sandbox of that lab,
    after the commit and off the request path (a quota reached is only logged)."""
    session = Session.objects.filter(user=user, lab_id=step.lab_id, state=S.READY).only("id", "host").first()
    if session is None:
        return
    from celery import current_app as app

    sid, host = session.id, session.host
    transaction.on_commit(lambda: app.send_task("labs.inside.checkpoint_auto", args=[sid, step.id],
                                                queue=f"host.{host}", expires=60))


@shared_task(name="labs.inside.checkpoint_auto", soft_time_limit=WRITE_TIMEOUT, time_limit=WRITE_TIMEOUT + 30)
def checkpoint_auto(sid: str, step_id: int) -> str:
    """On the host: the checkpoint taken when a step passes."""
    from labs.exceptions import LabError

    session = Session.objects.select_related("lab", "user").filter(id=sid, state=S.READY).first()
    step = Step.objects.filter(id=step_id).first()
    if session is None or step is None:
        return "gone"
    try:
        return checkpoint_create(session=session, step=step, here=True).id
    except LabError as exc:
        log.info("no automatic checkpoint for %s: %s", sid, exc.message)
        return "refused"


def checkpoints_of(*, session: Session) -> list[dict]:
    """The session's checkpoints, oldest first."""
    return [checkpoint_view(cp) for cp in Checkpoint.objects.filter(session=session)]


def session_rewind(*, session: Session, checkpoint_id: str) -> None:
    """Restart the session's sandbox on one of its checkpoints; progress is kept."""
    cp = Checkpoint.objects.filter(session=session, id=checkpoint_id).first()
    if cp is None:
        raise NotFound(say(f"这个会话没有检查点 {checkpoint_id!r}。", f"This session has no checkpoint {checkpoint_id!r}."))
    if session.state != S.READY:
        raise Conflict(say(f"沙箱现在是 {session.state}，还没就绪。", f"The sandbox is {session.state}, not ready."))
    from celery import current_app as app

    session_set_state(sid=session.id, state=S.STARTING, message="回到检查点… Rewinding to a checkpoint…")
    transaction.on_commit(lambda: app.send_task("labs.tasks.sandbox_rewind", args=[session.id, cp.ref],
                                                queue=f"host.{session.host}", expires=START_EXPIRES))


def image_commit(*, session: Session, name: str, tag: str) -> CommittedImage:
    """The container as an image of the user's own (`docker commit`)."""
    if not NAME.match(name):
        raise BadRequest(say("镜像名只能用小写字母、数字、'.'、'_'、'-'（最多 63 个），例如 mine。",
                             "name: lowercase letters, digits, '.', '_' or '-' (at most 63), e.g. mine."))
    if not TAG.match(tag):
        raise BadRequest(say("标签只能用字母、数字、'.'、'_'、'-'（最多 128 个），例如 v1。",
                             "tag: letters, digits, '.', '_' or '-' (at most 128), e.g. v1."))
    user = session.user
    ref = f"{user_namespace(user)}/{name}:{tag}"
    mine = CommittedImage.objects.filter(ref=ref).first()
    if mine is not None and mine.user_id != user.pk:
        raise Conflict(say(f"镜像名 {ref} 已被占用，请换一个。", f"The image name {ref} is taken; choose another name."))
    _quota(user, images=0 if mine else 1)
    base = session.lab.image
    result = _send(session, "labs.inside.inside_commit", WRITE_TIMEOUT, ref=ref,
                   created_by="/bin/sh -l", comment=f"lab commit of session {session.id} (from {base})",
                   author=user.get_username(), replace=mine is not None)
    image, _ = CommittedImage.objects.update_or_create(ref=ref, defaults={
        "user": user, "digest": result["digest"], "image_id": result["id"], "size": result["size"],
        "session_id": session.id, "host": session.host, "holders": []})  # this commit: on its host alone
    return image


def session_start_on_image(*, user: AbstractBaseUser, lab: Lab, ref: str) -> tuple[Session, bool]:
    """The lab in a sandbox made from one of the user's own committed images, on the host
    the usual placement picks (the image follows it). (session, created), as session_start."""
    from datetime import timedelta

    from django.utils import timezone

    image = CommittedImage.objects.filter(user=user, ref=ref).first()
    if image is None:
        raise NotFound(say(f"你没有名为 {ref} 的镜像。", f"You have no image called {ref}."))
    existing = selectors.live_session_for_lab(user=user, lab=lab)
    if existing is not None:
        return existing, False
    if selectors.live_sessions(user=user).count() >= settings.LAB_USER_SESSION_LIMIT:
        return session_start(user=user, lab=lab)  # says why it refuses, as for any start
    # Placed like any session; the start task fetches the image if that host lacks it
    # (labs/inside/transfer.py), which needs the image's own host online.
    host = _choose_host()
    if host != image.host and host not in (image.holders or []) and not image_sources(image):
        raise ServiceUnavailable(say(f"存放 {ref} 的工作节点不在线。", f"The worker host that holds {ref} is offline."))
    lifetime = int((lab.limits or {}).get("lifetime_minutes", 120))
    with transaction.atomic():
        session = Session.objects.create(user=user, lab=lab, host=host, state=S.STARTING,
                                         expires_at=timezone.now() + timedelta(minutes=lifetime))
        SessionImage.objects.create(session=session, ref=ref)
        from celery import current_app as app

        transaction.on_commit(lambda: app.send_task("labs.tasks.sandbox_start", args=[session.id],
                                                    queue=f"host.{session.host}", expires=START_EXPIRES))
    return session, True


def session_image(*, sid: str) -> str | None:
    """The committed image a session runs on instead of its lab's, if any."""
    return SessionImage.objects.filter(session_id=sid).values_list("ref", flat=True).first()


def image_view(image: CommittedImage) -> dict:
    """A committed image as the API shows it."""
    return {"image": image.ref, "digest": image.digest, "id": image.image_id, "size": image.size,
            "created_at": image.created_at.isoformat()}


def images_of(*, user: AbstractBaseUser) -> list[dict]:
    """The user's own committed images, newest first."""
    return [image_view(i) for i in CommittedImage.objects.filter(user=user)]
