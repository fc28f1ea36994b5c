"""The native runtime proxy (action loop over ``exec``), driven through the process sandbox."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from _required import unavailable

from squall.sandbox.process import ProcessContainer, ProcessContainerFactory

pytestmark = pytest.mark.anyio

# A shell action loop using only sh builtins: it answers each input line with the line
# length, and says so on stdout and stderr.
SH_LOOP = """#!/bin/sh
while read -r line; do
  echo "got a line"
  echo "to stderr" >&2
  echo "{\\"length\\": ${#line}, \\"home\\": \\"$PWD\\", \\"secret\\": \\"$SECRET\\"}" >&3
done
"""
C_LOOP = r"""
#include <stdio.h>
#include <string.h>
int main(void) {
    char line[65536];
    FILE *out = fdopen(3, "w");
    while (fgets(line, sizeof line, stdin)) {
        printf("c saw %zu bytes\n", strlen(line));
        fflush(stdout);
        fprintf(out, "{\"c\": true, \"bytes\": %zu}\n", strlen(line));
        fflush(out);
    }
    return 0;
}
"""


@pytest.fixture
def compiled_exec(tmp_path: Path) -> bytes:
    """C_LOOP built with this machine's C compiler (skipped without one, except in CI)."""
    cc = shutil.which("cc")
    if cc is None:
        unavailable("no C compiler (cc) on this machine to build a native action")
    (tmp_path / "action.c").write_text(C_LOOP)
    subprocess.run(
        [cc, "-O1", "-o", str(tmp_path / "exec"), str(tmp_path / "action.c")], check=True
    )
    return (tmp_path / "exec").read_bytes()


def zip_b64(files: dict[str, bytes], modes: dict[str, int] | None = None) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = ((modes or {}).get(name, 0o644)) << 16
            archive.writestr(info, data)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


async def start(
    factory: ProcessContainerFactory, code: str, binary: bool = True, **init: Any
) -> tuple[ProcessContainer, int, Any]:
    container = await factory.create("native", 256)
    payload = {"name": "test", "code": code, "binary": binary, **init}
    answer = await container.initialize(payload, timeout=10)
    return container, answer.status, json.loads(answer.body)


async def invoke(container: ProcessContainer, value: Any) -> tuple[int, Any]:
    answer = await container.run({"value": value, "activation_id": "a1"}, timeout=10)
    return answer.status, json.loads(answer.body)


async def test_shell_loop_answers_each_run_and_logs(factory: ProcessContainerFactory) -> None:
    # Given a zip whose exec is a shell script (mode not executable in the zip)
    code = zip_b64({"exec": SH_LOOP.encode()})
    container, status, body = await start(factory, code, env={"SECRET": "s3"})
    assert (status, body) == (200, {"ok": True})
    # When it runs twice
    first = await invoke(container, {"x": 1})
    logs = await container.logs(1 << 20, 2.0)
    second = await invoke(container, {"x": 22})
    # Then each run got one JSON line and answered on fd 3, with the init env
    assert first[0] == 200 and second[0] == 200
    assert second[1]["length"] - first[1]["length"] == 1
    assert first[1]["secret"] == "s3"
    # And its stdout/stderr are the activation's logs, split at the sentinels
    assert [(line.stream, line.text) for line in logs.lines] == [
        ("stdout", "got a line"),
        ("stderr", "to stderr"),
    ]


async def test_source_code_becomes_exec(factory: ProcessContainerFactory) -> None:
    # Given a script sent as source rather than a zip (OpenWhisk's docker skeleton)
    container, status, _ = await start(factory, SH_LOOP, binary=False)
    # When it runs / Then it answered
    assert status == 200
    assert (await invoke(container, {}))[0] == 200


async def test_action_files_are_read_only(factory: ProcessContainerFactory) -> None:
    # Given an exec that tries to overwrite itself and reports whether it could
    script = (
        "#!/bin/sh\nwhile read -r line; do\n"
        "  if (echo x > ./exec) 2>/dev/null; then w=true; else w=false; fi\n"
        '  echo "{\\"writable\\": $w}" >&3\ndone\n'
    )
    container, status, _ = await start(factory, zip_b64({"exec": script.encode()}))
    assert status == 200
    # When it runs / Then its files were not writable
    assert await invoke(container, {}) == (200, {"writable": False})


async def test_compiled_c_program(factory: ProcessContainerFactory, compiled_exec: bytes) -> None:
    # Given a small C action loop compiled here
    code = zip_b64({"exec": compiled_exec}, {"exec": 0o755})
    container, status, _ = await start(factory, code)
    assert status == 200
    # When it runs / Then it answered and logged
    status, body = await invoke(container, {"a": "b"})
    assert status == 200 and body["c"] is True and body["bytes"] > 10
    logs = await container.logs(1 << 20, 2.0)
    assert [line.text for line in logs.lines] == [f"c saw {body['bytes']} bytes"]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"run.sh": b"#!/bin/sh\n"},
            "Initialization has failed due to: Zip file does not include exec",
        ),
        ({"exec": b"\x7fELF-not-really"}, "Initialization has failed due to: cannot start exec: "),
    ],
)
async def test_init_failures(
    factory: ProcessContainerFactory, files: dict[str, bytes], expected: str
) -> None:
    # Given a zip without exec, or with one that cannot be executed
    _, status, body = await start(factory, zip_b64(files))
    # Then /init fails with a message saying why
    assert status == 502
    assert body["error"].startswith(expected)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            "read -r line; echo 'not json' >&3",
            (502, {"error": "The action did not produce a valid JSON or JSON Array response."}),
        ),
        (
            "read -r line; echo 42 >&3",
            (502, {"error": "The action did not return a dictionary or array."}),
        ),
        (
            "read -r line; exit 3",
            (
                502,
                {"error": "The action did not produce a valid response and exited unexpectedly."},
            ),
        ),
    ],
)
async def test_bad_answers(
    factory: ProcessContainerFactory, script: str, expected: tuple[int, Any]
) -> None:
    # Given an exec that answers badly or exits
    container, status, _ = await start(
        factory, zip_b64({"exec": f"#!/bin/sh\n{script}\n".encode()})
    )
    assert status == 200
    # When it runs / Then the answer is the runtime's error
    assert await invoke(container, {}) == expected
