"""A real nginx (the Debian package's ``/usr/sbin/nginx``) with TLS in front of Squall
controllers, for the tests.

:func:`start_nginx` renders ``deploy/nginx/`` into a directory of the test's own — the
same templates an operator renders with envsubst, the same variables — with a
self-signed certificate made by the ``openssl`` CLI, starts nginx there in the
foreground (pid file, logs and temporary files all under that directory, so no root
paths are touched) on a free loopback port, and waits (polling with a deadline) until
``GET /api/v1`` answers through it. :meth:`Nginx.stop` stops it and waits for its exit.
It takes a list of controller URLs, so it serves one standalone or a cluster's
controllers alike.

Without nginx or openssl the test skips locally and fails in CI (``CI=true``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from _required import unavailable
from _standalone import LOOPBACK, free_port, poll

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "deploy" / "nginx"
NGINX = "/usr/sbin/nginx"
#: The variables the templates use (README.md in deploy/nginx describes them).
VARIABLES = (
    "SQUALL_LISTEN",
    "SQUALL_SERVER_NAME",
    "SQUALL_TLS_CERT",
    "SQUALL_TLS_KEY",
    "SQUALL_UPSTREAMS",
    "SQUALL_NGINX_DIR",
)
START_DEADLINE_S = 15.0
STOP_DEADLINE_S = 10.0


def _require(path: str | None, problem: str) -> str:
    if path is None or not os.access(path, os.X_OK):
        unavailable(problem)
    assert path is not None
    return path


def render(template: Path, values: dict[str, str]) -> str:
    """``template`` with ``${NAME}`` replaced for Squall's variables only, as envsubst
    with an explicit list does (nginx's own ``$host`` and friends stay)."""
    text = template.read_text()
    for name in VARIABLES:
        if f"${{{name}}}" in text:
            text = text.replace(f"${{{name}}}", values[name])
    left = re.findall(r"\$\{[A-Z_]+\}", text)
    assert not left, f"{template.name}: variables left unrendered: {left}"
    return text


def upstream_servers(urls: Sequence[str]) -> str:
    """``server host:port ...;`` lines of an upstream block, one per controller URL."""
    lines = []
    for url in urls:
        parts = urlsplit(url)
        assert parts.scheme == "http" and parts.hostname and parts.port, url
        lines.append(f"server {parts.hostname}:{parts.port} max_fails=3 fail_timeout=10s;")
    return "\n    ".join(lines)


def self_signed(directory: Path, host: str = LOOPBACK) -> tuple[Path, Path]:
    """A certificate for ``host`` (and localhost) and its key, valid for two days."""
    openssl = _require(shutil.which("openssl"), "openssl is missing (apt-get install openssl)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = [openssl, "req", "-x509", "-nodes", "-days", "2", "-subj", f"/CN={host}"]
    command += ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    command += ["-addext", f"subjectAltName=IP:{host},DNS:localhost"]
    command += ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True, timeout=30)
    return cert, key


@dataclass
class Nginx:
    """A running nginx: where it listens (https) and its files."""

    url: str
    directory: Path
    cert: Path
    key: Path
    process: subprocess.Popen[bytes]

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    def logs(self) -> str:
        """Its error log and output, for failure messages."""
        parts = []
        for name in ("logs/error.log", "nginx.out"):
            path = self.directory / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop nginx (SIGQUIT: finish the requests in flight) and wait for it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_nginx(directory: Path, upstreams: Sequence[str]) -> Nginx:
    """nginx with TLS on a free loopback port in front of ``upstreams`` (controller
    URLs such as ``http://127.0.0.1:3233``), answering once this returns."""
    nginx = _require(NGINX, f"nginx is not installed at {NGINX} (apt-get install nginx)")
    directory.mkdir(parents=True, exist_ok=True)
    for sub in ("logs", "tmp"):
        (directory / sub).mkdir(exist_ok=True)
    cert, key = self_signed(directory)
    port = free_port()
    values = {
        "SQUALL_LISTEN": f"{LOOPBACK}:{port}",
        "SQUALL_SERVER_NAME": LOOPBACK,
        "SQUALL_TLS_CERT": str(cert),
        "SQUALL_TLS_KEY": str(key),
        "SQUALL_UPSTREAMS": upstream_servers(upstreams),
        "SQUALL_NGINX_DIR": str(directory),
    }
    for name in ("nginx.conf", "squall.conf"):
        (directory / name).write_text(render(TEMPLATES / f"{name}.template", values))
    conf = directory / "nginx.conf"
    # As root, nginx would run its workers as nobody, who cannot enter pytest's private
    # temporary directories (client bodies over 1 MB are written there): keep them root.
    directives = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    args = [nginx, "-p", str(directory), "-c", str(conf), "-e", str(directory / "logs/error.log")]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, f"nginx -t failed:\n{check.stderr}"
    with (directory / "nginx.out").open("wb") as out:
        process = subprocess.Popen(
            [*args, "-g", directives], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Nginx(f"https://{LOOPBACK}:{port}", directory, cert, key, process)
    try:
        poll(lambda: _answers(server), START_DEADLINE_S, interval_s=0.05, what="nginx to answer")
    except AssertionError:
        server.stop()
        raise AssertionError(f"nginx did not come up:\n{server.logs()}") from None
    return server


def _answers(server: Nginx) -> bool | None:
    if server.process.poll() is not None:
        raise AssertionError(f"nginx exited with {server.process.returncode}:\n{server.logs()}")
    try:
        with httpx.Client(verify=False, trust_env=False, timeout=2.0) as client:
            return True if client.get(server.api).status_code == 200 else None
    except httpx.TransportError:  # not listening yet
        return None


@contextmanager
def nginx_in_front(directory: Path, upstreams: Sequence[str]) -> Iterator[Nginx]:
    """:func:`start_nginx`, stopped at the end."""
    server = start_nginx(directory, upstreams)
    try:
        yield server
    finally:
        server.stop()
