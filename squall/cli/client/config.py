"""Where the client talks to, and as whom: the wskprops file and the resolved config.

The properties file is ``$WSK_CONFIG_FILE`` or else ``~/.wskprops`` (``KEY=value`` lines;
``APIHOST``, ``AUTH``, ``NAMESPACE``, ``APIVERSION``), as for ``wsk``. Values come from,
highest first: command-line flags, that file, and — only when ``WSK_CONFIG_FILE`` is not
set and the file lacks them — the ``wskprops`` that ``squall standalone`` writes into
its home (``$SQUALL_HOME``, else ``./.squall``), so a freshly started standalone works
without any ``property set``. Like ``wsk``, no other environment variable is read. A file
named by the caller (``squall dev --wskprops``) stands for ``$WSK_CONFIG_FILE``.

An API host without a scheme means ``https://`` as for ``wsk``, except on a loopback
address, where the standalone speaks plain HTTP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from squall.cli.client import exits
from squall.cli.client.errors import ClientError
from squall.cli.client.names import DEFAULT_NAMESPACE

APIHOST = "APIHOST"
AUTH = "AUTH"
NAMESPACE = "NAMESPACE"
APIVERSION = "APIVERSION"
DEFAULT_API_VERSION = "v1"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


def props_path() -> Path:
    """The wskprops file ``property set`` writes and every command reads."""
    configured = os.environ.get("WSK_CONFIG_FILE")
    return Path(configured) if configured else Path.home() / ".wskprops"


def standalone_props_path() -> Path:
    """The file ``squall standalone`` writes its guest credentials to."""
    return Path(os.environ.get("SQUALL_HOME") or ".squall") / "wskprops"


def read_props(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of ``path``; a missing file has none."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ClientError(f"Unable to read the properties file '{path}': {error}") from None
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            props[key.strip()] = value.strip()
    return props


def write_props(path: Path, props: dict[str, str]) -> None:
    """Replace ``path`` with ``props``, readable by its owner only (it holds the key).

    Written to a temporary file and renamed, so a reader never sees half a file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{key}={value}\n" for key, value in props.items())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise ClientError(f"Whisk properties file write failure: {error}") from None


def base_url(apihost: str) -> str:
    """``apihost`` as a URL with a scheme and no trailing ``/``."""
    host = apihost.strip().rstrip("/")
    if "://" not in host:
        name = urlsplit(f"//{host}").hostname or ""
        scheme = "http" if name in LOOPBACK_HOSTS or name.startswith("127.") else "https"
        host = f"{scheme}://{host}"
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"Invalid host address '{apihost}'", exits.USAGE)
    return host


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything a :class:`~squall.cli.client.http.WhiskClient` needs."""

    #: With scheme, without trailing ``/`` (see :func:`base_url`).
    apihost: str
    #: ``uuid:key``.
    auth: str
    namespace: str = DEFAULT_NAMESPACE
    insecure: bool = False
    apiversion: str = DEFAULT_API_VERSION


def resolve_config(
    apihost: str | None = None,
    auth: str | None = None,
    namespace: str | None = None,
    insecure: bool = False,
    props_file: Path | None = None,
) -> ClientConfig:
    """The config for these flags (None: not given), completed from the wskprops files.

    ``props_file``, when given, is read instead of :func:`props_path` and, like a set
    ``$WSK_CONFIG_FILE``, without the standalone's file behind it.
    """
    named = props_file is not None or "WSK_CONFIG_FILE" in os.environ
    props = read_props(props_file or props_path())
    if not named and not (props.get(APIHOST) and props.get(AUTH)):
        props = read_props(standalone_props_path()) | props
    host = apihost or props.get(APIHOST)
    key = auth or props.get(AUTH)
    if not host:
        raise ClientError(
            "The API host is not valid: An API host must be provided. "
            "Run 'squall property set --apihost HOST' or pass --apihost.",
            exits.USAGE,
        )
    if not key:
        raise ClientError(
            "The authorization key is not set. "
            "Run 'squall property set --auth KEY' or pass --auth.",
            exits.USAGE,
        )
    return ClientConfig(
        apihost=base_url(host),
        auth=key,
        namespace=namespace or props.get(NAMESPACE) or DEFAULT_NAMESPACE,
        insecure=insecure,
        apiversion=props.get(APIVERSION) or DEFAULT_API_VERSION,
    )
