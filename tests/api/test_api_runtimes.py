"""The runtimes manifest through the API: the kinds ``GET /`` lists, actions of every
Node.js kind and of python:3.11 using the libraries users import, and deprecated kinds.

Everything runs for real: the standalone platform in-process, each action in a bubblewrap
sandbox on the interpreter the manifest names, with its kind's library set bound read-only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from _required import unavailable
from apisupport import NS, assert_error

from squall.cli.standalone import Standalone, serve
from squall.config import Settings
from squall.entities import manifest as in_use
from squall.entities.manifest import runtime_deprecated

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
NODE_KINDS = ["nodejs:18", "nodejs:20", "nodejs:22", "nodejs:24"]
PYTHON_KINDS = ["python:3.11", "python:3.13"]

# Requires every library the Node.js kinds ship, and uses each a little.
NODE_LIBRARIES = """
const ow = require('openwhisk');
const fetch = require('node-fetch');
const axios = require('axios');
const express = require('express');
const bodyParser = require('body-parser');
const { v4: uuidv4 } = require('uuid');
const cookie = require('cookie');
const redis = require('redis');

async function main(params) {
  const client = ow({apihost: process.env.__OW_API_HOST, api_key: 'user:pass'});
  return {
    node: process.versions.node,
    openwhisk: typeof client.actions.invoke,
    fetch: typeof fetch, response: typeof fetch.Response,
    axios: typeof axios.create().get,
    express: typeof express().use,
    bodyParser: typeof bodyParser.urlencoded({extended: false}),
    uuid: uuidv4().length,
    cookie: cookie.serialize('a', params.value),
    redis: typeof redis.createClient({url: 'redis://127.0.0.1:1'}).connect,
  };
}
"""
NODE_EXPECTED = {
    "openwhisk": "function",
    "fetch": "function",
    "response": "function",
    "axios": "function",
    "express": "function",
    "bodyParser": "function",
    "uuid": 36,
    "cookie": "a=b",
    "redis": "function",
}

# Imports what python:3.11 ships: the four the issue names and OpenWhisk's image's list.
PYTHON_LIBRARIES = """
import sys

import bs4
import dateutil.parser
import httplib2
import httpx
import kafka
import lxml.etree
import netifaces
import psycopg
import redis
import requests
import scrapy
import simplejson
import twisted
import virtualenv


def main(args):
    return {
        "python": "%d.%d" % sys.version_info[:2],
        "requests": requests.Request("GET", "http://x/").method,
        "httpx": str(httpx.URL("http://x/a").path),
        "redis": redis.Redis.__name__,
        "psycopg": psycopg.pq.__impl__,
        "bs4": bs4.BeautifulSoup("<p>hi</p>", "lxml").p.text,
        "lxml": lxml.etree.fromstring("<a><b/></a>")[0].tag,
        "dateutil": dateutil.parser.isoparse("2024-05-06").month,
        "simplejson": simplejson.dumps({"k": 1}),
        "others": all(m.__name__ for m in (kafka, httplib2, scrapy, twisted, virtualenv)),
        "netifaces": "lo" in netifaces.interfaces(),
    }
"""
PYTHON_EXPECTED = {
    "python": "3.11",
    "requests": "GET",
    "httpx": "/a",
    "redis": "Redis",
    "psycopg": "binary",
    "bs4": "hi",
    "lxml": "b",
    "dateutil": 5,
    "simplejson": '{"k": 1}',
    "others": True,
    "netifaces": True,
}


def offered(system: Standalone, kind: str) -> None:
    if not system.factory.supports(kind):
        reason = system.factory.runtimes.missing.get(kind, "not in the manifest")
        unavailable(f"kind {kind} is not offered ({reason}): run squall runtimes install")


async def create_and_invoke(
    client: httpx.AsyncClient, name: str, kind: str, code: str, params: dict[str, Any]
) -> dict[str, Any]:
    body = {"exec": {"kind": kind, "code": code}, "limits": {"timeout": 60_000}}
    created = await client.put(f"{NS}/actions/{name}", json=body)
    assert created.status_code == 200, created.text
    r = await client.post(f"{NS}/actions/{name}?blocking=true", json=params, timeout=90)
    assert r.status_code == 200, r.text
    record: dict[str, Any] = r.json()
    assert record["response"]["status"] == "success", record
    return record


async def test_root_lists_the_kinds_of_the_manifest(
    anonymous: httpx.AsyncClient, system: Standalone
) -> None:
    # Given the platform / When GET /
    runtimes = (await anonymous.get("/")).json()["runtimes"]
    # Then the Node.js family lists its four kinds in order, nodejs:20 the default, in
    # OpenWhisk's shape
    for kind in NODE_KINDS:
        offered(system, kind)
    assert [k["kind"] for k in runtimes["nodejs"]] == NODE_KINDS
    for entry in runtimes["nodejs"]:
        assert set(entry) == {"kind", "image", "deprecated", "default", "attached", "requireMain"}
        assert entry["default"] is (entry["kind"] == "nodejs:20")
        assert entry["deprecated"] is False
        assert entry["image"] == f"openwhisk/action-nodejs-v{entry['kind'][7:]}:nightly"
    assert [k["kind"] for k in runtimes["python"]] == PYTHON_KINDS
    assert [k["default"] for k in runtimes["python"]] == [False, True]  # python:3.13


@pytest.mark.parametrize("kind", NODE_KINDS)
async def test_a_node_action_requires_the_shipped_libraries_on_every_node_kind(
    client: httpx.AsyncClient, system: Standalone, unique: Unique, kind: str
) -> None:
    # Given an action of this kind requiring openwhisk, node-fetch, axios, express, ...
    offered(system, kind)
    name = unique("node-libraries-" + kind.replace(":", ""))
    # When it is created unchanged and invoked
    record = await create_and_invoke(client, name, kind, NODE_LIBRARIES, {"value": "b"})
    # Then each library worked, on the Node.js version the kind names
    result = record["response"]["result"]
    assert result.pop("node").startswith(kind.partition(":")[2] + ".")
    assert result == NODE_EXPECTED
    assert next(a["value"] for a in record["annotations"] if a["key"] == "kind") == kind


@pytest.mark.parametrize("kind", PYTHON_KINDS)
async def test_a_python_action_imports_the_shipped_libraries(
    client: httpx.AsyncClient, system: Standalone, unique: Unique, kind: str
) -> None:
    # Given an action of this kind importing requests, httpx, redis, psycopg and
    # OpenWhisk's set (python:3.13: Debian 13's CPython, its own library set)
    offered(system, kind)
    # When it is created unchanged and invoked
    record = await create_and_invoke(client, unique("py-libraries"), kind, PYTHON_LIBRARIES, {})
    # Then every import worked and each library did its job
    assert record["response"]["result"] == {**PYTHON_EXPECTED, "python": kind.partition(":")[2]}


# -- deprecated kinds ------------------------------------------------------------------


@pytest.fixture
async def restore_manifest() -> AsyncIterator[None]:
    """The platforms of this test install their manifest process-wide: put back the one
    the module's platform installed."""
    before = in_use.manifest()
    try:
        yield
    finally:
        in_use.use_manifest(before)


