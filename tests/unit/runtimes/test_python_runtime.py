"""What only the CPython proxy does (async main, tracebacks, import errors, data files in
zips), on python:3.11; the protocol every kind follows is test_runtime_protocol.py."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from runtimesupport import invoke, start, zip_b64

from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

KIND = "python:3.11"


async def test_source_action_runs_with_its_environment(factory: ProcessContainerFactory) -> None:
    # Given a Python action reading its environment, initialized with an env parameter
    code = """
        import os

        def main(args):
            return {"name": args["name"], "id": os.environ["__OW_ACTIVATION_ID"],
                    "host": os.environ["__OW_API_HOST"], "secret": os.environ["SECRET"],
                    "key": os.environ.get("__OW_API_KEY"),
                    "ready": os.environ.get("__OW_READY_FD")}

        if __name__ == "__main__":
            raise SystemExit("a __main__ block must not run")
    """
    container, status, body = await start(factory, KIND, code, env={"SECRET": "s3"})
    assert (status, body) == (200, {"ok": True})
    # When it runs with activation metadata
    result = await invoke(container, {"name": "py"}, activation_id="a1", namespace="guest")
    # Then the metadata became __OW_* variables and init env is set
    assert result == (
        200,
        {
            "name": "py",
            "id": "a1",
            "host": "https://api.example.test",
            "secret": "s3",
            "key": None,
            "ready": None,
        },
    )


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("async def main(args):\n    return {'async': True}", (200, {"async": True})),
        (
            "def main(args):\n    return None",
            (502, {"error": "The action did not return a dictionary or array."}),
        ),
    ],
    ids=["async", "none"],
)
async def test_results_and_errors_follow_openwhisk(
    factory: ProcessContainerFactory, code: str, expected: tuple[int, Any]
) -> None:
    # Given an action returning or raising
    container, status, _ = await start(factory, KIND, code)
    assert status == 200
    # When it runs, Then the runtime answers like OpenWhisk's Python runtime
    assert await invoke(container, {}) == expected


async def test_an_exception_prints_its_traceback_on_stderr(
    factory: ProcessContainerFactory,
) -> None:
    # Given an action that raises
    container, _, _ = await start(factory, KIND, "def main(args):\n    raise KeyError('missing')")
    await container.logs(limit_bytes=10_000, wait=5)
    # When it runs
    await invoke(container, {})
    # Then the traceback is in the activation's stderr
    logs = await container.logs(limit_bytes=10_000, wait=5)
    stderr = "\n".join(line.text for line in logs.lines if line.stream == "stderr")
    assert "Traceback" in stderr
    assert "KeyError: 'missing'" in stderr


@pytest.mark.parametrize(
    ("code", "init", "message"),
    [
        ("import not_a_module_anywhere", {}, "ModuleNotFoundError"),
        ("main = 42", {}, "Action entrypoint 'main' is not a function."),
    ],
    ids=["import-error", "not-a-function"],
)
async def test_init_failures_answer_502_with_a_helpful_message(
    factory: ProcessContainerFactory, code: str, init: dict[str, Any], message: str
) -> None:
    # Given broken action code
    container = await factory.create(KIND, 256)
    # When the container is initialized with it
    answer = await container.initialize({"code": code, **init}, timeout=10)
    # Then it answers 502 and says why
    body = json.loads(answer.body)
    assert answer.status == 502
    assert body["error"].startswith("Initialization has failed due to: ")
    assert message in body["error"]


async def test_zip_with_main_module_and_helper(factory: ProcessContainerFactory) -> None:
    # Given a zip with __main__.py importing a helper module and reading a data file
    code = zip_b64(
        {
            "__main__.py": textwrap.dedent(
                """
                from helper import greet

                def main(args):
                    with open("data.txt") as f:
                        return {"msg": greet(args["name"]), "data": f.read().strip()}
                """
            ),
            "helper.py": "def greet(name):\n    return 'hello ' + name\n",
            "data.txt": "payload\n",
        }
    )
    container, status, _ = await start(factory, KIND, code, binary=True)
    assert status == 200
    # When it runs, Then the helper and the file came from the zip
    assert await invoke(container, {"name": "zip"}) == (
        200,
        {"msg": "hello zip", "data": "payload"},
    )


async def test_non_json_result_is_a_developer_error(factory: ProcessContainerFactory) -> None:
    # Given an action returning a dict that JSON cannot hold
    container, _, _ = await start(factory, KIND, "def main(args):\n    return {'s': {1, 2}}")
    # When it runs
    status, body = await invoke(container, {})
    # Then the runtime answers 502 instead of crashing
    assert status == 502
    assert "valid JSON" in body["error"]
