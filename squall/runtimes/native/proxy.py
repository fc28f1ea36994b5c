"""Squall's native runtime: any executable as an action, through OpenWhisk's action loop.

OpenWhisk runs such actions as kind ``blackbox`` with the image ``openwhisk/dockerskeleton``
(``wsk action create --native``); Squall has no Docker images, so kind ``native`` (and
``blackbox`` with that image) runs here. It uses the standard library only, never imports
``squall``, and reuses the HTTP server, readiness and lifeline handling of the CPython
proxy (``../python/proxy.py``), which the sandbox shows next to this file.

    POST /init {"value": {"code", "binary", "env"}}   once: unpack, start ``exec``
    POST /run  {"value": args, "namespace", ...}      one line to ``exec``, one line back

Guarantees (beyond those of the CPython proxy's server: one request at a time, 403 on a
second ``/init`` or a ``/run`` before ``/init``, sentinels after every answer):

- ``/init`` unpacks a base64 zip into a fresh directory under ``__OW_WORKDIR`` (file modes
  kept) and requires an ``exec`` file at its root — a failure answers 502 ``{"error":
  "Initialization has failed due to: Zip file does not include exec"}``; source code (not
  a zip) becomes ``exec`` itself, as OpenWhisk's docker skeleton does with a script. The
  unpacked files lose their write permissions (the action's own files are its program,
  not scratch space; it writes elsewhere in ``/tmp``) and ``exec`` gains execute
  permission. ``exec`` is started once, in that directory, with the ``/init`` ``env``
  added to the environment.
- The action-loop protocol (OpenWhisk's ``actionloop``): for each ``/run`` the whole
  request body is written to ``exec``'s stdin as one JSON line; ``exec`` answers one JSON
  line on file descriptor 3. Its stdout and stderr are the proxy's own, so what it writes
  there is the activation's log; it must flush them before answering, since the
  sentinels follow the answer.
- A JSON object or array answers 200 with it; other JSON answers 502 ``{"error": "The
  action did not return a dictionary or array."}``; a line that is not JSON answers 502
  with OpenWhisk's ``"The action did not produce a valid JSON or JSON Array response."``;
  when ``exec`` has exited (or closed fd 3) every ``/run`` answers 502 with ``"The action
  did not produce a valid response and exited unexpectedly."`` and its exit status is
  written to stderr.
"""

from __future__ import annotations

import json
import os
import sys

# The CPython proxy's server, bound beside this directory in a sandbox; the interpreter
# runs with -I (no script directory on sys.path), so the path is added explicitly.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import proxy as base

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO

    Reply = tuple[int, Any]

EXEC = "exec"
#: The descriptor on which ``exec`` writes its answers (OpenWhisk's action loop).
RESULT_FD = 3
INVALID_JSON = "The action did not produce a valid JSON or JSON Array response."
EXITED = "The action did not produce a valid response and exited unexpectedly."


