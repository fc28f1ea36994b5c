"""The runtime manifest (which kinds exist) and an action's ``exec``.

The manifest is what ``GET /`` advertises under ``runtimes`` and what ``exec.kind`` is
checked against. ``family:default`` resolves to the family's default kind.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from squall.errors import BadRequest, PayloadTooLarge

MAX_CODE_BYTES = 48 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RuntimeKind:
    kind: str
    family: str
    default: bool
    # The file inside a zip that makes it runnable, for the error message.
    zip_entry: str


MANIFEST: tuple[RuntimeKind, ...] = (
    RuntimeKind("nodejs:20", "nodejs", True, "package.json or index.js"),
    RuntimeKind("python:3.11", "python", True, "__main__.py"),
    # Any executable speaking OpenWhisk's action loop (a zip holding ``exec``).
    RuntimeKind("native", "native", True, "exec"),
)
#: OpenWhisk's kind for Docker actions. Squall runs no images, only OpenWhisk's "native"
#: form of them (``wsk action create --native``): its skeleton image with an ``exec``.
BLACKBOX = "blackbox"
NATIVE_IMAGES = ("openwhisk/dockerskeleton",)
_BY_KIND = {k.kind: k for k in MANIFEST}
_DEFAULTS = {k.family: k.kind for k in MANIFEST if k.default}


def valid_kinds() -> list[str]:
    return [k.kind for k in MANIFEST]


def resolve_kind(kind: str) -> str:
    """Map ``nodejs``, ``nodejs:default`` to the default kind; reject unknown kinds (400)."""
    family, _, version = kind.partition(":")
    if version in ("", "default") and family in _DEFAULTS:
        return _DEFAULTS[family]
    if kind in _BY_KIND or kind == BLACKBOX:
        return kind
    raise BadRequest(
        f"The specified runtime '{kind}' is not supported by this platform. "
        f"Valid values are: {', '.join(repr(k) for k in valid_kinds())}."
    )


def runtimes_json(image_prefix: str = "squall") -> dict[str, list[dict[str, Any]]]:
    """The ``runtimes`` object of ``GET /``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for k in MANIFEST:
        out.setdefault(k.family, []).append(
            {
                "kind": k.kind,
                "image": f"{image_prefix}/{k.kind.replace(':', '-')}",
                "deprecated": False,
                "default": k.default,
                "attached": False,
                "requireMain": False,
            }
        )
    return out


def is_binary_code(code: str) -> bool:
    """OpenWhisk's rule: code is a base64 archive when it decodes as base64 (length % 4 == 0)."""
    text = code.strip()
    if not text or len(text) % 4 != 0:
        return False
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class CodeExec:
    kind: str
    code: str
    binary: bool
    main: str | None = None
    #: The Docker image of a ``blackbox`` action (None: OpenWhisk's skeleton).
    image: str | None = None

    def to_json(self, *, code: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.image:
            out["image"] = self.image
        if code:
            out["code"] = self.code
        out["binary"] = self.binary
        if self.main:
            out["main"] = self.main
        return out

    @classmethod
    def from_stored(cls, raw: dict[str, Any]) -> CodeExec:
        return cls(
            kind=str(raw["kind"]),
            code=str(raw.get("code", "")),
            binary=bool(raw.get("binary", False)),
            main=raw.get("main") or None,
            image=raw.get("image") or None,
        )

    @classmethod
    def from_request(cls, raw: object) -> CodeExec:
        """Validate the ``exec`` of a PUT body; the server decides ``binary``."""
        if not isinstance(raw, dict):
            raise BadRequest("The request content was malformed:\n'exec' must be an object.")
        kind = raw.get("kind")
        if not isinstance(kind, str) or not kind:
            raise BadRequest("The request content was malformed:\n'kind' must be a string.")
        resolved = resolve_kind(kind)
        code = raw.get("code")
        if not isinstance(code, str):
            raise BadRequest(
                "The request content was malformed:\n'code' must be a string defined in 'exec' "
                f"for '{resolved}' actions"
            )
        size = len(code.encode())
        if size > MAX_CODE_BYTES:
            raise PayloadTooLarge(f"Code larger than allowed: {size} > {MAX_CODE_BYTES} bytes.")
        main = raw.get("main")
        if main is not None and (not isinstance(main, str) or not main.strip()):
            raise BadRequest("The request content was malformed:\n'main' must be a string.")
        image = _native_image(raw.get("image")) if resolved == BLACKBOX else None
        return cls(
            kind=resolved, code=code, binary=is_binary_code(code), main=main or None, image=image
        )


def _native_image(image: object) -> str | None:
    """The image of a ``blackbox`` action, which must be OpenWhisk's native skeleton."""
    if image is None:
        return None
    if not isinstance(image, str):
        raise BadRequest("The request content was malformed:\n'image' must be a string.")
    name = image.strip().removeprefix("docker.io/")
    if name.partition(":")[0] not in NATIVE_IMAGES:
        raise BadRequest(
            f"The specified image '{image}' is not supported by this platform: blackbox "
            f"actions run only as native executables (image {NATIVE_IMAGES[0]} with a zip "
            "holding exec)."
        )
    return image
