"""The OpenWhisk runtime protocol, one suite run against every Node.js and Python kind.

Each test states a behaviour once; :data:`SNIPPETS` holds the action code that exercises
it in each language. The kinds are those of the runtimes manifest (the shipped one, merged
with ``SQUALL_RUNTIMES_MANIFEST`` when set, so an operator's ``python:3.12`` is tested
too), each run by the interpreter the manifest names, in the bubblewrap sandbox, with its
library set bound read-only. A kind whose interpreter is not installed skips locally and
fails under ``CI=true`` (``./dev test`` installs them all).
"""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass
from typing import Any

import pytest
from _required import unavailable
from runtimesupport import invoke, start, zip_b64

from squall.runtimes import interpreter
from squall.sandbox.interpreters import load_manifest
from squall.sandbox.process import ProcessContainerFactory

pytestmark = pytest.mark.anyio

NOT_A_DICT = {"error": "The action did not return a dictionary or array."}
LIBRARIES = "/opt/squall/libraries"


@dataclass(frozen=True)
class Snippets:
    """Action code for each behaviour, in one language."""

    echo: str  # returns {"echo": params.name}
    environment: str  # returns activation id, namespace, api host and key, init env SECRET
    tamper: str  # returns __OW_NAMESPACE and __OW_API_KEY, then changes one, deletes the other
    array: str  # returns [1, "two"]
    text: str  # returns a string (not a dictionary)
    application_error: str  # fails with the message "bad input"
    logs: str  # writes "to stdout" and "to stderr", returns {}
    syntax_error: str
    other_main: str  # defines only "other"
    version: str  # returns {"version": the interpreter's x.y.z}
    zip_files: dict[str, str]  # an entry requiring a helper; returns {"n": 42}
    zip_without_entry: dict[str, str]
    entry_hint: str  # what the error names as the missing entry
    libraries: str  # uses every shipped library; returns {name: where it was loaded from}
    library_names: tuple[str, ...]
    own_library: dict[str, str]  # a zip bringing its own copy of a shipped library
    write_libraries: str  # writes into the library directory; returns {"code": errno name}


NODE = Snippets(
    echo="function main(params) { return {echo: params.name} }",
    environment="""function main() {
      const e = process.env;
      return {id: e.__OW_ACTIVATION_ID, ns: e.__OW_NAMESPACE, host: e.__OW_API_HOST,
              key: e.__OW_API_KEY || null, secret: e.SECRET}
    }""",
    tamper="""function main() {
      const e = process.env;
      const seen = {ns: e.__OW_NAMESPACE, key: e.__OW_API_KEY || null};
      e.__OW_NAMESPACE = 'changed';
      delete e.__OW_API_KEY;
      return seen;
    }""",
    array="function main() { return [1, 'two'] }",
    text="function main() { return 'text' }",
    application_error="function main() { return Promise.reject('bad input') }",
    logs="function main() { console.log('to stdout'); console.error('to stderr'); return {} }",
    syntax_error="function main( {",
    other_main="function other() { return {} }",
    version="function main() { return {version: process.versions.node} }",
    zip_files={
        "index.js": "const h = require('./helper'); exports.main = () => ({n: h()})",
        "helper.js": "module.exports = () => 41 + 1",
    },
    zip_without_entry={"lib.js": "exports.main = () => ({})"},
    entry_hint="package.json or index.js",
    libraries="""
      const path = require('path');
      function main() {
        const ow = require('openwhisk'), fetch = require('node-fetch'), axios = require('axios');
        const express = require('express'), bodyParser = require('body-parser');
        const uuid = require('uuid'), cookie = require('cookie'), redis = require('redis');
        const works = {
          openwhisk: typeof ow({apihost: 'https://x', api_key: 'a:b'}).actions.invoke,
          'node-fetch': typeof fetch, axios: typeof axios.get,
          express: typeof express().listen, 'body-parser': typeof bodyParser.json(),
          uuid: /^[0-9a-f-]{36}$/.test(uuid.v4()) ? 'function' : 'broken',
          cookie: cookie.parse('a=b').a === 'b' ? 'function' : 'broken',
          redis: typeof redis.createClient,
        };
        const where = {};
        for (const name of Object.keys(works)) {
          where[name] = works[name] === 'function' ? path.dirname(require.resolve(name)) : 'x';
        }
        return where;
      }""",
    library_names=(
        "openwhisk",
        "node-fetch",
        "axios",
        "express",
        "body-parser",
        "uuid",
        "cookie",
        "redis",
    ),
    own_library={
        "index.js": "exports.main = () => ({v4: require('uuid').v4()})",
        "node_modules/uuid/package.json": json.dumps({"name": "uuid", "main": "own.js"}),
        "node_modules/uuid/own.js": "exports.v4 = () => 'the action own uuid'",
    },
    write_libraries=f"""
      const fs = require('fs');
      function main() {{
        try {{ fs.writeFileSync('{LIBRARIES}/planted.js', 'x'); return {{code: 'written'}} }}
        catch (e) {{ return {{code: e.code}} }}
      }}""",
)

