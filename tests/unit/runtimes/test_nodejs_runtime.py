"""What only the Node.js proxy does (styles of exports, its error objects, package.json
zips), on nodejs:20; the protocol every kind follows is test_runtime_protocol.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from runtimesupport import invoke, start, zip_b64

from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

KIND = "nodejs:20"


@pytest.mark.parametrize(
    "code",
    [
        "function main(params) { return {echo: params.name} }",
        "exports.main = (params) => ({echo: params.name})",
        "module.exports.main = function (params) { return {echo: params.name} }",
        "async function main(params) { return {echo: params.name} }",
        "function main(params) {"
        " return new Promise(r => setTimeout(() => r({echo: params.name}), 5)) }",
    ],
    ids=["function", "exports", "module.exports", "async", "promise"],
)
async def test_source_actions_in_every_style_return_their_result(
    factory: ProcessContainerFactory, code: str
) -> None:
    # Given an action written in one of the styles OpenWhisk users use
    container, status, body = await start(factory, KIND, code)
    assert (status, body) == (200, {"ok": True})
    # When it runs
    result = await invoke(container, {"name": "squall"})
    # Then its result comes back as a 200
    assert result == (200, {"echo": "squall"})


async def test_main_with_another_name_and_require_of_builtins(
    factory: ProcessContainerFactory,
) -> None:
    # Given an action whose entry point is "handler" and which requires a Node module
    code = "const path = require('path'); function handler() { return {j: path.join('a', 'b')} }"
    container, status, _ = await start(factory, KIND, code, main="handler")
    assert status == 200
    # When it runs, Then require worked inside the action
    assert await invoke(container, {}) == (200, {"j": "a/b"})


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("function main() { }", (200, {})),
        ("function main() { return null }", (200, {})),
        (
            "async function main() { return 42 }",
            (502, {"error": "The action did not return a dictionary or array."}),
        ),
        (
            "function main() { return Promise.reject({code: 7}) }",
            (200, {"error": {"code": 7}}),
        ),
        (
            "function main() { throw new Error('boom') }",
            (502, {"error": "An error has occurred: Error: boom"}),
        ),
    ],
    ids=["undefined", "null", "number", "reject-obj", "throw"],
)
async def test_results_and_errors_follow_openwhisk(
    factory: ProcessContainerFactory, code: str, expected: tuple[int, Any]
) -> None:
    # Given an action returning, rejecting or throwing
    container, status, _ = await start(factory, KIND, code)
    assert status == 200
    # When it runs, Then the runtime answers like OpenWhisk's Node.js runtime
    assert await invoke(container, {}) == expected


async def test_a_rejected_error_object_is_serialized(factory: ProcessContainerFactory) -> None:
    # Given an action that rejects with an Error carrying an extra property
    code = "async function main() { const e = new TypeError('bad'); e.code = 'E1'; throw e }"
    container, _, _ = await start(factory, KIND, code)
    # When it runs
    status, body = await invoke(container, {})
    # Then the Error became a JSON object: an application error, not a developer error
    assert status == 200
    assert body["error"]["name"] == "TypeError"
    assert body["error"]["message"] == "bad"
    assert body["error"]["code"] == "E1"
    assert "stack" in body["error"]


@pytest.mark.parametrize(
    ("code", "init", "message"),
    [
        ("throw new Error('at load')", {}, "Error: at load"),
        ("exports.main = 42", {}, "Action entrypoint 'main' is not a function."),
        ("function main() {}", {"main": "no such-name"}, "invalid main function name"),
    ],
    ids=["throws", "not-a-function", "bad-main-name"],
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


async def test_zip_with_package_json_and_node_modules(factory: ProcessContainerFactory) -> None:
    # Given a zip whose package.json points into lib/, shipping a dependency in node_modules
    # (stored and deflated entries) and a data file read relative to the action
    code = zip_b64(
        {
            "package.json": json.dumps({"name": "a", "main": "lib/entry.js"}),
            "lib/entry.js": (
                "const greet = require('greet'); const fs = require('fs');\n"
                "exports.main = (p) => ({msg: greet(p.name), data: fs.readFileSync('data.txt', "
                "'utf8').trim()})"
            ),
            "data.txt": "payload\n",
            "node_modules/greet/package.json": json.dumps({"name": "greet"}),
            "node_modules/greet/index.js": "module.exports = (n) => `hello ${n}`",
        },
        stored=("node_modules/greet/index.js", "data.txt"),
    )
    container, status, _ = await start(factory, KIND, code, binary=True)
    assert status == 200
    # When it runs, Then the dependency and the file came out of the zip
    assert await invoke(container, {"name": "zip"}) == (
        200,
        {"msg": "hello zip", "data": "payload"},
    )


async def test_zip_entries_escaping_the_directory_are_refused(
    factory: ProcessContainerFactory,
) -> None:
    # Given a zip with an entry named ../evil.js
    code = zip_b64({"index.js": "exports.main = () => ({})", "../evil.js": "x"})
    container = await factory.create(KIND, 256)
    # When it is initialized
    answer = await container.initialize({"code": code, "binary": True}, timeout=10)
    # Then init fails and nothing was written outside the action directory
    assert answer.status == 502
    assert "escapes the action directory" in json.loads(answer.body)["error"]
    assert not (container.directory / "evil.js").exists()
