"""Reads: labs as the page and API show them, sessions, live hosts."""
from __future__ import annotations

import json

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from labs.exceptions import NotFound
from labs.markdown import render_markdown
from labs.models import Lab, Session, Step
from labs.redis import sync_redis
from sandbox.relay import streams


def pick(text: dict | str | None, lang: str) -> str:
    """One language of a bilingual field: asked for, then zh-hans, then en."""
    if not text:
        return ""
    if isinstance(text, str):
        return text
    return text.get(lang) or text.get("zh-hans") or text.get("en") or ""


def pick_quiz(text: dict | None, lang: str) -> str:
    """pick() for quiz texts, stored as asdict(Text): {"zh_hans", "en"}."""
    return pick({"zh-hans": text.get("zh_hans", ""), "en": text.get("en", "")} if text else None, lang)


INSTRUCTORS_GROUP = "instructors"


def lab_get(*, slug: str) -> Lab:
    """A published lab by slug, or NotFound: what anyone may see. Pages, the API and
    Start use lab_for, which also lets a lab's author and admins reach it unpublished."""
    try:
        return Lab.objects.get(slug=slug, published=True, draft_of__isnull=True)
    except Lab.DoesNotExist:
        raise NotFound(f"no lab named {slug!r}") from None


def is_admin(user: AbstractBaseUser) -> bool:
    """Staff see and may edit every lab."""
    return bool(user.is_authenticated and (user.is_staff or user.is_superuser))


def can_author(user: AbstractBaseUser) -> bool:
    """May upload labs: members of the "instructors" group, and admins."""
    return is_admin(user) or bool(user.is_authenticated and user.groups.filter(name=INSTRUCTORS_GROUP).exists())


def may_edit(*, user: AbstractBaseUser, lab: Lab) -> bool:
    """The lab's author (its owner) and admins may preview, test, publish and re-upload it."""
    return is_admin(user) or bool(user.is_authenticated and lab.owner_id is not None and lab.owner_id == user.id)


def lab_visible(*, user: AbstractBaseUser, lab: Lab) -> bool:
    """The one lab-lookup rule: a published lab for everyone signed in; an unpublished lab
    or a draft for its author and admins only."""
    if lab.published and lab.draft_of_id is None:
        return bool(user.is_authenticated)
    return may_edit(user=user, lab=lab)


def lab_for(*, user: AbstractBaseUser, slug: str) -> Lab:
    """A lab this user may see, learn from and start a sandbox of (lab_visible); else NotFound,
    the same answer as for a lab that does not exist."""
    lab = Lab.objects.filter(slug=slug).first()
    if lab is None or not lab_visible(user=user, lab=lab):
        raise NotFound(f"no lab named {slug!r}")
    return lab


def lab_summary(lab: Lab, lang: str) -> dict:
    """A lab as the catalogue lists it."""
    return {
        "slug": lab.slug, "title": pick(lab.title, lang), "summary": pick(lab.summary, lang),
        "level": lab.level, "minutes": lab.minutes, "image": lab.image, "tags": lab.tags,
    }


def lab_list(*, lang: str) -> list[dict]:
    """Every published lab, in catalogue order."""
    return [lab_summary(lab, lang) for lab in Lab.objects.filter(published=True, draft_of__isnull=True)]


def step_view(step: Step, lang: str) -> dict:
    """A step for the page: rendered, sanitised Markdown; no check or solution text."""
    quiz = step.data.get("quiz")
    return {
        "id": step.key, "title": pick(step.title, lang), "html": render_markdown(pick(step.text, lang)),
        "kind": "quiz" if quiz else "task", "has_check": bool(step.data.get("check")),
        "hints": len(step.data.get("hints") or []), "has_solution": bool(step.data.get("solution")),
        "auto_check": bool(step.data.get("auto_check")), "quiz": quiz_public(quiz, lang),
    }


