"""What keeps the CPython proxy's true cold start short, and that it changes nothing an
action or the invoker sees: the modules it loads before serving, its JSON codec (the C
accelerator json itself uses, checked against json), its bytecode cached once per
factory, an action's view of ``sys.path`` and ``sys.modules``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from runtimesupport import invoke, start

from squall.runtimes import proxy_path
from squall.sandbox.interpreters import cached_bytecode, probe_python
from squall.sandbox.process import ProcessContainerFactory

PROXY_DIR = proxy_path("python").parent
sys.path.insert(0, str(PROXY_DIR))
import proxy  # type: ignore[import-not-found]  # noqa: E402  (a script directory)

sys.path.remove(str(PROXY_DIR))

#: Modules whose import would put the slow part of the start back (each pulls in
#: Python-level code: re, enum, functools, collections, ...).
HEAVY = {"json", "re", "enum", "socket", "selectors", "signal", "contextlib", "types"}
HEAVY |= {"collections", "functools", "typing", "importlib.util", "tempfile", "traceback"}


def test_the_proxy_loads_no_heavy_module_before_it_serves() -> None:
    # Given the runtime's interpreter, started as a sandbox starts it (-I -S)
    code = f"import sys; sys.path.insert(0, {str(PROXY_DIR)!r}); import proxy; print(*sys.modules)"
    # When it imports the proxy
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    # Then none of the heavy modules was loaded
    assert HEAVY.isdisjoint(done.stdout.split())


def test_the_proxy_loads_neither_os_nor_its_abcs_before_it_serves() -> None:
    # Given the runtime's interpreter, started as a sandbox starts it (-I -S)
    code = f"import sys; sys.path.insert(0, {str(PROXY_DIR)!r}); import proxy; print(*sys.modules)"
    # When it imports the proxy
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    # Then os (and the ABCs it builds, its import's larger half) is not loaded: an action
    # that never imports it does not pay for it
    assert {"os", "_collections_abc", "posixpath"}.isdisjoint(done.stdout.split())


def test_the_proxy_imports_pid_1s_reaper_only_when_it_is_pid_1() -> None:
    # Given the runtime's interpreter, started as a sandbox starts it, noting every import
    code = f"""
import sys
asked = []
class Noting:
    def find_spec(self, name, path=None, target=None):
        asked.append(name)
