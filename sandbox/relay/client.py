"""Blocking client of the relay's control socket, used by Celery tasks on the same host."""
from __future__ import annotations

import json
import socket
import time

from sandbox.config import HostConfig
from sandbox.exceptions import RelayUnavailable, RuntimeFailed


def relay_call(cfg: HostConfig, op: str, *, timeout: float = 40.0, wait: float = 0.0, **args: object) -> dict:
    """Send one request to this host's relay and return its answer; wait up to `wait`
    seconds for a relay that is not listening (being restarted by its holder)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return _call(cfg, op, timeout=timeout, **args)
        except RelayUnavailable as exc:
            if not exc.not_listening or time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def _call(cfg: HostConfig, op: str, *, timeout: float, **args: object) -> dict:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(cfg.relay_socket))
        sock.sendall(json.dumps({"op": op, **args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        err = RelayUnavailable(f"the terminal relay of host {cfg.host} is not running")
        err.not_listening = True
        raise err from exc
    except socket.timeout as exc:
        raise RelayUnavailable(f"the terminal relay of host {cfg.host} did not answer in {timeout:g} s") from exc
    finally:
        sock.close()
    if not data:
        raise RelayUnavailable(f"the terminal relay of host {cfg.host} closed the connection")
    resp = json.loads(data)
    if not resp.get("ok"):
        raise RuntimeFailed(resp.get("error", "relay error"))
    return resp
