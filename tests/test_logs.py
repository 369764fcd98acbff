"""Structured logs: one JSON object per line with the event's context, secrets masked,
a request id per request; readable lines in development."""
from __future__ import annotations

import json
import logging

from labsite.logs import LabJsonFormatter, LabPlainFormatter, ContextFilter, log_context_reset, log_context_set, service_name


def _record(msg: str, *args, **extra) -> logging.LogRecord:
    record = logging.LogRecord("labs.tasks", logging.INFO, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(record, k, v)
    ContextFilter(host="host7").filter(record)
    return record


def test_a_json_line_carries_the_context_and_masks_secrets():
    token = log_context_set(session_id="s1", user_id=42, lab="layers", step="make-file", request_id="r" * 12)
    try:
        line = LabJsonFormatter(secrets=["super-secret-value-123"]).format(
            _record("bind with %s failed", "super-secret-value-123", duration_ms=3.5))
    finally:
        log_context_reset(token)
    assert "\n" not in line
    event = json.loads(line)
    assert event["message"] == "bind with [redacted] failed"
    assert (event["session_id"], event["user_id"], event["lab"], event["step"]) == ("s1", 42, "layers", "make-file")
    assert event["host"] == "host7" and event["level"] == "INFO" and event["logger"] == "labs.tasks"
    assert event["duration_ms"] == 3.5 and "time" in event
    assert "super-secret-value-123" not in line


def test_no_context_leaks_into_the_next_event():
    token = log_context_set(session_id="s1")
    log_context_reset(token)
    assert "session_id" not in json.loads(LabJsonFormatter().format(_record("later")))


def test_development_lines_are_plain_text_with_the_context_at_the_end():
    token = log_context_set(session_id="s9")
    try:
        line = LabPlainFormatter().format(_record("started"))
    finally:
        log_context_reset(token)
    assert line.endswith("labs.tasks: started [session_id=s9]")


def test_each_process_names_its_service():
    assert service_name(["/app/.venv/bin/celery", "-A", "labsite", "worker"]) == "worker"
    assert service_name(["/app/.venv/bin/celery", "-A", "labsite", "beat"]) == "beat"
    assert service_name(["manage.py", "relay"]) == "relay"
    assert service_name(["/app/.venv/bin/uvicorn", "labsite.asgi:application"]) == "web"


def test_every_request_gets_an_id_and_one_access_line_without_its_query(client, db, caplog):
    caplog.set_level(logging.INFO, logger="labsite.access")
    response = client.get("/accounts/login/?next=/&code=secret-code-123")
    rid = response["X-Request-ID"]
    assert len(rid) == 32
    [line] = [r for r in caplog.records if r.name == "labsite.access"]
    assert line.path == "/accounts/login/" and line.status == 200 and line.request_id == rid
    assert "secret-code-123" not in line.getMessage()
    given = client.get("/accounts/login/", HTTP_X_REQUEST_ID="proxy-req-0001")
    assert given["X-Request-ID"] == "proxy-req-0001"
    assert client.get("/accounts/login/", HTTP_X_REQUEST_ID="bad id\n")["X-Request-ID"] != "bad id\n"
