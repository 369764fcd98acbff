"""Running a step's check inside a sandbox, on the sandbox's own host: what the check
task (a pressed Check) and an auto-check poll both do. Engine work only: recording
the outcome is labs.learning's (progress_record_check, progress_mark_passed)."""
from __future__ import annotations

from labs.hostconfig import host_config
from labs.models import Step
from labs.redis import sync_redis
from sandbox.checklang import lab_lang
from sandbox.exceptions import CheckTimeout, SandboxError
from sandbox.service import sandbox_exec

CHECK_FAILED = {
    "timeout": {"zh-hans": "检查超时：{timeout:g} s 内没有结束。", "en": "The check did not finish within {timeout:g} s."},
    "error": {"zh-hans": "检查无法运行：{error}", "en": "The check could not run: {error}"},
    "busy": {"zh-hans": "上一次检查还在运行，请稍后再试。", "en": "The previous check of this sandbox is still running; try again when it ends."},
}


def check_lock_key(sid: str) -> str:
    """Held while a check of the session runs: one check per session at a time."""
    return f"lab:check:{sid}"


def step_check_run(*, sid: str, step_id: int, lang: str | None = None) -> dict:
    """Run a step's check inside the sandbox, in the trainee's language: exit 0 passes,
    output is the message; {"passed", "message"}.

    It runs with the host's shell in a cgroup of its own (sandbox/scripts.py), one per
    session at a time: a second check while one runs is answered at once, not queued.
    """
    step = Step.objects.get(id=step_id)
    timeout = float(step.data.get("check_timeout", 10))
    lang = lab_lang(lang)
    lock = check_lock_key(sid)
    if not sync_redis().set(lock, 1, nx=True, ex=int(timeout) + 60):
        return {"passed": False, "message": CHECK_FAILED["busy"][lang]}
    try:
        res = sandbox_exec(host_config(), sid, step.data["check"], timeout=timeout, lang=lang, check=True)
    except CheckTimeout:
        return {"passed": False, "message": CHECK_FAILED["timeout"][lang].format(timeout=timeout)}
    except SandboxError as exc:
        return {"passed": False, "message": CHECK_FAILED["error"][lang].format(error=exc)}
    finally:
        sync_redis().delete(lock)
    return {"passed": res.exit_code == 0, "message": res.output.strip()}
