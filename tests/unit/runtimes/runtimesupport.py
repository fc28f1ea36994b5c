"""What the runtime tests share: zipped actions, starting a container, running it."""

from __future__ import annotations

import base64
import io
import json
import textwrap
import zipfile
from typing import Any

from squall.sandbox.process import ProcessContainer, ProcessContainerFactory

#: Generous: a loaded two-core machine may take seconds to start an interpreter.
TIMEOUT_S = 30


def zip_b64(files: dict[str, str], stored: tuple[str, ...] = ()) -> str:
    """A base64 zip; names in ``stored`` are not compressed (both methods get exercised)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            method = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
            archive.writestr(name, text, compress_type=method)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


async def start(
    factory: ProcessContainerFactory, kind: str, code: str, **init: Any
) -> tuple[ProcessContainer, int, Any]:
    """A container of ``kind`` after /init of ``code`` (dedented): it, the status, the body."""
    container = await factory.create(kind, 256)
    payload = {"name": "test", "code": textwrap.dedent(code), **init}
    answer = await container.initialize(payload, timeout=TIMEOUT_S)
    return container, answer.status, json.loads(answer.body)


async def invoke(container: ProcessContainer, value: Any, **extra: str) -> tuple[int, Any]:
    """One /run: the status and the decoded body."""
    answer = await container.run({"value": value, **extra}, timeout=TIMEOUT_S)
    return answer.status, json.loads(answer.body)
