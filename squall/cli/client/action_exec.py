"""An action's ``exec`` from the command line: a code file, a zip, or a sequence.

The kind comes from ``--kind`` or else from the file: ``.js`` is ``nodejs:default``,
``.py`` ``python:default`` (the server maps ``family:default`` to its default version);
a ``.zip`` needs ``--kind`` in ``wsk``, but here a zip holding ``package.json`` or
``index.js`` is Node.js and one holding ``__main__.py`` Python (what the runtimes need to
start it anyway). Zips travel base64-encoded with ``binary: true``. A sequence's
components are fully qualified (``/_/a`` resolves to the caller's namespace on the server).
"""

from __future__ import annotations

import base64
import zipfile
from pathlib import Path
from typing import Any

from squall.cli.client.errors import ClientError
from squall.cli.client.names import parse

KINDS_BY_SUFFIX = {".js": "nodejs:default", ".mjs": "nodejs:default", ".py": "python:default"}
#: An entry that makes a zip runnable by a kind, checked in this order.
KINDS_BY_ZIP_ENTRY = (
    ("package.json", "nodejs:default"),
    ("index.js", "nodejs:default"),
    ("__main__.py", "python:default"),
)
ZIP_KIND_ERROR = (
    "creating an action from a .zip artifact requires specifying the action kind "
    "explicitly (--kind), unless it holds package.json, index.js or __main__.py"
)


def zip_kind(path: Path) -> str | None:
    """The kind a zip's entries imply, or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile:
        raise ClientError(f"'{path}' is not a valid zip file") from None
    for entry, kind in KINDS_BY_ZIP_ENTRY:
        if entry in names:
            return kind
    return None


def infer_kind(path: Path) -> str:
    """The kind of ``path`` from its extension (or a zip's contents)."""
    suffix = path.suffix.lower()
    if suffix == ".zip":
        kind = zip_kind(path)
        if kind is None:
            raise ClientError(ZIP_KIND_ERROR)
        return kind
    if suffix in KINDS_BY_SUFFIX:
        return KINDS_BY_SUFFIX[suffix]
    raise ClientError(
        f"'{suffix or path.name}' is not a supported action runtime; give --kind "
        f"(files ending in {', '.join(KINDS_BY_SUFFIX)} or .zip are recognised)"
    )


def code_exec(path: Path, kind: str | None = None, main: str | None = None) -> dict[str, Any]:
    """The ``exec`` for the action in file ``path``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ClientError(f"File '{path}' is not a valid file or it does not exist") from None
    except OSError as error:
        raise ClientError(f"Unable to read '{path}': {error.strerror}") from None
    exec_: dict[str, Any] = {"kind": kind or infer_kind(path)}
    if path.suffix.lower() == ".zip":
        exec_["code"] = base64.b64encode(data).decode("ascii")
        exec_["binary"] = True
    else:
        try:
            exec_["code"] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ClientError(f"'{path}' is not a text (UTF-8) file nor a .zip") from None
    if main:
        exec_["main"] = main
    return exec_


def sequence_exec(components: str, namespace: str) -> dict[str, Any]:
    """The ``exec`` of a sequence of the comma-separated ``components``."""
    names = [c.strip() for c in components.split(",") if c.strip()]
    if not names:
        raise ClientError("A sequence needs at least one action (--sequence a,b,c)")
    return {"kind": "sequence", "components": [str(parse(n, namespace)) for n in names]}
