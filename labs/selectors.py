"""Reads: labs as the page and API show them, sessions, live hosts."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Callable

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

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


def is_admin(user: AbstractBaseUser) -> bool:
    """Staff see and may edit every lab."""
    return bool(user.is_authenticated and (user.is_staff or user.is_superuser))


def is_instructor(user: AbstractBaseUser) -> bool:
    """An instructor: a member of the "instructors" group, or an admin (the one rule;
    cohorts and sso use it too)."""
    return is_admin(user) or bool(user.is_authenticated and user.groups.filter(name=INSTRUCTORS_GROUP).exists())


def can_author(user: AbstractBaseUser) -> bool:
    """May upload labs: instructors (and admins)."""
    return is_instructor(user)


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
        raise NotFound(_("There is no lab named “%(slug)s”: it may have been renamed, or not be published yet.")
                       % {"slug": slug})
    return lab


def lab_summary(lab: Lab, lang: str) -> dict:
    """A lab as the catalogue lists it."""
    return {
        "slug": lab.slug, "title": pick(lab.title, lang), "summary": pick(lab.summary, lang),
        "level": lab.level, "minutes": lab.minutes, "image": lab.image, "tags": lab.tags,
        "prerequisites": list(lab.prerequisites or []),
    }


def lab_list(*, lang: str) -> list[dict]:
    """Every published lab, in catalogue order."""
    return [lab_summary(lab, lang) for lab in Lab.objects.filter(published=True, draft_of__isnull=True)]


def catalogue_progress(*, user: AbstractBaseUser, labs: list[dict]) -> list[dict]:
    """The catalogue's labs with the user's progress on each: steps passed of the total,
    started, completed (two aggregate queries, whatever the number of labs)."""
    from django.db.models import Count, Q

    totals = dict(Lab.objects.filter(published=True).annotate(n=Count("steps", filter=Q(steps__retired=False)))
                  .values_list("slug", "n"))
    rows = (Step.objects.filter(retired=False, lab__published=True, progress__user=user)
            .values("lab__slug").annotate(started=Count("id"), passed=Count("id", filter=Q(progress__passed_at__isnull=False))))
    mine = {r["lab__slug"]: r for r in rows}
    out = []
    for lab in labs:
        total, row = totals.get(lab["slug"], 0), mine.get(lab["slug"], {})
        passed = row.get("passed", 0)
        out.append({**lab, "steps_total": total, "steps_passed": passed, "started": bool(row),
                    "completed": bool(total) and passed >= total,
                    "percent": round(100 * passed / total) if total else 0})
    # Prerequisites by title, each marked done or not (unpublished ones are left out).
    by_slug = {lab["slug"]: lab for lab in out}
    for lab in out:
        lab["requires"] = [{"slug": p, "title": by_slug[p]["title"], "done": by_slug[p]["completed"]}
                           for p in lab.get("prerequisites", []) if p in by_slug]
    return out


def lab_next(*, lab: Lab, lang: str) -> dict | None:
    """The published lab after this one in catalogue order, if any."""
    labs = list(Lab.objects.filter(published=True).only("slug", "position", "title", "summary"))
    slugs = [x.slug for x in labs]
    if lab.slug not in slugs or slugs.index(lab.slug) + 1 >= len(labs):
        return None
    following = labs[slugs.index(lab.slug) + 1]
    return {"slug": following.slug, "title": pick(following.title, lang)}


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
    """A session as the API returns it; a live one says when it stops unless someone
    acts (`ends_at`), and why (`ends_because`: "idle" or "lifetime")."""
    view = {
        "id": session.id, "state": session.state, "lab": session.lab.slug, "host": session.host,
        "message": session.message, "ws": f"/ws/terminal/{session.id}/",
        "created_at": session.created_at.isoformat() if session.created_at else None,
        "expires_at": session.expires_at.isoformat() if session.expires_at else None,
    }
    if session.state in Session.LIVE_STATES:
        idle_end = session_idle_end(session, activity=session_activity(), extended=session_extended(session.id))
        reason, end = session_end(session, idle_end=idle_end)
        view.update(ends_at=end.isoformat(), ends_because=reason, idle_ends_at=idle_end.isoformat(),
                    idle_minutes=idle_minutes(session.lab))
    return view


def idle_minutes(lab: Lab) -> int:
    """Minutes without a keystroke after which a lab's sandbox stops."""
    return int((lab.limits or {}).get("idle_minutes", 30))


def extended_key(sid: str) -> str:
    """Redis key: when the trainee last pressed Extend (it restarts the idle clock too)."""
    return f"lab:extended:{sid}"


def session_extended(sid: str) -> float | None:
    """When the trainee last pressed Extend (epoch seconds), if they did."""
    value = sync_redis().get(extended_key(sid))
    return float(value) if value else None


def session_activity() -> dict[str, float]:
    """Session id -> time of its last keystroke (epoch seconds), as the live hosts report it."""
    activity: dict[str, float] = {}
    for beat in hosts_alive():
        activity.update(beat.get("activity") or {})
    return activity


