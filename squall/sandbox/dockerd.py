"""Finding, or starting, the Docker daemon the Docker backend talks to.

The Docker backend needs a ``dockerd`` (Debian's ``docker.io``). :func:`ensure_dockerd`
returns the socket of one that answers, starting it as root when none does. A dockerd this
module starts never touches the host's firewall or links: ``--iptables=false
--ip6tables=false --bridge=none``. By default dockerd sets the ``FORWARD`` policy to DROP
and adds NAT rules, which would cut off the sandboxes' own egress (the ``inet squall_*``
nftables tables forward veth traffic, see :mod:`squall.sandbox.network`); Squall's
containers use network mode ``none`` and get their link from that same network instead,
so dockerd needs no network of its own.

``python -m squall.sandbox.dockerd`` does the same from ``./dev`` and prints the socket.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_SOCKET = Path("/var/run/docker.sock")
#: The flags that keep dockerd's hands off the host's firewall and links (see above).
SAFE_FLAGS = ("--iptables=false", "--ip6tables=false", "--bridge=none")
START_TIMEOUT_S = 30.0


class DockerUnavailable(Exception):
    """No dockerd answers and none could be started; the message says what to do."""


def socket_path(host: str = "") -> Path:
    """The Unix socket named by ``host`` (``unix:///path`` or a path), else by
    ``DOCKER_HOST``, else the default."""
    host = host or os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return Path(host.removeprefix("unix://"))
    if host and "://" not in host:
        return Path(host)
    if host:
        raise DockerUnavailable(f"only a local Unix socket is supported, not {host!r}")
    return DEFAULT_SOCKET


def answers(path: Path, timeout: float = 2.0) -> bool:
    """Whether a Docker daemon answers ``GET /_ping`` on the socket ``path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            head = sock.recv(64)
    except OSError:
        return False
    return head.startswith(b"HTTP/1.") and b" 200 " in head[:16]


def ensure_dockerd(host: str = "", log_file: Path | None = None) -> Path:
    """The socket of a dockerd that answers; starts one (with :data:`SAFE_FLAGS`) when
    the socket does not answer. Raises :class:`DockerUnavailable` saying why not."""
    path = socket_path(host)
    if answers(path):
        return path
    binary = shutil.which("dockerd") or (
        "/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None
    )
    if binary is None:
        raise DockerUnavailable("dockerd is not installed: apt-get install docker.io (as root)")
    if os.geteuid() != 0:
        raise DockerUnavailable(f"no Docker daemon answers on {path}, and only root can start one")
    if log_file is None:
        log_file = (
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            / "squall"
            / "dockerd.log"
        )
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        # A session of its own: dockerd outlives this process (tests, ./dev) on purpose.
        subprocess.Popen(
            [binary, *SAFE_FLAGS, "-H", f"unix://{path}"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if answers(path):
            return path
        time.sleep(0.2)
    raise DockerUnavailable(
        f"dockerd did not answer on {path} within {START_TIMEOUT_S:.0f} s; see {log_file}"
    )


def main() -> int:
    try:
        print(ensure_dockerd())
    except DockerUnavailable as ex:
        print(f"squall: {ex}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
