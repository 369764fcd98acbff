"""Where a sandbox host keeps its state. The engine is handed a HostConfig; it never reads
settings (the web and the worker build one: labs.hostconfig.host_config)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandbox.uidranges import UidRanges


@dataclass(frozen=True)
class HostConfig:
    """Everything the engine needs to know about this worker host."""

    data_dir: Path
    host: str
    redis_url: str
    uid_base: int = 100000  # the image store's range: layers are unpacked owned by it
    id_count: int = 65536
    # Per-session ranges (sandbox/uidranges.py): `ranges` slots of id_count ids from
    # range_first; 0 ranges = every sandbox maps to uid_base (the shared range, as before).
    range_first: int = 2**24
    ranges: int = 1024
    runc: str = "runc"
    capacity: int = 200

    @property
    def images_dir(self) -> Path:
        """The content-addressed image store (shared by every host on this machine)."""
        return self.data_dir / "images"

    @property
    def host_dir(self) -> Path:
        """This host's private state: sessions, relay socket."""
        return self.data_dir / "hosts" / self.host

    @property
    def sessions_dir(self) -> Path:
        """One directory per live sandbox on this host."""
        return self.host_dir / "sessions"

    @property
    def relay_socket(self) -> Path:
        """The relay's control socket (root only)."""
        return self.host_dir / "relay.sock"

    @property
    def holder_socket(self) -> Path:
        """The PTY holder's socket (root only): it keeps terminals alive across relay restarts."""
        return self.host_dir / "holder.sock"

    @property
    def runc_root(self) -> Path:
        """runc's state directory for this host, so `runc list` shows only its sandboxes."""
        return Path("/run/container-lab") / self.host

    @property
    def cgroup_parent(self) -> str:
        """The cgroup every sandbox of this host is created under."""
        return f"/container-lab/{self.host}"

    def uid_ranges(self) -> UidRanges | None:
        """The machine's per-session uid ranges, or None when sandboxes share uid_base."""
        if not self.ranges:
            return None
        return UidRanges(first=self.range_first, slots=self.ranges, count=self.id_count)

    @property
    def queue(self) -> str:
        """The Celery queue that reaches this host."""
        return f"host.{self.host}"