PYTHON = Snippets(
    echo="def main(args):\n    return {'echo': args['name']}",
    environment="""
        import os

        def main(args):
            e = os.environ
            return {"id": e["__OW_ACTIVATION_ID"], "ns": e["__OW_NAMESPACE"],
                    "host": e["__OW_API_HOST"], "key": e.get("__OW_API_KEY"),
                    "secret": e["SECRET"]}
    """,
    tamper="""
        import os

        def main(args):
            e = os.environ
            seen = {"ns": e.get("__OW_NAMESPACE"), "key": e.get("__OW_API_KEY")}
            e["__OW_NAMESPACE"] = "changed"
            del e["__OW_API_KEY"]
            return seen
    """,
    array="def main(args):\n    return [1, 'two']",
    text="def main(args):\n    return 'text'",
    application_error="def main(args):\n    raise ValueError('bad input')",
    logs="""
        import sys

        def main(args):
            print('to stdout')
            print('to stderr', file=sys.stderr)
            return {}
    """,
    syntax_error="def main(args)\n    return {}",
    other_main="def other(args):\n    return {}",
    version="""
        import sys

        def main(args):
            return {"version": "%d.%d.%d" % sys.version_info[:3]}
    """,
    zip_files={
        "__main__.py": "from helper import answer\n\ndef main(args):\n    return {'n': answer()}\n",
        "helper.py": "def answer():\n    return 41 + 1\n",
    },
    zip_without_entry={"main.py": "def main(args):\n    return {}\n"},
    entry_hint="__main__.py",
    libraries="""
        import os

        def main(args):
            import requests, httpx, redis, psycopg, bs4, lxml.etree, dateutil.parser
            import simplejson, kafka, httplib2, scrapy, twisted, virtualenv, netifaces
            works = {
                "requests": requests.Session, "httpx": httpx.Client, "redis": redis.Redis,
                # the binary libpq shipped with psycopg, really loaded
                "psycopg": psycopg.pq.version() > 0 and psycopg.pq.__impl__ == "binary",
                "bs4": bs4.BeautifulSoup("<b>x</b>", "lxml").b.text == "x",
                "lxml": lxml.etree.fromstring("<a/>").tag == "a",
                "dateutil": dateutil.parser.parse("2020-01-02").year == 2020,
                "simplejson": simplejson.loads("[1]") == [1],
                "kafka": kafka.KafkaProducer, "httplib2": httplib2.Http,
                "scrapy": scrapy.Spider, "twisted": twisted.__version__,
                "virtualenv": virtualenv.cli_run, "netifaces": "lo" in netifaces.interfaces(),
            }
            modules = {"requests": requests, "httpx": httpx, "redis": redis,
                       "psycopg": psycopg, "bs4": bs4, "lxml": lxml,
                       "dateutil": dateutil, "simplejson": simplejson, "kafka": kafka,
                       "httplib2": httplib2, "scrapy": scrapy, "twisted": twisted,
                       "virtualenv": virtualenv, "netifaces": netifaces}
            return {name: os.path.dirname(modules[name].__file__) if ok else "broken"
                    for name, ok in works.items()}
    """,
    library_names=(
        "requests",
        "httpx",
        "redis",
        "psycopg",
        "bs4",
        "lxml",
        "dateutil",
        "simplejson",
        "kafka",
        "httplib2",
        "scrapy",
        "twisted",
        "virtualenv",
        "netifaces",
    ),
    own_library={
        "__main__.py": "import redis\n\ndef main(args):\n    return {'v4': redis.OWN}\n",
        "virtualenv/lib/python3/site-packages/redis/__init__.py": "OWN = 'the action own uuid'\n",
    },
    write_libraries=f"""
        import errno

        def main(args):
            try:
                with open("{LIBRARIES}/planted.py", "w") as file:
                    file.write("x")
            except OSError as ex:
                return {{"code": errno.errorcode[ex.errno]}}
            return {{"code": "written"}}
    """,
)

