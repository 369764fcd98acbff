"""A private OpenLDAP server for the tests: slapd.conf in a temp dir, a free port, an
mdb database seeded with ldapadd, killed with its parent (like the private Redis)."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from sandbox.relay.spawn import die_with_parent
from tests.support import free_port, port_open, wait_for

SLAPD = Path("/usr/sbin/slapd")
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "slapd-root-pw"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
INSTRUCTORS_DN = f"cn=instructors,{GROUPS}"
STAFF_DN = f"cn=lab-admins,{GROUPS}"

CONF = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {dir}/slapd.pid
database mdb
maxsize 16777216
suffix "{suffix}"
rootdn "{root_dn}"
rootpw {root_pw}
directory {dir}/data
access to attrs=userPassword by anonymous auth by self write by * none
access to * by * read
"""


def _person(uid: str, password: str, given: str, surname: str) -> str:
    return (f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {given} {surname}\n"
            f"givenName: {given}\nsn: {surname}\nmail: {uid}@corp.example.org\nuserPassword: {password}\n")


def _group(dn: str, members: list[str]) -> str:
    cn = dn.split(",")[0].split("=")[1]
    return f"dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\n" + "".join(f"member: uid={m},{PEOPLE}\n" for m in members)


# alice teaches, carol administers, bob is a trainee; "admin" exists in the directory
# *and* as a local account (the lab's own admin) with a different password.
USERS = {"alice": "alice-pw-1", "bob": "bob-pw-1", "carol": "carol-pw-1", "admin": "directory-admin-pw"}
SEED = "\n".join([
    f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example Corp\n",
    f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
    f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
    _person("alice", USERS["alice"], "Alice", "Teacher"),
    _person("bob", USERS["bob"], "Bob", "Learner"),
    _person("carol", USERS["carol"], "Carol", "Admin"),
    _person("admin", USERS["admin"], "Directory", "Admin"),
    _group(INSTRUCTORS_DN, ["alice"]),
    _group(STAFF_DN, ["carol"]),
])


@dataclass
class Slapd:
    proc: subprocess.Popen
    port: int

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def modify(self, ldif: str) -> None:
        """Apply an LDIF change as the directory's administrator (ldapmodify)."""
        subprocess.run(["ldapmodify", "-x", "-H", self.uri, "-D", ROOT_DN, "-w", ROOT_PW],
                       input=ldif, text=True, check=True, capture_output=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def start_slapd(tmp: Path) -> Slapd:
    """slapd on a free port of 127.0.0.1, seeded with USERS and two groups."""
    (tmp / "data").mkdir(parents=True)
    conf = tmp / "slapd.conf"
    conf.write_text(CONF.format(dir=tmp, suffix=SUFFIX, root_dn=ROOT_DN, root_pw=ROOT_PW))
    port = free_port()
    # -d 0: stay in the foreground (so it dies with us), log nothing.
    proc = subprocess.Popen([str(SLAPD), "-f", str(conf), "-h", f"ldap://127.0.0.1:{port}/", "-d", "0"],
                            stdout=subprocess.DEVNULL, stderr=(tmp / "slapd.log").open("wb"),
                            preexec_fn=die_with_parent)

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"slapd exited: {(tmp / 'slapd.log').read_text()[-2000:]}")
        return port_open(port)

    wait_for(up, timeout=20, what="slapd")
    server = Slapd(proc, port)
    subprocess.run(["ldapadd", "-x", "-H", server.uri, "-D", ROOT_DN, "-w", ROOT_PW],
                   input=SEED, text=True, check=True, capture_output=True)
    return server
