"""An action's ``exec``: its kind (checked against the runtimes manifest,
:mod:`squall.entities.manifest`), its code or Docker image, and its entry point."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

from squall.entities.manifest import BLACKBOX, manifest, resolve_kind, runtime_deprecated
from squall.errors import BadRequest, PayloadTooLarge

MAX_CODE_BYTES = 48 * 1024 * 1024


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

    @property
    def has_code(self) -> bool:
        """False only for a ``blackbox`` image that brings its own code: OpenWhisk then
        stores, shows and sends to ``/init`` no ``code`` at all (an image built on its
        ``dockerskeleton`` would take an empty one as its action)."""
        return bool(self.code) or not (self.kind == BLACKBOX and self.image)

    def to_json(self, *, code: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.image:
            out["image"] = self.image
        if code and self.has_code:
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
        described = manifest().get(resolved)
        if described is not None and described.deprecated:
            # New and updated actions only: stored ones of the kind keep running.
            raise BadRequest(runtime_deprecated(resolved))
        # OpenWhisk reads a blackbox's image before its code: a blackbox needs one (the
        # native skeleton is named, as `wsk --native` does).
        image = _blackbox_image(raw.get("image")) if resolved == BLACKBOX else None
        code = raw.get("code")
        blank = code is None or (isinstance(code, str) and not code.strip())
        if blank and resolved == BLACKBOX:
            # An image that brings its own code: OpenWhisk takes a missing or blank code
            # as none (``wsk``/``aio --docker`` without a file send none).
            code = ""
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
        return cls(
            kind=resolved, code=code, binary=is_binary_code(code), main=main or None, image=image
        )


def _blackbox_image(image: object) -> str:
    """The image of a ``blackbox`` action: a Docker image name (``[registry/]name[:tag]``,
    any image; whether the invoker has it is known only when it runs). OpenWhisk refuses
    a blackbox without one, in these words."""
    if not isinstance(image, str) or not image.strip():
        raise BadRequest(
            "The request content was malformed:\n'image' must be a string defined in 'exec' "
            f"for '{BLACKBOX}' actions"
        )
    if not _IMAGE_NAME.fullmatch(image.strip()):
        raise BadRequest(
            f"The request content was malformed:\n'{image}' is not a valid image name."
        )
    return image.strip()


#: Docker's reference grammar, simplified: lower-case path components, optional tag or digest.
_IMAGE_NAME = re.compile(
    r"(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)


def is_native_image(image: str) -> bool:
    """Whether ``image`` is one of the manifest's ``blackboxes`` (OpenWhisk's native
    skeleton), whose actions run natively rather than on Docker."""
    name = image.strip().removeprefix("docker.io/")
    return name.partition(":")[0] in manifest().native_images
