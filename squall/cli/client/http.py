"""The REST client of the ``squall`` client commands (httpx, synchronous).

:meth:`WhiskClient.call` sends one request under ``/api/{version}/namespaces/{ns}/`` (or
any absolute API path) with HTTP Basic ``uuid:key`` and returns a :class:`Reply`. A status
the caller did not accept becomes a :class:`ClientError` whose message is the caller's
``what`` and the server's ``error`` text with its transaction id, as ``wsk`` prints it
(``Unable to get action 'x': The requested resource does not exist. (code ...)``), and
whose exit code is :func:`~squall.cli.client.exits.for_status`. A host that cannot be
reached becomes a :class:`ClientError` with :data:`~squall.cli.client.exits.NETWORK`.

One client is one connection pool; it is not shared between threads.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from squall.cli.client import exits
from squall.cli.client.config import ClientConfig
from squall.cli.client.errors import ClientError

#: Above the platform's longest blocking wait (60 s), so a blocking invoke hears the 202.
TIMEOUT_S = 75.0


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    #: The decoded JSON body; None for an empty one, the text for a non-JSON one.
    body: Any
    headers: Mapping[str, str]


class WhiskClient:
    """A connection to one API host as one subject; a context manager."""

    def __init__(self, config: ClientConfig, timeout_s: float = TIMEOUT_S) -> None:
        self.config = config
        uuid, _, key = config.auth.partition(":")
        loopback = config.apihost.startswith(("http://127.", "http://localhost", "http://[::1]"))
        self._http = httpx.Client(
            base_url=config.apihost,
            auth=(uuid, key),
            timeout=timeout_s,
            verify=not config.insecure,
            # The local standalone is never reached through a proxy; anything else may be.
            trust_env=not loopback,
            headers={"User-Agent": "squall-cli"},
        )

    @property
    def namespace(self) -> str:
        return self.config.namespace

    def __enter__(self) -> WhiskClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def url(self, path: str, namespace: str | None = None) -> str:
        """``path`` under the namespace (``actions/x``), or as is when absolute (``/api/v1``)."""
        if path.startswith("/"):
            return path
        ns = namespace or self.namespace
        return f"/api/{self.config.apiversion}/namespaces/{ns}/{path}"

    def call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        namespace: str | None = None,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        accept: Collection[int] = (),
    ) -> Reply:
        """Send one request; ``what`` prefixes the message of a failure ("Unable to ...").

        Statuses below 400 and those in ``accept`` are returned; others raise ClientError.
        """
        try:
            answer = self._http.request(method, self.url(path, namespace), params=params, json=json)
        except httpx.TimeoutException:
            raise ClientError(
                f"{what}: the request to {self.config.apihost} timed out", exits.NETWORK
            ) from None
        except httpx.ConnectError as error:
            raise ClientError(f"{what}: {self._unreachable(error)}", exits.NETWORK) from None
        except httpx.HTTPError as error:
            raise ClientError(f"{what}: {error}", exits.NETWORK) from None
        reply = Reply(answer.status_code, _body(answer), answer.headers)
        if answer.status_code >= 400 and answer.status_code not in accept:
            raise ClientError(f"{what}: {_server_message(reply)}", exits.for_status(reply.status))
        return reply

    def _unreachable(self, error: httpx.ConnectError) -> str:
        text = str(error)
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
            return (
                f"the TLS certificate of {self.config.apihost} was not accepted ({text}); "
                "use -i to skip certificate checking for a self-signed certificate"
            )
        return (
            f"cannot connect to {self.config.apihost} ({text}). Is the API host right "
            "(squall property get --apihost), and is the platform running there "
            "(squall standalone)?"
        )


def _body(answer: httpx.Response) -> Any:
    if not answer.content:
        return None
    try:
        return answer.json()
    except ValueError:
        return answer.text


def _server_message(reply: Reply) -> str:
    """The server's ``error`` and transaction id, or the bare status when it sent none."""
    body = reply.body
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body.get("code")
        return f"{body['error']} (code {code})" if code else str(body["error"])
    if isinstance(body, dict) and isinstance(body.get("response"), dict):
        # A failed blocking activation: its result carries the action's error.
        result = body["response"].get("result")
        if isinstance(result, dict) and "error" in result:
            return str(result["error"])
    if isinstance(body, str) and body.strip():
        return f"HTTP {reply.status}: {body.strip()[:200]}"
    return f"HTTP {reply.status}"