SNIPPETS = {"nodejs": NODE, "python": PYTHON}
KINDS = [
    k.kind
    for k in load_manifest(os.environ.get("SQUALL_RUNTIMES_MANIFEST") or None).kinds
    if k.family in SNIPPETS
]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest, factory: ProcessContainerFactory) -> str:
    name: str = request.param
    if not factory.supports(name):
        reason = factory.runtimes.missing.get(name, "not in the manifest")
        unavailable(f"kind {name} is not offered here ({reason}): run squall runtimes install")
    return name


def code_of(kind: str) -> Snippets:
    return SNIPPETS[interpreter(kind)]


async def test_the_kind_runs_on_the_interpreter_its_label_names(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given an action reporting its interpreter's version
    container, status, _ = await start(factory, kind, code_of(kind).version)
    assert status == 200
    # When it runs, Then nodejs:18 runs on Node.js 18.x, python:3.11 on CPython 3.11.x
    _, body = await invoke(container, {})
    assert body["version"].startswith(kind.partition(":")[2] + ".")


async def test_init_then_run_returns_the_result(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given a container initialized with an action
    container, status, body = await start(factory, kind, code_of(kind).echo)
    assert (status, body) == (200, {"ok": True})
    # When it runs twice (a warm container is reused), Then each result is a 200
    assert await invoke(container, {"name": "one"}) == (200, {"echo": "one"})
    assert await invoke(container, {"name": "two"}) == (200, {"echo": "two"})


async def test_activation_metadata_and_init_env_reach_the_action(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given an action reporting its environment, initialized with an env parameter
    container, status, _ = await start(
        factory, kind, code_of(kind).environment, env={"SECRET": "s3"}
    )
    assert status == 200
    # When it runs with activation metadata, then again without an api_key
    first = await invoke(container, {}, activation_id="a1", namespace="guest", api_key="k:1")
    second = await invoke(container, {}, activation_id="a2", namespace="guest")
    # Then every string key became __OW_<KEY>, and one absent from a run is gone again
    assert first == (
        200,
        {
            "id": "a1",
            "ns": "guest",
            "host": "https://api.example.test",
            "key": "k:1",
            "secret": "s3",
        },
    )
    assert second[1]["id"] == "a2" and second[1]["key"] is None


async def test_run_metadata_the_action_changed_is_set_again_on_the_next_run(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given an action that changes __OW_NAMESPACE and deletes __OW_API_KEY as it runs
    container, status, _ = await start(factory, kind, code_of(kind).tamper)
    assert status == 200
    # When it runs three times with the same namespace and key, as runs of one action do
    runs = [
        await invoke(container, {}, activation_id=f"a{n}", namespace="guest", api_key="k:1")
        for n in range(3)
    ]
    # Then every run sees the values of its own message, not what the last run left
    assert runs == [(200, {"ns": "guest", "key": "k:1"})] * 3


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        ("array", (200, [1, "two"])),
        ("text", (502, NOT_A_DICT)),
        ("application_error", (200, {"error": "bad input"})),
    ],
)
async def test_results_and_failures_answer_as_openwhisk(
    factory: ProcessContainerFactory, kind: str, behaviour: str, expected: tuple[int, Any]
) -> None:
    # Given an action returning an array, a string, or failing
    container, status, _ = await start(factory, kind, getattr(code_of(kind), behaviour))
    assert status == 200
    # When it runs, Then the answer is OpenWhisk's
    assert await invoke(container, {}) == expected


async def test_stdout_and_stderr_are_the_activation_logs(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given an action writing to both streams
    container, _, _ = await start(factory, kind, code_of(kind).logs)
    await container.logs(limit_bytes=10_000, wait=5)  # what /init wrote, if anything
    # When it runs
    assert await invoke(container, {}) == (200, {})
    # Then its lines, and only the activation's, are its logs (the sentinels end them)
    logs = await container.logs(limit_bytes=10_000, wait=5)
    assert [(line.stream, line.text) for line in logs.lines] == [
        ("stdout", "to stdout"),
        ("stderr", "to stderr"),
    ]


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ("syntax_error", "SyntaxError"),
        ("other_main", "Action entrypoint 'main' is not a function."),
        ("empty", "Missing main/no code to execute."),
        ("not_a_zip", "not a valid zip file"),
        ("zip_without_entry", ""),
    ],
)
async def test_init_failures_answer_502_saying_why(
    factory: ProcessContainerFactory, kind: str, behaviour: str, message: str
) -> None:
    # Given broken action code
    code = code_of(kind)
    init: dict[str, Any] = {"code": getattr(code, behaviour, "")}
    if behaviour == "not_a_zip":
        init = {"code": "bm90IGEgemlw", "binary": True}
    elif behaviour == "zip_without_entry":
        init = {"code": zip_b64(code.zip_without_entry), "binary": True}
        message = code.entry_hint
    container = await factory.create(kind, 256)
    # When the container is initialized with it
    answer = await container.initialize(init, timeout=30)
    # Then it answers 502 and says why
    body = json.loads(answer.body)
    assert answer.status == 502
    assert body["error"].startswith("Initialization has failed due to: ")
    assert message in body["error"]


async def test_run_before_init_and_a_second_init_are_refused(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given a fresh container
    container = await factory.create(kind, 256)
    # When it runs before /init, Then 403
    assert await invoke(container, {}) == (
        403,
        {"error": "Cannot run the action before initialization."},
    )
    # When it is initialized twice, Then the second /init is 403
    code = textwrap.dedent(code_of(kind).echo)
    assert (await container.initialize({"code": code}, timeout=30)).status == 200
    second = await container.initialize({"code": code}, timeout=30)
    assert (second.status, json.loads(second.body)) == (
        403,
        {"error": "Cannot initialize the action more than once."},
    )


async def test_a_zip_action_finds_its_own_modules(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given a zip whose entry requires a helper module shipped beside it
    code = zip_b64(code_of(kind).zip_files)
    container, status, _ = await start(factory, kind, code, binary=True)
    assert status == 200
    # When it runs, Then the helper came from the zip
    assert await invoke(container, {}) == (200, {"n": 42})


async def test_the_shipped_libraries_are_importable_from_the_library_set(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given an action that uses every library its kind ships
    code = code_of(kind)
    if factory.runtimes.interpreters[kind].libraries is None:
        unavailable(f"the libraries of {kind} are not installed: run squall runtimes install")
    container, status, body = await start(factory, kind, code.libraries)
    assert (status, body) == (200, {"ok": True})
    # When it runs
    status, where = await invoke(container, {})
    # Then each one worked, loaded from the read-only library set
    assert status == 200, where
    assert sorted(where) == sorted(code.library_names)
    assert all(path.startswith(LIBRARIES + "/") for path in where.values()), where


async def test_an_action_own_copy_of_a_library_wins(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given a zip shipping its own copy of a library the kind also ships
    code = zip_b64(code_of(kind).own_library)
    container, status, _ = await start(factory, kind, code, binary=True)
    assert status == 200
    # When it runs, Then its own copy was loaded
    assert await invoke(container, {}) == (200, {"v4": "the action own uuid"})


async def test_the_library_set_is_read_only(factory: ProcessContainerFactory, kind: str) -> None:
    # Given an action that tries to plant a file among the shared libraries
    if factory.runtimes.interpreters[kind].libraries is None:
        unavailable(f"the libraries of {kind} are not installed: run squall runtimes install")
    container, status, _ = await start(factory, kind, code_of(kind).write_libraries)
    assert status == 200
    # When it runs, Then the file system refuses: the set is bound read-only
    assert await invoke(container, {}) == (200, {"code": "EROFS"})
