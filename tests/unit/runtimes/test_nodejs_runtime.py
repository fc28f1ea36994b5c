"""The Node.js runtime proxy, driven through the process sandbox with a real `node`."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import pytest

from squall.sandbox.process import ProcessContainer, ProcessContainerFactory

pytestmark = pytest.mark.anyio

KIND = "nodejs:20"


def zip_b64(files: dict[str, str], stored: tuple[str, ...] = ()) -> str:
    """A base64 zip; names in ``stored`` are not compressed (both methods get exercised)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            method = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
            archive.writestr(name, text, compress_type=method)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


async def start(
    factory: ProcessContainerFactory, code: str, **init: Any
) -> tuple[ProcessContainer, int, Any]:
    container = await factory.create(KIND, 256)
    answer = await container.initialize({"name": "test", "code": code, **init}, timeout=10)
    return container, answer.status, json.loads(answer.body)


async def invoke(container: ProcessContainer, value: Any, **extra: str) -> tuple[int, Any]:
    answer = await container.run({"value": value, **extra}, timeout=10)
    return answer.status, json.loads(answer.body)


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
    container, status, body = await start(factory, code)
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
    container, status, _ = await start(factory, code, main="handler")
    assert status == 200
    # When it runs, Then require worked inside the action
    assert await invoke(container, {}) == (200, {"j": "a/b"})


async def test_run_environment_and_init_env_are_visible_to_the_action(
    factory: ProcessContainerFactory,
) -> None:
    # Given an action reporting its environment, initialized with an env parameter
    code = """function main() {
      const e = process.env;
      return {id: e.__OW_ACTIVATION_ID, ns: e.__OW_NAMESPACE, name: e.__OW_ACTION_NAME,
              key: e.__OW_API_KEY || null, host: e.__OW_API_HOST, secret: e.SECRET,
              ready: e.__OW_READY_FD || null}
    }"""
    container, status, _ = await start(factory, code, env={"SECRET": "s3"})
    assert status == 200
    # When it runs with activation metadata, then again without an api_key
    first = await invoke(
        container, {}, activation_id="a1", namespace="guest", action_name="env", api_key="k:1"
    )
    second = await invoke(container, {}, activation_id="a2", namespace="guest", action_name="env")
    # Then every string key became __OW_<KEY>, and a key absent from a run is gone again
    assert first == (
        200,
        {
            "id": "a1",
            "ns": "guest",
            "name": "env",
            "key": "k:1",
            "host": "https://api.example.test",
            "secret": "s3",
            "ready": None,
        },
    )
    assert second[1]["id"] == "a2" and second[1]["key"] is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("function main() { return [1, 2] }", (200, [1, 2])),
        ("function main() { }", (200, {})),
        ("function main() { return null }", (200, {})),
        (
            "function main() { return 'text' }",
            (502, {"error": "The action did not return a dictionary or array."}),
        ),
        (
            "async function main() { return 42 }",
            (502, {"error": "The action did not return a dictionary or array."}),
        ),
        ("function main() { return Promise.reject('nope') }", (200, {"error": "nope"})),
        (
            "function main() { return Promise.reject({code: 7}) }",
            (200, {"error": {"code": 7}}),
        ),
        (
            "function main() { throw new Error('boom') }",
            (502, {"error": "An error has occurred: Error: boom"}),
        ),
    ],
    ids=["array", "undefined", "null", "string", "number", "reject-string", "reject-obj", "throw"],
)
async def test_results_and_errors_follow_openwhisk(
    factory: ProcessContainerFactory, code: str, expected: tuple[int, Any]
) -> None:
    # Given an action returning, rejecting or throwing
    container, status, _ = await start(factory, code)
    assert status == 200
    # When it runs, Then the runtime answers like OpenWhisk's Node.js runtime
    assert await invoke(container, {}) == expected


async def test_a_rejected_error_object_is_serialized(factory: ProcessContainerFactory) -> None:
    # Given an action that rejects with an Error carrying an extra property
    code = "async function main() { const e = new TypeError('bad'); e.code = 'E1'; throw e }"
    container, _, _ = await start(factory, code)
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
        ("function main( {", {}, "SyntaxError"),
        ("function other() {}", {}, "Action entrypoint 'main' is not a function."),
        ("throw new Error('at load')", {}, "Error: at load"),
        ("", {}, "Missing main/no code to execute."),
        ("bm90IGEgemlw", {"binary": True}, "not a valid zip file"),
        (zip_b64({"lib.js": "exports.main = () => ({})"}), {"binary": True}, "package.json"),
    ],
    ids=["syntax", "no-main", "throws", "empty", "not-zip", "zip-without-entry"],
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


async def test_second_init_is_refused_and_run_before_init_too(
    factory: ProcessContainerFactory,
) -> None:
    # Given a fresh container
    container = await factory.create(KIND, 256)
    # When it runs before /init, Then 403
    assert await invoke(container, {}) == (
        403,
        {"error": "Cannot run the action before initialization."},
    )
    # When it is initialized twice, Then the second /init is 403
    first = await container.initialize({"code": "function main() { return {} }"}, timeout=10)
    second = await container.initialize({"code": "function main() { return {} }"}, timeout=10)
    assert first.status == 200
    assert (second.status, json.loads(second.body)) == (
        403,
        {"error": "Cannot initialize the action more than once."},
    )


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
    container, status, _ = await start(factory, code, binary=True)
    assert status == 200
    # When it runs, Then the dependency and the file came out of the zip
    assert await invoke(container, {"name": "zip"}) == (
        200,
        {"msg": "hello zip", "data": "payload"},
    )


async def test_zip_with_index_js_only(factory: ProcessContainerFactory) -> None:
    # Given a zip with just index.js and a helper module
    code = zip_b64(
        {
            "index.js": "const h = require('./helper'); exports.main = () => ({n: h()})",
            "helper.js": "module.exports = () => 41 + 1",
        }
    )
    container, status, _ = await start(factory, code, binary=True)
    assert status == 200
    # When it runs, Then index.js was the entry
    assert await invoke(container, {}) == (200, {"n": 42})


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