sys.meta_path.insert(0, Noting())
sys.path.insert(0, {str(PROXY_DIR)!r})
import proxy
before = "proxy_orphans" in asked
reaper = proxy.orphans()
print(before, "proxy_orphans" in asked, type(reaper).__name__, "proxy_orphans" in sys.modules)
"""
    # When it imports the proxy (not pid 1: a true cold start's runtime), then asks for
    # the reaper (as a namespace's init does)
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    # Then the reaper's module was imported only then, and left sys.modules again
    assert done.stdout.split() == ["False", "True", "Orphans", "False"]


DOCUMENTS: list[bytes] = [
    b'{"value": {"name": "x", "n": 1, "f": 2.5, "big": 12345678901234567890}}',
    b'  [1, -2, 3e5, true, false, null, "\\u00e9\\ud83d\\ude00", {"": {}}]  \n',
    '{"é": "ü€"}'.encode(),
    b'"just a string"',
    b"[NaN, Infinity, -Infinity]",
    b"\xef\xbb\xbf{}",  # a UTF-8 BOM: json accepts it from bytes
    '{"a": 1}'.encode("utf-16"),
]
BAD: list[bytes] = [b"{", b"{} x", b"", b"[1,]", b"\xff\xfe", b'{"a" 1}', b"nul"]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_decoder_reads_what_json_reads(document: bytes) -> None:
    # Given a request body, When the proxy decodes it, Then it gets what json.loads gets
    expected, got = json.loads(document), proxy.loads(document)
    assert json.dumps(got) == json.dumps(expected)


@pytest.mark.parametrize("document", BAD)
def test_the_decoder_fails_as_json_fails(document: bytes) -> None:
    # Given a body that is not JSON
    with pytest.raises(ValueError) as expected:
        json.loads(document)
    # When the proxy decodes it, Then it fails with json's own error and message
    with pytest.raises(ValueError) as got:
        proxy.loads(document)
    assert (type(got.value), str(got.value)) == (type(expected.value), str(expected.value))


VALUES: list[Any] = [
    {"a": [1, 2.5, None, True, 'é\n\t"\\'], "b": {"c": []}},
    [1, "x", {"k": -0.0}],
    {"big": 10**30, "unicode": "\u2028\ud800"},
    "a string",
]


@pytest.mark.parametrize("value", VALUES)
def test_the_encoder_writes_what_json_writes(value: Any) -> None:
    # Given a result, When the proxy encodes it, Then the text is json.dumps's, byte for byte
    expected = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    assert proxy.dumps(value) == expected


def circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize("value", [{"a": math.nan}, {"s": {1}}, circular(), [object()]])
def test_the_encoder_fails_as_json_fails(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as expected:
        json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    with pytest.raises((TypeError, ValueError)) as got:
        proxy.dumps(value)
    assert (type(got.value), str(got.value)) == (type(expected.value), str(expected.value))


def test_bytecode_is_compiled_once_and_again_when_the_source_changes(tmp_path: Path) -> None:
    # Given a script without bytecode, and the runtime's interpreter
    version = probe_python(sys.executable)
    assert version is not None
    script = tmp_path / "runtime.py"
    script.write_text("VALUE = 1\n")
    cached = (
        tmp_path / "__pycache__" / f"runtime.cpython-{sys.version_info[0]}{sys.version_info[1]}.pyc"
    )
    # When it is asked for, Then it is compiled
    assert cached_bytecode(sys.executable, version, script)
    assert cached.is_file()
    first = cached.stat().st_mtime_ns
    # And asked again, it is left alone
    assert cached_bytecode(sys.executable, version, script)
    assert cached.stat().st_mtime_ns == first
    # When the source changes (size and mtime), Then it is compiled again
    script.write_text("VALUE = 22\n")
    os.utime(script, (1_000_000_000, 1_000_000_000))
    assert cached_bytecode(sys.executable, version, script)
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import runtime; "
            "print(runtime.VALUE)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "22"


def test_a_directory_that_cannot_be_written_is_not_an_error(tmp_path: Path) -> None:
    # Given a script whose directory holds a file where __pycache__ would go
    script = tmp_path / "runtime.py"
    script.write_text("VALUE = 1\n")
    (tmp_path / "__pycache__").write_text("not a directory")
    version = probe_python(sys.executable)
    assert version is not None
    # When its bytecode is asked for, Then the answer is no, without an exception
    assert not cached_bytecode(sys.executable, version, script)


@pytest.mark.anyio
async def test_an_action_sees_neither_the_proxy_directory_nor_its_module(
    factory: ProcessContainerFactory,
) -> None:
    # Given a Python action started from nothing (through bubblewrap)
    code = """
        import sys

        def main(args):
            return {"path": [p for p in sys.path if "squall" in p], "proxy": "proxy" in sys.modules,
                    "main": sys.modules["__main__"].__name__}
    """
    container, status, _ = await start(factory, "python:3.11", code)
    assert status == 200
    # When it looks at its sys.path and modules
    status, seen = await invoke(container, {})
    # Then the proxy's directory is not on its path, nor its module among the modules
    assert status == 200
    assert seen == {"path": ["/opt/squall/libraries"], "proxy": False, "main": "__main__"}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["python:3.13", "python:3.11"])
async def test_the_compiler_warmed_before_init_leaves_the_action_nothing_to_see(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given a Python action started from nothing (through bubblewrap), whose proxy compiled
    # an empty module once after its ready byte (the compiler's first use, off /init)
    code = """
        import linecache, sys

        def main(args):
            return {"ast": "ast" in sys.modules,
                    "cached": [name for name in linecache.cache if "warm" in name]}
    """
    container, status, _ = await start(factory, kind, code)
    assert status == 200
    # When it looks for traces of that compile
    status, seen = await invoke(container, {})
    # Then there are none: no module imported for it, no source cached under its name
    assert status == 200
    assert seen == {"ast": False, "cached": []}


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["python:3.13", "python:3.11"])
async def test_an_action_that_imports_os_late_sees_the_environment_os_environ_would_show(
    factory: ProcessContainerFactory, kind: str
) -> None:
    # Given a Python action started from nothing, with an /init parameter in its
    # environment, that imports os only in its second run
    code = """
        import sys

        def main(args):
            loaded = "os" in sys.modules
            if not args.get("import"):
                return {"os": loaded}
            import os, subprocess
            c_env = dict(line.split("=", 1) for line in subprocess.run(
                ["env"], capture_output=True, text=True).stdout.splitlines() if "=" in line)
            names = ("PARAM", "__OW_ACTIVATION_ID", "__OW_ACTION_NAME", "__OW_GONE")
            return {"os": loaded, "python": {n: os.environ.get(n) for n in names},
                    "c": {n: c_env.get(n) for n in names}, "listen": "__OW_LISTEN_FD" in c_env}
    """
    env = {"PARAM": "from init", "JSONED": 3}
    container, status, _ = await start(factory, kind, code, env=env)
    assert status == 200
    # When a first run exports its values (one of them not exported again later), and a
    # second one imports os
    first = await invoke(container, {}, activation_id="a" * 32, action_name="x", gone="1")
    second = await invoke(container, {"import": True}, activation_id="b" * 32, action_name="x")
    # Then os was not loaded before, and os.environ and the C environment a child inherits
    # show this run's values, the /init parameter, none removed by the proxy
    assert first == (200, {"os": False})
    expected = {
        "PARAM": "from init",
        "__OW_ACTIVATION_ID": "b" * 32,
        "__OW_ACTION_NAME": "x",
        "__OW_GONE": None,
    }
    assert second == (200, {"os": False, "python": expected, "c": expected, "listen": False})


def test_a_takes_environment_is_exactly_its_own_in_python_and_in_c() -> None:
    # Given a spare's environment (the zygote's container code, in a process of its own)
    code = f"""
import json, os, subprocess, sys
sys.path.insert(0, {str(PROXY_DIR)!r})
import zygote_container
zygote_container.set_environment({{"KEEP": "1", "CHANGE": "old", "DROP": "x"}})
# When a take's environment replaces it: one kept, one changed, one dropped, one new
zygote_container.set_environment({{"KEEP": "1", "CHANGE": "new", "NEW": 2}})
seen_c = dict(l.split("=", 1) for l in subprocess.run(["env"], capture_output=True,
              text=True, env=None).stdout.splitlines() if "=" in l)
print(json.dumps([dict(os.environ), seen_c]))
"""
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    python_env, c_env = json.loads(done.stdout)
    # Then os.environ and the C environment a child inherits are exactly the new one
    expected = {"KEEP": "1", "CHANGE": "new", "NEW": "2"}
    assert python_env == expected
    assert c_env == expected
