"""``squall standalone --tls-cert --tls-key``: the API over https (a self-signed
certificate), the credentials file saying so, and the official client over it."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _standalone import (
    LOOPBACK,
    START_DEADLINE_S,
    TEST_LIMITS,
    Standalone,
    clean_env,
    free_port,
    poll,
    read_wskprops,
)
from click.testing import CliRunner
from compatsupport import run_script
from nginxsupport import self_signed

from squall.cli.main import main
from squall.config import Settings

pytestmark = pytest.mark.compat


def trusting(cert: Path) -> ssl.SSLContext:
    """A TLS context that trusts only ``cert`` (self-signed: its own authority)."""
    return ssl.create_default_context(cafile=str(cert))


def _answers(url: str, cert: Path, process: subprocess.Popen[bytes]) -> bool | None:
    assert process.poll() is None, f"squall standalone exited with {process.returncode}"
    try:
        answer = httpx.get(url, verify=trusting(cert), trust_env=False)
    except httpx.TransportError:
        return None
    return True if answer.status_code == 200 else None


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Standalone, Path]]:
    """A standalone of its own serving https; its certificate."""
    home = tmp_path_factory.mktemp("squall-tls")
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    port = free_port()
    args = [sys.executable, "-m", "squall.cli.main", "standalone", "--host", LOOPBACK]
    args += ["--port", str(port), "--home", str(home), "--keep-warm", "60"]
    args += ["--tls-cert", str(cert), "--tls-key", str(key)]
    log_path = home / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=clean_env(TEST_LIMITS),
        )
    url = f"https://{LOOPBACK}:{port}/api/v1"
    try:
        poll(lambda: _answers(url, cert, process), START_DEADLINE_S, what="https to answer")
    except BaseException as e:  # a server nobody will stop: kill it, show its log
        process.kill()
        process.wait()
        raise AssertionError(f"{e!r}\n{log_path.read_text(errors='replace')[-8000:]}") from None
    props = read_wskprops(home / "wskprops")
    server = Standalone(
        props["APIHOST"], props["AUTH"], props["NAMESPACE"], home, process, log_path
    )
    try:
        yield server, cert
    finally:
        server.stop_cleanly()


def test_wskprops_and_api_say_https(secure: tuple[Standalone, Path]) -> None:
    server, cert = secure
    # Given a standalone started with --tls-cert and --tls-key
    # Then the credentials file it wrote names the https address
    assert server.api_host.startswith("https://"), server.api_host
    # And a client trusting the certificate gets the API, authenticated
    with httpx.Client(verify=trusting(cert), trust_env=False, auth=server.credentials) as client:
        r = client.get(f"{server.api}/namespaces")
        assert r.status_code == 200, r.text
        assert r.json() == ["guest"]
    # And plain http on that port gets no answer
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.api_host.replace('https', 'http', 1)}/api/v1", trust_env=False)


def test_openwhisk_client_over_https(secure: tuple[Standalone, Path]) -> None:
    server, _ = secure
    # When the official client drives it with ignore_certs
    seen = run_script(server, "https_client.js")
    # Then a client that checks certificates is refused, and the rest works over https
    assert "self-signed certificate" in seen["refused"]["failed"]["message"]
    assert seen["invoked"] == {"status": "success", "result": {"greeting": "Hello nginx"}}
    assert seen["fetched"]["status"] == 200
    assert seen["fetched"]["body"]["method"] == "get"
    assert seen["big"]["result"] == {"big": True}


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    # Given a certificate but no key
    cert, _ = self_signed(tmp_path)
    # When standalone is asked to serve https with it / Then it is a usage error
    result = CliRunner().invoke(main, ["standalone", "--tls-cert", str(cert)])
    assert result.exit_code == 2
    assert "--tls-cert and --tls-key go together" in result.output
    # And the address written for clients is https only with a certificate
    assert Settings(tls_cert=str(cert), port=8443).effective_api_host == "https://127.0.0.1:8443"
    assert Settings(port=8443).effective_api_host == "http://127.0.0.1:8443"


def test_the_squall_cli_over_https_needs_i_for_a_self_signed_certificate(
    secure: tuple[Standalone, Path], tmp_path: Path
) -> None:
    server, _ = secure
    env = clean_env({"WSK_CONFIG_FILE": str(tmp_path / "wskprops"), "HOME": str(tmp_path)})
    squall = [sys.executable, "-m", "squall.cli.main"]
    flags = ["--apihost", server.api_host, "--auth", server.auth]
    # When the client checks the certificate, it refuses the self-signed one, saying why
    refused = subprocess.run(
        [*squall, "namespace", "list", *flags], env=env, capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "certificate" in refused.stderr.lower(), refused.stderr
    assert "Traceback" not in refused.stderr
    # And with -i it talks to the API over https
    listed = subprocess.run(
        [*squall, "namespace", "list", "-i", *flags], env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert "guest" in listed.stdout