class NativeRuntime(base.Runtime):
    """The action-loop side of the proxy: one ``exec`` process, one line per activation."""

    def __init__(self) -> None:
        super().__init__()
        self.pid: int | None = None
        self.stdin: BinaryIO | None = None
        self.results: BinaryIO | None = None

    def _load(self, value: dict[str, Any]) -> Callable[[Any], Any]:
        import tempfile

        code = value.get("code")
        if not isinstance(code, str) or not code:
            raise base.InitError("Missing main/no code to execute.")
        env = value.get("env")
        for key, val in (env if isinstance(env, dict) else {}).items():
            os.environ[str(key)] = val if isinstance(val, str) else json.dumps(val)
        root = os.environ.get("__OW_WORKDIR") or tempfile.gettempdir()
        directory = tempfile.mkdtemp(prefix="action-", dir=root)
        executable = os.path.join(directory, EXEC)
        if value.get("binary"):
            unzip(code, directory)
            if not os.path.isfile(executable):
                raise base.InitError(f"Zip file does not include {EXEC}")
        else:
            with open(executable, "w", encoding="utf-8") as file:
                file.write(code)
        os.chmod(executable, 0o755)
        seal(directory)
        os.chdir(directory)  # relative paths in the action refer to its own files
        self._spawn(executable)
        # The base class's "initialized" is "main is set"; here main takes the whole
        # /run message, not only its value (see run).
        return self._interact

    def _spawn(self, executable: str) -> None:
        stdin_r, stdin_w = os.pipe()
        results_r, results_w = os.pipe()
        try:
            # posix_spawn, not subprocess: the answer pipe must land on exactly fd 3, and
            # no Python code may run in the child (the lifeline thread exists already).
            # Everything else the proxy holds is close-on-exec, so exec inherits only its
            # stdio and fd 3.
            self.pid = os.posix_spawn(
                executable,
                [executable],
                dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, stdin_r, 0),
                    (os.POSIX_SPAWN_DUP2, results_w, RESULT_FD),
                ],
            )
        except OSError as ex:
            os.close(stdin_w)
            os.close(results_r)
            raise base.InitError(f"cannot start {EXEC}: {ex.strerror or ex}") from None
        finally:
            # Only exec holds these now: EOF on results_r means exec closed fd 3 or died.
            os.close(stdin_r)
            os.close(results_w)
        self.stdin = os.fdopen(stdin_w, "wb")
        self.results = os.fdopen(results_r, "rb")

    def run(self, message: dict[str, Any]) -> Reply:
        if self.main is None:
            return 403, {"error": "Cannot run the action before initialization."}
        reply: Reply = self.main(message)
        return reply

    def _interact(self, message: dict[str, Any]) -> Reply:
        """One activation: the message to exec's stdin, its answer from fd 3."""
        assert self.stdin is not None and self.results is not None  # set with main
        line = json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            self.stdin.write(line.encode("utf-8"))
            self.stdin.flush()
            answer = self.results.readline()
        except OSError:  # EPIPE: exec is gone
            answer = b""
        if not answer.endswith(b"\n"):  # EOF before a whole line: exec closed fd 3
            self._report_exit()
            return 502, {"error": EXITED}
        try:
            result = json.loads(answer)
        except ValueError:
            return 502, {"error": INVALID_JSON}
        if not isinstance(result, dict | list):
            return 502, {"error": base.NOT_A_DICT}
        return 200, result

    def _report_exit(self) -> None:
        """Say on stderr how ``exec`` ended (once), so the logs explain the failure."""
        if self.pid is None:
            return
        try:
            # Blocks only until exec is gone: it closed fd 3, so it is exiting or exited
            # (a child that closes fd 3 and lives on is waited for until the time limit).
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            return
        finally:
            self.pid = None
        sys.stderr.write(f"{EXEC} exited with status {os.waitstatus_to_exitcode(status)}\n")


def unzip(code: str, directory: str) -> None:
    """Extract a base64 zip into ``directory``, keeping each file's permission bits."""
    import base64
    import binascii
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(base64.b64decode(code))) as archive:
            for info in archive.infolist():
                # zipfile drops "..", absolute names; it does not keep modes, which an
                # executable (and the files exec runs) need.
                path = archive.extract(info, directory)
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    os.chmod(path, mode | 0o400)
    except (binascii.Error, zipfile.BadZipFile, ValueError) as ex:
        raise base.InitError(f"the action code is not a valid zip file: {ex}") from None


def seal(directory: str) -> None:
    """Drop write permission on the action's files, so exec sees them read-only."""
    for root, dirs, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode & 0o555)
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o555)
    os.chmod(directory, 0o555)


def main() -> None:
    for name in ("__OW_LIFELINE_FD", "__OW_LISTEN_FD"):
        fd = os.environ.get(name, "")
        if fd.isdigit():
            # Inherited descriptors are inheritable: exec must get neither the runtime's
            # listening socket (it could answer /run itself) nor the lifeline.
            os.set_inheritable(int(fd), False)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
    base.watch_lifeline()
    listener = base.listen()
    base.signal_ready()
    base.serve(listener, NativeRuntime())


if __name__ == "__main__":
    main()
