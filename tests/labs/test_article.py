"""The article's overlayfs experiment (/work/shared/course/article-zh.md, "感受一下"), typed
verbatim into a real sandbox's terminal where trainees type it: in ~ and in /tmp.

Both are volumes — their own tmpfs within the session's disk cap — so an upperdir may live
there; on the overlay root the same mount fails with EINVAL, and a reset empties them.
"""
from __future__ import annotations


import pytest

from tests.conftest import IS_ROOT, wait_for
from tests.labs.test_sessions import Terminal, smoke_lab, start_session, ws_connect  # noqa: F401 (fixture)

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]

# The article's block, line for line.
ARTICLE = """\
mkdir -p lower1
mkdir -p lower2
mkdir -p lower3
mkdir -p merge
mkdir -p upper
mkdir -p work

echo "lower1" > lower1/share.txt
echo "lower2" > lower2/share.txt
echo "lower3" > lower3/share.txt
echo "worksh1" > lower1/test1.sh
echo "worksh2" > lower2/test2.sh
echo "worksh3" > lower3/test3.sh
echo "uppersh" > upper/test2.sh
echo "uppertxt" > upper/up.txt
"""
# Its mount line (after the "# " root prompt). The article's mkdir says merge, its mount
# merged: the lab points the slip out, and the trainee makes merged.
MOUNT = "mount -t overlay overlay -o lowerdir=lower1:lower2:lower3,upperdir=upper,workdir=work merged"


def type_lines(term: Terminal, lines: str) -> None:
    for line in lines.splitlines():
        term.send(line + "\r")


def test_the_articles_experiment_works_verbatim_in_home_and_tmp_and_not_on_the_root(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        for place in ("~", "/tmp"):
            term.send(f"cd {place} && echo IN-$(pwd)\r")
            term.expect(f"IN-{'/root' if place == '~' else '/tmp'}")
            type_lines(term, ARTICLE)
            term.send("mkdir -p merged\r")
            term.send(MOUNT + " && echo MOUNTED-" + place.strip("/~") + "OK\r")
            term.expect("MOUNTED-" + place.strip("/~") + "OK")
            # The union of four directories: lower1 on top of the lowers, upper above them all.
            term.send("echo \"[$(ls merged | tr '\\n' ' ')] [$(cat merged/share.txt)] [$(cat merged/test2.sh)]\"\r")
            term.expect("[share.txt test1.sh test2.sh test3.sh up.txt ] [lower1] [uppersh]")
        # Neither volume's files are in the container layer.
        term.send("ls /var/lib/lab/container/upper/root /var/lib/lab/container/upper/tmp 2>&1 | grep -c lower1; echo LAYER-DONE\r")
        term.expect("0\r\nLAYER-DONE")
        # On the overlay root the same mount is refused: an upperdir cannot be on overlayfs.
        term.send("mkdir -p /srv/ovl && cd /srv/ovl && mkdir -p lower1 lower2 lower3 upper work merged && " + MOUNT + "; echo ROOT-$?\r")
        term.expect("ROOT-255")
        assert b"Invalid argument" in term.out
    # A reset gives a fresh sandbox: the volumes are empty again.
    assert client.post(f"/api/sessions/{session['id']}/reset").status_code == 202
    wait_for(lambda: client.get(f"/api/sessions/{session['id']}/").json()["state"] == "ready", timeout=30, what="reset")
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    out = sandbox_exec(host_config(), session["id"], "ls -A /root /tmp; grep -E ' /(root|tmp) ' /proc/mounts", timeout=10).output
    assert "lower1" not in out and "upper" not in out.split("tmpfs")[0]
    assert out.count(" tmpfs ") == 2, out
