"""``squall action`` as a user runs it against the session's standalone."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from _cli_client import FAIL_JS, HELLO_JS, INC_PY, Wsk, write
from _required import unavailable
from _standalone import Standalone
from dockersupport import docker_ready, tiny_image

from squall.cli.client import exits

pytestmark = pytest.mark.integration


@pytest.fixture
def wsk(standalone: Standalone, tmp_path: Path) -> Wsk:
    return Wsk.for_server(standalone, tmp_path)


def test_create_invoke_result_get_list_delete(wsk: Wsk, unique: Callable[[str], str]) -> None:
    # Given a Node.js file
    name = unique("hello")
    code = write(wsk.home, "hello.js", HELLO_JS)

    # When it is created, then invoked with --result
    created = wsk.run("action", "create", name, str(code))
    result = wsk.run("action", "invoke", name, "-p", "name", "Ada", "--result")

    # Then wsk's confirmation is printed and the result is the pretty-printed JSON alone
    assert created.out == f"ok: created action {name}\n"
    assert json.loads(result.out) == {"greeting": "Hello Ada"}
    assert result.out.startswith('{\n    "greeting"')

    # And get prints "ok: got action" and the action, with its kind resolved by the server
    got = wsk.run("action", "get", name)
    assert got.out.startswith(f"ok: got action {name}\n")
    assert json.loads(got.out.split("\n", 1)[1])["exec"]["kind"] == "nodejs:20"

    # And list shows it as wsk does (fully qualified, visibility, kind)
    listed = wsk.run("action", "list", "--limit", "200")
    assert listed.out.startswith("actions\n")
    line = next(li for li in listed.out.splitlines() if li.startswith(f"/guest/{name} "))
    assert line.split()[1:] == ["private", "nodejs:20"]

    # When it is deleted, it is gone
    assert wsk.run("action", "delete", name).out == f"ok: deleted action {name}\n"
    gone = wsk.run("action", "get", name, rc=exits.NOT_FOUND)
    assert gone.err.startswith(
        f"error: Unable to get action '{name}': The requested resource does not exist."
    )


def test_blocking_invoke_prints_the_id_then_the_activation(
    wsk: Wsk, unique: Callable[[str], str]
) -> None:
    name = unique("hello")
    wsk.run("action", "create", name, str(write(wsk.home, "hello.js", HELLO_JS)))

    blocking = wsk.run("action", "invoke", name, "--blocking", "-p", "name", "Bo")
    first, rest = blocking.out.split("\n", 1)
    activation = json.loads(rest)
    assert first == f"ok: invoked /_/{name} with id {activation['activationId']}"
    assert activation["response"]["result"] == {"greeting": "Hello Bo"}
    assert any(line.endswith("stdout: hello Bo") for line in activation["logs"])

    # A non-blocking invoke prints the id only; with --json, the server's answer
    fired = wsk.run("action", "invoke", name)
    assert fired.out.startswith(f"ok: invoked /_/{name} with id ")
    assert len(fired.out.split()[-1]) == 32
    assert set(wsk.json("action", "invoke", name)) == {"activationId"}


def test_update_python_with_params_limits_and_annotations(
    wsk: Wsk, unique: Callable[[str], str]
) -> None:
    name = unique("inc")
    code = write(wsk.home, "inc.py", INC_PY)
    params = write(wsk.home, "params.json", json.dumps({"n": 10, "note": "from file"}))
    wsk.run("action", "create", name, str(code))

    updated = wsk.run(
        "action", "update", name, "-P", str(params), "-p", "n", "41",
        "--memory", "128", "--timeout", "5000", "-a", "description", "adds one",
        "--web", "true",
    )  # fmt: skip

    assert updated.out == f"ok: updated action {name}\n"
    action = wsk.json("action", "get", name)
    assert action["exec"]["kind"] == "python:3.13"
    assert {p["key"]: p["value"] for p in action["parameters"]} == {"n": 41, "note": "from file"}
    assert action["limits"]["memory"] == 128 and action["limits"]["timeout"] == 5000
    annotations = {a["key"]: a["value"] for a in action["annotations"]}
    assert annotations["description"] == "adds one"
    assert annotations["web-export"] is True and annotations["raw-http"] is False
    assert json.loads(wsk.run("action", "invoke", name, "-r").out) == {"n": 42}


def test_zip_kind_from_its_contents_and_sequences(wsk: Wsk, unique: Callable[[str], str]) -> None:
    # Given a zip holding __main__.py (no --kind), and a sequence of it twice
    archive = wsk.home / "inc.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("__main__.py", INC_PY)
    inc, seq = unique("inczip"), unique("seq")

    wsk.run("action", "create", inc, str(archive))
    wsk.run("action", "create", seq, "--sequence", f"{inc},{inc}")

    action = wsk.json("action", "get", inc)
    assert action["exec"]["binary"] is True and action["exec"]["kind"] == "python:3.13"
    sequence = wsk.json("action", "get", seq)
    assert sequence["exec"]["components"] == [f"/guest/{inc}", f"/guest/{inc}"]
    assert json.loads(wsk.run("action", "invoke", seq, "-p", "n", "1", "-r").out) == {"n": 3}

    # A zip that says nothing of its kind needs --kind
    other = wsk.home / "data.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("data.txt", "x")
    refused = wsk.run("action", "create", unique("z"), str(other), rc=exits.ERROR)
    assert "requires specifying the action kind explicitly" in refused.err


def test_a_failed_action_exits_with_the_application_error_code(
    wsk: Wsk, unique: Callable[[str], str]
) -> None:
    name = unique("fail")
    wsk.run("action", "create", name, str(write(wsk.home, "fail.js", FAIL_JS)))

    result = wsk.run("action", "invoke", name, "--result", rc=exits.APP_ERROR)

    assert json.loads(result.out) == {"error": "nope"}
    assert "Traceback" not in result.err


def test_helpful_errors(wsk: Wsk, standalone: Standalone, unique: Callable[[str], str]) -> None:
    code = write(wsk.home, "hello.js", HELLO_JS)
    name = unique("hello")

    # A kind the platform does not run: the server's message and 400's exit code
    bad_kind = wsk.run("action", "create", name, str(code), "--kind", "cobol:1", rc=144)
    assert "The specified runtime 'cobol:1' is not supported by this platform." in bad_kind.err
    assert bad_kind.err.startswith(f"error: Unable to create action '{name}': ")

    # A missing file and an extension no runtime has
    missing = wsk.run("action", "create", name, "nothere.js", rc=exits.ERROR)
    assert missing.err == "error: File 'nothere.js' is not a valid file or it does not exist\n"
    ruby = write(wsk.home, "x.rb", "puts 1")
    assert (
        "'.rb' is not a supported action runtime"
        in wsk.run("action", "create", name, str(ruby), rc=exits.ERROR).err
    )

    # A missing action
    absent = wsk.run("action", "invoke", unique("absent"), "-r", rc=exits.NOT_FOUND)
    assert "The requested resource does not exist." in absent.err

    # A wrong key
    uuid = standalone.auth.split(":")[0]
    wrong = wsk.run("action", "list", "--auth", f"{uuid}:{'x' * 64}", rc=exits.UNAUTHORIZED)
    assert "The supplied authentication is invalid." in wrong.err

    # Creating twice
    wsk.run("action", "create", name, str(code))
    twice = wsk.run("action", "create", name, str(code), rc=exits.CONFLICT)
    assert "resource already exists" in twice.err

    # None of them printed a traceback
    for result in (bad_kind, missing, absent, wrong, twice):
        assert "Traceback" not in result.err


def test_docker_creates_a_custom_image_action(wsk: Wsk, unique: Callable[[str], str]) -> None:
    # Given a custom image on the invoker's dockerd (tests/fixtures/tiny.c)
    problem = docker_ready()
    if problem is not None:
        unavailable(f"Docker backend: {problem}")
    image = tiny_image()
    name = unique("tiny")
    # When an action is created from it with --docker, without a file, and invoked
    created = wsk.run("action", "create", name, "--docker", image)
    result = wsk.run("action", "invoke", name, "-p", "n", "5", "--result")
    # Then it is a blackbox action of that image, and the image answered the run
    assert created.out == f"ok: created action {name}\n"
    got = json.loads(wsk.run("action", "get", name).out.split("\n", 1)[1])
    assert got["exec"]["kind"] == "blackbox"
    assert got["exec"]["image"] == image
    assert json.loads(result.out)["echo"]["value"] == {"n": 5}