def quiz_public(quiz: dict | None, lang: str) -> dict | None:
    """A quiz as the trainee sees it before answering: no correct flags, pattern or explanation."""
    if not quiz:
        return None
    return {
        "kind": quiz["kind"], "question": pick_quiz(quiz.get("question"), lang),
        "question_html": render_inline(pick_quiz(quiz.get("question"), lang)),
        "choices": [{"id": c["id"], "text": pick_quiz(c.get("text"), lang),
                     "html": render_inline(pick_quiz(c.get("text"), lang))} for c in quiz.get("choices") or ()],
    }


def render_inline(text: str) -> str:
    """Short lab text (a question, a choice, a hint) as sanitised HTML without the outer <p>."""
    html = render_markdown(text).strip()
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        html = html[3:-4]
    return html


def lab_detail(*, user: AbstractBaseUser, slug: str, lang: str) -> dict:
    """A lab with its steps (lab_for decides who may see it)."""
    lab = lab_for(user=user, slug=slug)
    data = lab_summary(lab, lang)
    data["steps"] = [step_view(s, lang) for s in lab.steps.filter(retired=False)]
    return data


def session_view(session: Session) -> dict:
    """A session as the API returns it."""
    return {
        "id": session.id, "state": session.state, "lab": session.lab.slug, "host": session.host,
        "message": session.message, "ws": f"/ws/terminal/{session.id}/",
        "created_at": session.created_at.isoformat() if session.created_at else None,
        "expires_at": session.expires_at.isoformat() if session.expires_at else None,
    }


def session_of_user(*, user: AbstractBaseUser, sid: str) -> Session:
    """The user's own session; another user's is indistinguishable from a missing one."""
    try:
        return Session.objects.select_related("lab").get(id=sid, user=user)
    except Session.DoesNotExist:
        raise NotFound("no such session") from None


def live_sessions(*, user: AbstractBaseUser) -> QuerySet[Session]:
    """The user's sessions that hold (or are getting) a sandbox."""
    return Session.objects.filter(user=user, state__in=Session.LIVE_STATES).select_related("lab")


def live_session_for_lab(*, user: AbstractBaseUser, lab: Lab) -> Session | None:
    """The user's live session of a lab, if any."""
    return live_sessions(user=user).filter(lab=lab).first()


def hosts_alive() -> list[dict]:
    """Worker hosts whose relay beat in the last few seconds."""
    r = sync_redis()
    names = sorted(n.decode() for n in r.smembers(streams.HOSTS_SET))
    if not names:
        return []
    beats = r.mget([streams.host_key(n) for n in names])
    return [json.loads(b) for b in beats if b]


def can_watch(*, user: AbstractBaseUser, session: Session) -> bool:
    """May this user watch (read-only) another user's session? Staff may; instructors
    may for trainees of their own cohorts (cohorts.selectors)."""
    if not user.is_authenticated:
        return False
    if user.is_superuser or user.is_staff:
        return True
    try:
        from cohorts.selectors import instructor_can_watch
    except ImportError:
        return False
    return instructor_can_watch(instructor=user, trainee_id=session.user_id, lab_id=session.lab_id)


def session_for_viewer(*, user: AbstractBaseUser, sid: str) -> tuple[Session, bool]:
    """(session, read_only) for the owner or someone allowed to watch; NotFound otherwise."""
    session = Session.objects.select_related("lab", "user").filter(id=sid).first()
    if session is None:
        raise NotFound("no such session")
    if session.user_id == user.id:
        return session, False
    if can_watch(user=user, session=session):
        return session, True
    raise NotFound("no such session")


def recording_of(*, session: Session) -> str:
    """A finished session's asciicast text, or NotFound while it runs or if none was kept."""
    from labs.models import Recording

    rec = Recording.objects.filter(session=session).only("cast").first()
    if rec is None:
        raise NotFound("no recording for this session (yet): recordings are kept when a session ends")
    return rec.cast