def deprecating(path: Path, kind: str) -> Path:
    """An operator's manifest that marks ``kind`` of the shipped manifest deprecated."""
    shipped = json.loads(in_use.shipped_manifest_text())
    family = kind.partition(":")[0]
    [entry] = [k for k in shipped["runtimes"][family] if k["kind"] == kind]
    path.write_text(json.dumps({"runtimes": {family: [{**entry, "deprecated": True}]}}))
    return path


async def test_a_deprecated_kind_runs_existing_actions_and_refuses_new_ones(
    tmp_path: Path, restore_manifest: None
) -> None:
    # Given an action of nodejs:18 created while the kind was current
    home = tmp_path / "home"
    settings = Settings(home=home, stem_cells="", keep_warm_s=60)
    first = await Standalone.start(settings)
    try:
        offered(first, "nodejs:18")
        user, _, key = first.guest_auth.partition(":")
        auth = (user, key)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=first.app), base_url="http://t", auth=auth
        ) as client:
            code = "function main(p) { return {v: process.versions.node, n: p.n} }"
            body = {"exec": {"kind": "nodejs:18", "code": code}}
            assert (await client.put(f"{NS}/actions/old", json=body)).status_code == 200
    finally:
        await first.close()
    # When the operator's manifest deprecates nodejs:18 and the platform restarts
    override = deprecating(tmp_path / "runtimes.json", "nodejs:18")
    second = await Standalone.start(
        Settings(home=home, stem_cells="", runtimes_manifest=str(override))
    )
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=second.app), base_url="http://t", auth=auth
        ) as client:
            # Then GET / says so
            root = (await client.get("/")).json()["runtimes"]["nodejs"]
            assert [k["deprecated"] for k in root if k["kind"] == "nodejs:18"] == [True]
            # And the existing action still runs, on Node.js 18
            r = await client.post(f"{NS}/actions/old?blocking=true&result=true", json={"n": 1})
            assert r.status_code == 200, r.text
            assert r.json()["v"].startswith("18.") and r.json()["n"] == 1
            # But neither an update nor a new action of the kind is accepted
            message = runtime_deprecated("nodejs:18")
            for name in ("old", "new"):
                put = await client.put(
                    f"{NS}/actions/{name}?overwrite=true",
                    json={"exec": {"kind": "nodejs:18", "code": "function main() {}"}},
                )
                assert_error(put, 400, message)
            # While the other kinds are unaffected
            current = {"exec": {"kind": "nodejs:20", "code": "function main() { return {} }"}}
            assert (await client.put(f"{NS}/actions/new", json=current)).status_code == 200
    finally:
        await second.close()


async def test_an_interpreter_not_matching_its_kind_refuses_to_start(
    tmp_path: Path, restore_manifest: None
) -> None:
    # Given an operator's manifest pointing a python:3.99 kind at the Python running Squall
    override = tmp_path / "runtimes.json"
    entry = {"kind": "python:3.99", "default": False, "squall": {"executable": ["{python}"]}}
    override.write_text(json.dumps({"runtimes": {"python": [entry]}}))
    settings = Settings(home=tmp_path / "home", stem_cells="", runtimes_manifest=str(override))
    # When the platform starts, Then it refuses, saying which kind and which interpreter
    with pytest.raises(SystemExit) as refused:
        await serve(settings)
    message = str(refused.value)
    assert message.startswith("squall: kind python:3.99 needs python 3.99, but ")
    assert f" is {sys.version_info.major}.{sys.version_info.minor}." in message