def session_idle_end(session: Session, *, activity: dict[str, float], extended: float | None) -> datetime:
    """When the idle limit stops the sandbox: its limit after the last keystroke or Extend
    (or after it became ready, before either)."""
    stamps = [t for t in (activity.get(session.id), extended) if t]
    if stamps:
        last = datetime.fromtimestamp(max(stamps), tz=dt_timezone.utc)
    else:
        last = session.ready_at or session.created_at or timezone.now()
    return last + timedelta(minutes=idle_minutes(session.lab))


def session_end(session: Session, *, idle_end: datetime) -> tuple[str, datetime]:
    """(reason, when): whichever ends the sandbox first, the idle limit or the lifetime."""
    ends = [("idle", idle_end)]
    if session.expires_at:
        ends.append(("lifetime", session.expires_at))
    return min(ends, key=lambda e: e[1])


def session_of_user(*, user: AbstractBaseUser, sid: str) -> Session:
    """The user's own session; another user's is indistinguishable from a missing one."""
    try:
        return Session.objects.select_related("lab").get(id=sid, user=user)
    except Session.DoesNotExist:
        raise NotFound(_("There is no such sandbox session.")) from None


def live_sessions(*, user: AbstractBaseUser) -> QuerySet[Session]:
    """The user's sessions that hold (or are getting) a sandbox."""
    return Session.objects.filter(user=user, state__in=Session.LIVE_STATES).select_related("lab")


def live_session_for_lab(*, user: AbstractBaseUser, lab: Lab) -> Session | None:
    """The user's live session of a lab, if any."""
    return live_sessions(user=user).filter(lab=lab).first()


def recent_end_for_lab(*, user: AbstractBaseUser, lab: Lab, within: timedelta = timedelta(hours=1)) -> Session | None:
    """The user's latest session of a lab if it ended against their will (failed to start,
    or lost with its host) within the last hour: the page says so instead of "not started"."""
    latest = Session.objects.filter(user=user, lab=lab).select_related("lab").first()  # newest first
    if latest is None or latest.state not in (Session.State.FAILED, Session.State.LOST):
        return None
    if latest.ended_at is None or latest.ended_at < timezone.now() - within:
        return None
    return latest


def host_holds(*, host: str) -> bool:
    """Whether the host's PTY holder beats: its sandboxes live, even while its relay restarts."""
    return bool(sync_redis().exists(streams.holder_key(host)))


DRAINED = "lab:hosts:drained"  # names of the hosts an operator drains (`manage.py hosts drain`)


def host_draining(*, host: str) -> bool:
    """Whether the host is drained: it keeps its sessions, takes no new ones."""
    return bool(sync_redis().sismember(DRAINED, host))


def hosts_draining() -> set[str]:
    """Names of the drained hosts."""
    return {n.decode() for n in sync_redis().smembers(DRAINED)}


def hosts_alive() -> list[dict]:
    """Worker hosts whose relay beat in the last few seconds."""
    r = sync_redis()
    names = sorted(n.decode() for n in r.smembers(streams.HOSTS_SET))
    if not names:
        return []
    beats = r.mget([streams.host_key(n) for n in names])
    return [json.loads(b) for b in beats if b]


# Who else may watch a session, as apps above labs grant it: each rule is called as
# rule(user=, session=) and grants by returning True. cohorts registers its own in
# CohortsConfig.ready() (its instructors watch their trainees); labs never imports it.
WATCH_RULES: list[Callable[..., bool]] = []


def watch_rule_add(rule: Callable[..., bool]) -> None:
    """Let one more rule grant watching (once per rule, however often ready() runs)."""
    if rule not in WATCH_RULES:
        WATCH_RULES.append(rule)


def can_watch(*, user: AbstractBaseUser, session: Session) -> bool:
    """May this user watch (read-only) another user's session? Staff may; others when a
    registered rule grants it (cohorts: instructors, for trainees of their own cohorts)."""
    if not user.is_authenticated:
        return False
    if user.is_superuser or user.is_staff:
        return True
    return any(rule(user=user, session=session) for rule in WATCH_RULES)


def session_for_viewer(*, user: AbstractBaseUser, sid: str) -> tuple[Session, bool]:
    """(session, read_only) for the owner or someone allowed to watch; NotFound otherwise."""
    session = Session.objects.select_related("lab", "user").filter(id=sid).first()
    if session is None:
        raise NotFound(_("There is no such sandbox session."))
    if session.user_id == user.id:
        return session, False
    if can_watch(user=user, session=session):
        return session, True
    raise NotFound(_("There is no such sandbox session."))


def recording_of(*, session: Session) -> str:
    """A finished session's asciicast text, or NotFound while it runs or if none was kept."""
    from labs.models import Recording

    rec = Recording.objects.filter(session=session).only("cast").first()
    if rec is None:
        raise NotFound("no recording for this session (yet): recordings are kept when a session ends")
    return rec.cast


def display_name(user: AbstractBaseUser) -> str:
    """A person's name as people write it: family name first and no space when it is
    Chinese (陈晨, not 晨 陈), "First Last" otherwise, the user name when there is none."""
    from labs.markdown import is_cjk

    first, last = (getattr(user, "first_name", "") or "").strip(), (getattr(user, "last_name", "") or "").strip()
    if first and last and (is_cjk(first) or is_cjk(last)):
        return last + first
    return " ".join(p for p in (first, last) if p) or user.get_username()
