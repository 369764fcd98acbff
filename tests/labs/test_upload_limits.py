"""Lab authors and web users cannot make the server do unbounded work (issue 13,
item 8): YAML aliases cannot amplify a lab file, and a body larger than its path
allows is refused before it is read."""
from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest

from labs.labfile import load_lab
from labs.labfile.loader import MAX_EXPANDED_BYTES
from labs.labfile.spec import LabFileError

STEP = "  - id: s{i}\n    title: {{zh-hans: s, en: s}}\n    text: {{zh-hans: s, en: s}}\n    check: *big\n    solution: *big\n"


def write_lab(tmp_path, anchor_text: str, aliases: int):
    lab = tmp_path / "amp"
    lab.mkdir()
    body = "\n".join("      " + line for line in anchor_text.splitlines())
    steps = "".join(STEP.format(i=i) for i in range(aliases))
    (lab / "lab.yaml").write_text(
        "slug: amp\ntitle: {zh-hans: 放大, en: Amplified}\n"
        f"setup: &big |\n{body}\nsteps:\n{steps}")
    return lab


def test_yaml_aliases_of_a_large_anchor_are_refused_with_its_position(tmp_path):
    # 100 aliases of a 512 KiB text: 50 MiB once expanded (this took 493 s in one request).
    lab = write_lab(tmp_path, "echo x\n" * (512 * 1024 // 7), aliases=100)
    with pytest.raises(LabFileError) as err:
        load_lab(lab)
    text = str(err.value)
    assert "lab.yaml:3:" in text and "aliases expand this file to" in text and f"{MAX_EXPANDED_BYTES // 1024} KiB" in text


def test_a_small_anchor_shared_by_steps_still_loads(tmp_path):
    spec = load_lab(write_lab(tmp_path, "test -e /root/done", aliases=3))
    assert [s.check.strip() for s in spec.steps] == ["test -e /root/done"] * 3


def raw_post(web: str, path: str, headers: list[str], body: bytes = b"", *, chunked_total: int = 0) -> bytes:
    """Send a request by hand; return what the server answered (b"" if it just closed)."""
    url = urlparse(web)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        head = [f"POST {path} HTTP/1.1", f"Host: {url.hostname}", *headers, "", ""]
        s.sendall("\r\n".join(head).encode() + body)
        sent = 0
        try:
            while sent < chunked_total:
                chunk = b"z" * 65536
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
            if chunked_total:
                s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: what we want
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
        except (ConnectionResetError, TimeoutError):
            pass
        return answer


@pytest.mark.django_db(transaction=True)
def test_an_upload_larger_than_the_limit_is_refused_before_its_body_is_read(web):
    # A gigabyte announced, nothing sent: the answer comes at once, from the headers alone.
    answer = raw_post(web, "/labs/upload/", ["Content-Length: 1073741824", "Content-Type: multipart/form-data; boundary=x"])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Any other path takes a few MiB at most, with a Content-Length or without one.
    assert raw_post(web, "/api/sessions/", ["Content-Length: 8388608"]).startswith(b"HTTP/1.1 413")
    answer = raw_post(web, "/api/sessions/", ["Transfer-Encoding: chunked", "Content-Type: application/json"],
                      chunked_total=6 * 2**20)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # A normal request still works.
    url = urlparse(web)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        s.sendall(f"GET /accounts/login/ HTTP/1.1\r\nHost: {url.hostname}\r\nConnection: close\r\n\r\n".encode())
        assert s.recv(64).startswith(b"HTTP/1.1 200")
