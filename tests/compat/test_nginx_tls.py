"""nginx with TLS (deploy/nginx/, a self-signed certificate) in front of the session's
standalone, driven over https by the official ``openwhisk`` client and by httpx."""

from __future__ import annotations

import dataclasses
import re
import ssl
import uuid
from collections.abc import Iterator

import httpx
import pytest
from _standalone import Standalone
from compatsupport import NOT_FOUND, run_script
from nginxsupport import Nginx, nginx_in_front

pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def front(standalone: Standalone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    with nginx_in_front(tmp_path_factory.mktemp("nginx"), [standalone.api_host]) as server:
        yield server


def test_openwhisk_client_over_https(standalone: Standalone, front: Nginx) -> None:
    # Given the client pointed at nginx's https address instead of the server's
    through_nginx = dataclasses.replace(standalone, api_host=front.url)
    # When it creates and invokes actions, fetches a web action and uploads 11 MB of code
    seen = run_script(through_nginx, "https_client.js")
    # Then a client that checks certificates refuses the self-signed one
    assert "self-signed certificate" in seen["refused"]["failed"]["message"]
    # And with ignore_certs the blocking invoke answers the result
    assert seen["invoked"] == {"status": "success", "result": {"greeting": "Hello nginx"}}
    # And the web action answers a GET, seeing nginx's forwarding headers
    fetched = seen["fetched"]
    assert fetched["status"] == 200
    assert fetched["body"]["method"] == "get"
    assert fetched["body"]["name"] == "web"
    headers = fetched["body"]["headers"]
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])  # nginx's own id
    # And the action of more than 10 MB was accepted whole and runs
    assert seen["big"]["codeBytes"] > 10 * 1024 * 1024
    assert seen["big"]["result"] == {"big": True}


def test_tls_certificate_request_id_and_metrics(standalone: Standalone, front: Nginx) -> None:
    # Given a client that trusts only the test's certificate and speaks at most TLS 1.2
    context = ssl.create_default_context(cafile=str(front.cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    txid = f"nginx{uuid.uuid4().hex[:12]}"
    with httpx.Client(
        verify=context, trust_env=False, auth=standalone.credentials, timeout=30.0
    ) as client:
        # When it asks for a missing action with its own X-Request-ID
        r = client.get(
            f"{front.api}/namespaces/_/actions/missing-{txid}", headers={"X-Request-ID": txid}
        )
        # Then the certificate checks out for 127.0.0.1 and the id reaches the controller
        assert r.status_code == 404
        assert r.json() == {"error": NOT_FOUND, "code": txid}
        assert r.headers["x-request-id"] == txid
        # And /metrics is not served through nginx, only by the controller itself
        assert client.get(f"{front.url}/metrics").status_code == 403
    direct = httpx.get(f"{standalone.api_host}/metrics", trust_env=False)
    assert direct.status_code == 200
    assert "squall_controller_invocations_total" in direct.text
