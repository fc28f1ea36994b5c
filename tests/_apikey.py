"""Actions that call the platform with ``__OW_API_HOST`` and ``__OW_API_KEY``, shared by
the standalone (tests/integration) and cluster (tests/cluster) tests of action keys."""

from __future__ import annotations

from pathlib import Path

# Calls the REST API as the invoking namespace: invokes an action (blocking, result only)
# and lists the caller's namespaces. Prints nothing secret.
PY_CALLER = """
import base64, json, os, urllib.request

def call(method, path, body=None):
    host = os.environ["__OW_API_HOST"]
    token = base64.b64encode(os.environ["__OW_API_KEY"].encode()).decode()
    request = urllib.request.Request(
        host + "/api/v1" + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": "Basic " + token, "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as response:
        return json.loads(response.read())

def main(args):
    print("calling", args["target"], "through", os.environ["__OW_API_HOST"])
    called = call("POST", "/namespaces/_/actions/" + args["target"]
                  + "?blocking=true&result=true", {"who": "python"})
    return {"called": called, "namespaces": call("GET", "/namespaces")}
"""

# The action the callers invoke: who called it, and as which namespace it ran.
NODE_ECHO = """
function main(args) {
  return { hello: args.who, from: args.from, namespace: process.env.__OW_NAMESPACE };
}
"""

# Actions written for OpenWhisk, run unchanged: they fetch a URL with the library their
# runtime ships (node-fetch, requests), then call the platform as the invoking namespace —
# the Node.js one through the openwhisk npm client (openwhisk() with no options reads
# __OW_API_HOST and __OW_API_KEY; made at load time, as many are), the Python one through
# the REST API — to invoke an action and fire a trigger.
NODE_REAL = """
const fetch = require('node-fetch');
const openwhisk = require('openwhisk');
const ow = openwhisk();

async function main(args) {
  const page = await (await fetch(args.url)).json();
  const called = await ow.actions.invoke({
    name: args.target, blocking: true, result: true, params: { who: 'node' },
  });
  const fired = await ow.triggers.invoke({ name: args.trigger, params: { from: 'node' } });
  return { page, called, triggerActivationId: fired.activationId };
}
"""

PY_REAL = """
import os

import requests


def main(args):
    page = requests.get(args["url"], timeout=10).json()
    auth = tuple(os.environ["__OW_API_KEY"].split(":", 1))
    api = os.environ["__OW_API_HOST"] + "/api/v1/namespaces/_"
    called = requests.post(
        api + "/actions/" + args["target"],
        params={"blocking": "true", "result": "true"},
        json={"who": "python"},
        auth=auth,
        timeout=60,
    ).json()
    fired = requests.post(
        api + "/triggers/" + args["trigger"], json={"from": "python"}, auth=auth, timeout=60
    ).json()
    return {"page": page, "called": called, "triggerActivationId": fired["activationId"]}
"""
REAL_ACTIONS = {"node": ("nodejs:20", NODE_REAL), "python": ("python:3.11", PY_REAL)}

PY_HAS_KEY = """
import os

def main(args):
    return {"hasKey": "__OW_API_KEY" in os.environ, "host": os.environ.get("__OW_API_HOST")}
"""

# Which uuid the action was given, and whether its key is accepted right now.
PY_WHO_AM_I = """
import base64, json, os, urllib.error, urllib.request

def main(args):
    key = os.environ.get("__OW_API_KEY", "")
    request = urllib.request.Request(
        os.environ["__OW_API_HOST"] + "/api/v1/namespaces",
        headers={"Authorization": "Basic " + base64.b64encode(key.encode()).decode()},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            status, body = response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        status, body = error.code, None
    return {"uuid": key.partition(":")[0], "status": status, "namespaces": body}
"""


def derive(secret_path: Path, uuid: str) -> str:
    """The key of action key ``uuid`` under the secret in ``secret_path``, as the invokers
    derive it (so a test can look for it where it must never appear)."""
    from squall.store import keys

    return keys.derive_key(secret_path.read_text().strip().encode(), uuid)
