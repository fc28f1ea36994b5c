"""Squall's CPython runtime proxy: the OpenWhisk runtime protocol over HTTP.

Runs inside a sandbox, so it uses the standard library only and never imports ``squall``.
This module is the HTTP side (the requests, the JSON codec, the answers and their log
sentinels, the process's start); the action's ``/init`` and ``/run`` are
:mod:`proxy_action`'s, pid 1's reaping :mod:`proxy_orphans`'s (both beside it, and shown
here under their names: ``proxy.Runtime``, and ``proxy.orphans()`` makes an ``Orphans``).

    POST /init {"value": {"name", "main", "code", "binary", "env"}}   once per container
    POST /run  {"value": args, "namespace", "action_name", "activation_id", ...}

Serves on the listening socket inherited as fd ``__OW_LISTEN_FD``, else listens on the
Unix socket named by env ``__OW_SOCKET`` (or TCP port ``__OW_PORT``, default 8080, like
OpenWhisk images), and tells the factory it is ready by writing one byte to the inherited
pipe fd ``__OW_READY_FD``. It takes its process group down when the pipe
``__OW_LIFELINE_FD`` reaches EOF (the factory let go of the container, or died).

Guarantees:

- Requests are served one at a time, on any number of keep-alive connections; the action
  runs on the main thread (signals and ``os._exit`` behave as in a plain script — except
  that a runtime that is its pid namespace's first process, as in a container forked by
  the Python zygote or an OpenWhisk Docker container, is not sent the signals it has no
  handler for from inside its namespace: the kernel protects a namespace's init).
- As its pid namespace's init, the runtime reaps the orphans it is handed, never a child
  the action started (:class:`proxy_orphans.Orphans`).
- ``/init`` is accepted once; any later ``/init`` answers 403. A failed ``/init`` answers
  502 ``{"error": "Initialization has failed due to: ..."}``. Source code is loaded as
  module ``main__`` (so an ``if __name__ == "__main__":`` block does not run); a zip must
  hold ``__main__.py`` and its directory is put on ``sys.path`` (helper modules import),
  as are ``virtualenv/lib/python*/site-packages`` directories shipped in it — all in front
  of the kind's library set (``__OW_LIBRARIES``, last on ``sys.path``).
- ``/run`` before a successful ``/init`` answers 403 ``{"error": "Cannot run the action
  before initialization."}`` (OpenWhisk proxies disagree: 403, 500 or 502).
- Results: dict or list → 200; an exception → 200 ``{"error": str(ex)}`` with the traceback
  on stderr (application error); anything else (``None`` included) → 502 ``{"error": "The
  action did not return a dictionary or array."}``. ``async def main`` is awaited.
- After every ``/init`` and ``/run`` answer (whatever its status) the action's stdout and
  stderr are flushed, then ``XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX`` is written and
  flushed on both, and only then is the HTTP answer sent.
- Requests may be pipelined (the invoker writes a cold start's ``/init`` and first ``/run``
  together): they are answered in order, each as if it came alone — a ``/run`` behind a
  failed ``/init`` answers 403 and runs nothing. A ``/run`` with the header
  ``X-Squall-Deadline-After-Ms: N`` gets ``deadline`` = the wall clock in ms when it starts
  + N (OpenWhisk's ``__OW_DEADLINE`` counts from the run's start, not from the ``/init``
  written with it), in place of the one in its body. A ``/run`` with the header
  ``X-Squall-Init-Deadline-Ns: M`` answers 408 and runs nothing if, when it would start
  (after the ``/init`` before it answered), ``CLOCK_MONOTONIC`` reads M or later: the
  invoker, whose timer fires a little after M, may be recording an init timeout.
"""

# Start-up time is cold-start time. A true cold start runs the interpreter and then this
# module, so it imports only what the interpreter has loaded already or is built in (C
# modules: no Python code to unmarshal and run). ``json``, ``socket``, ``signal``,
# ``selectors``, ``contextlib`` and ``types`` would cost 15 ms here (``json`` pulls in
# ``re``, ``enum``, ``functools``, ``collections``...), more than the interpreter's own
# start: the JSON codec below drives the same C accelerator (``_json``) that ``json``
# uses, the sockets are ``_socket``'s, the loop is ``select.poll``. Not even ``os``
# (frozen, but it builds ``_collections_abc``'s ABCs: ≈ 1.5 ms, two thirds of what the
# proxy's imports add to the interpreter's start): ``posix`` has its functions, and the
# environment goes through :mod:`proxy_action`'s helpers, which keep what ``os.environ``
# shows once an action imports ``os``. Modules only /init, a zip or errors need
# (zipfile, tempfile, traceback, asyncio, json itself, ...) are imported where they are
# used. No ``from __future__ import annotations`` (it imports ``__future__``: 0.2 ms):
# the annotations of names imported only for type checking are strings.
import _json
import _signal
import _socket
import _thread
import posix  # os, whose import is ≈ 1.5 ms of the start, is not loaded: see getenv
import select
import sys
import time  # built in

# The action and pid 1's reaping, from the modules beside this one: the interpreter runs
# with -I (no script directory on sys.path), so the directory is added for these imports
# only. They leave sys.modules again (their objects stay, held here): an action's own
# modules of those names import as before, and sys.modules is what it was.
_HERE = __file__ if __file__.startswith("/") else f"{posix.getcwd()}/{__file__}"
_DIRECTORY = _HERE.rpartition("/")[0]
sys.path.insert(0, _DIRECTORY)
try:
    from proxy_action import (  # noqa: F401
        NOT_A_DICT,
        InitError,
        Runtime,
        action_directory,
        getenv,
        popenv,
    )
finally:
    del sys.path[0]
    sys.modules.pop("proxy_action", None)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from proxy_orphans import Orphans

#: :class:`proxy_orphans.Orphans`, once :func:`orphans` imported it.
_ORPHANS: "type[Orphans] | None" = None


def orphans() -> "Orphans":
    """A new :class:`proxy_orphans.Orphans`: pid 1's reaper. Its module is imported on
    first use (0.15 ms), and like :mod:`proxy_action` leaves ``sys.path`` and
    ``sys.modules`` as they were: only a runtime that is its namespace's init needs it
    (a zygote's containers — the zygote asks for one before it forks them —, a Docker
    image's runtime), not a true cold start's, the child of bubblewrap's init."""
    global _ORPHANS
    if _ORPHANS is None:
        sys.path.insert(0, _DIRECTORY)
        try:
            from proxy_orphans import Orphans
        finally:
            del sys.path[0]
            sys.modules.pop("proxy_orphans", None)
        _ORPHANS = Orphans
    return _ORPHANS()


SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n"
MAX_HEADER_BYTES = 64 * 1024
REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    502: "Bad Gateway",
}
WHITESPACE = " \t\n\r"
#: Lower-cased: see the module docstring (squall.sandbox.contracts names it too).
DEADLINE_AFTER = "x-squall-deadline-after-ms"
INIT_DEADLINE = "x-squall-init-deadline-ns"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Decoding:
    """What ``_json.make_scanner`` reads from ``json.JSONDecoder()`` (its defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_SCAN = _json.make_scanner(_Decoding())


def loads(body: bytes) -> "Any":
    """``json.loads(body)``: the same C scanner, without importing ``json``. A document it
    does not take at once (not UTF-8, a BOM, an error) goes to ``json.loads`` itself, so
    what is accepted and every error message stay ``json``'s. (The scanner builds its
    errors from ``json.decoder``, which is not loaded yet: SystemError then.)"""
    try:
        text = body.decode("utf-8")
        start = len(text) - len(text.lstrip(WHITESPACE))
        value, end = _SCAN(text, start)
        if text[end:].strip(WHITESPACE):
            raise ValueError("Extra data")
    except (ValueError, StopIteration, SystemError):
        import json

        return json.loads(body)
    return value


def _not_serializable(value: object) -> "Any":
    # json.JSONEncoder.default's error, word for word.
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def dumps(value: "Any") -> str:
    """``json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))``:
    the C encoder ``json`` uses for it, with its errors (TypeError, ValueError)."""
    if isinstance(value, str):
        return str(_json.encode_basestring(value))
    # A fresh encoder per answer, as json makes one: its circular-reference markers.
    encoder = _json.make_encoder(
        {}, _not_serializable, _json.encode_basestring, None, ":", ",", False, False, False
    )
    return "".join(encoder(value, 0))


def write_sentinels() -> None:
    """End the activation's logs: flush what the action wrote, then the sentinel lines."""
    for current, original in ((sys.stdout, sys.__stdout__), (sys.stderr, sys.__stderr__)):
        # The action may have replaced or closed sys.stdout: flush its stream if it can be,
        # and write the sentinel on the process's own stream either way.
        try:  # noqa: SIM105 (contextlib is not imported: see the imports)
            current.flush()
        except (OSError, ValueError):
            pass
        if original is not None:
            try:
                original.write(SENTINEL)
                original.flush()
            except (OSError, ValueError):
                pass


def encode(status: int, payload: "Any") -> bytes:
    """One HTTP answer; a result that is not JSON (a set, NaN, ...) becomes a 502."""
    try:
        text = dumps(payload)
    except (TypeError, ValueError) as ex:
        import json

        status = 502
        text = json.dumps({"error": f"The action did not return a valid JSON value: {ex}"})
    body = text.encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


def dispatch(
    runtime: Runtime,
    method: str,
    target: str,
    body: bytes,
    deadline_after: int | None = None,
    init_deadline: int | None = None,
) -> bytes:
    """Answer one request; every /init and /run answer follows the sentinel lines.
    ``deadline_after`` (ms): a /run's deadline counts from now; ``init_deadline``
    (monotonic ns): the /run is refused from then on (see the module docstring)."""
    if method != "POST" or target not in ("/init", "/run"):
        return encode(404, {"error": "Not found."})
    status: int
    payload: Any
    try:
        message = loads(body) if body else {}
    except ValueError as ex:
        status, payload = 400, {"error": f"The request body is not valid JSON: {ex}"}
    else:
        message = message if isinstance(message, dict) else {}
        if target == "/init":
            status, payload = runtime.init(message)
        elif (
            init_deadline is not None
            and runtime.main is not None  # else 403, as behind a failed /init
            and time.monotonic_ns() >= init_deadline
        ):
            # Checked after the /init answer was sent (requests are served in order).
            status, payload = 408, {"error": "The initialization answered past its deadline."}
        else:
            if deadline_after is not None:
                message["deadline"] = str(time.time_ns() // 1_000_000 + deadline_after)
            status, payload = runtime.run(message)
    write_sentinels()
    return encode(status, payload)


def next_request(
    buffer: bytearray,
) -> tuple[str, str, bytes, bool, int | None, int | None] | None:
    """Cut one complete request off ``buffer``: (method, target, body, keep_alive,
    deadline_after, init_deadline: the values of the ``X-Squall-Deadline-After-Ms`` and
    ``X-Squall-Init-Deadline-Ns`` headers, if any)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEADER_BYTES:
            raise ValueError("request headers too large")
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    length = 0
    deadline_after = init_deadline = None
    keep_alive = version == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            keep_alive = value.strip().lower() == "keep-alive"
        elif name == DEADLINE_AFTER:
            deadline_after = int(value)
        elif name == INIT_DEADLINE:
            init_deadline = int(value)
    if len(buffer) < end + 4 + length:
        return None
    body = bytes(buffer[end + 4 : end + 4 + length])
    del buffer[: end + 4 + length]
    return method, target, body, keep_alive, deadline_after, init_deadline


def serve(
    listener: _socket.socket,
    runtime: Runtime,
    orphans: "Orphans | None" = None,
    rounds: int | None = None,
) -> None:
    """Serve requests forever (or for ``rounds`` waits for readiness: the Python zygote's
    warm-up), one at a time, over any number of connections; reap ``orphans`` after each
    batch of requests. ``listener`` is a ``_socket.socket`` or a ``socket.socket``."""
    poller = select.poll()
    listening = listener.fileno()
    poller.register(listening, select.POLLIN)
    connections: dict[int, tuple[_socket.socket, bytearray]] = {}
    while rounds is None or rounds > 0:
        if rounds is not None:
            rounds -= 1
        for fd, _ in poller.poll():
            if fd == listening:
                accepted, _ = listener._accept()  # what socket.accept wraps
                conn = _socket.socket(fileno=accepted)
                conn.setblocking(True)
                connections[accepted] = (conn, bytearray())
                poller.register(accepted, select.POLLIN)
                continue
            conn, buffer = connections[fd]
            if not serve_ready(conn, buffer, runtime):
                poller.unregister(fd)
                del connections[fd]
                conn.close()
        if orphans is not None:
            orphans.reap()
    for conn, _ in connections.values():
        conn.close()


def serve_ready(conn: _socket.socket, buffer: bytearray, runtime: Runtime) -> bool:
    """Read what arrived on ``conn`` and answer complete requests; False to close it."""
    try:
        data = conn.recv(256 * 1024)
    except OSError:
        return False
    if not data:
        return False
    buffer += data
    while True:
        try:
            request = next_request(buffer)
        except ValueError as ex:
            conn.sendall(encode(400, {"error": f"Malformed request: {ex}"}))
            return False
        if request is None:
            return True
        method, target, body, keep_alive, deadline_after, init_deadline = request
        try:
            answer = dispatch(runtime, method, target, body, deadline_after, init_deadline)
            conn.sendall(answer)
        except OSError:  # the invoker gave up on this request (timeout) and closed
            return False
        if not keep_alive:
            return False


def listen() -> _socket.socket:
    fd = popenv("__OW_LISTEN_FD") or ""
    if fd.isdigit():
        # The factory created and bound the socket: a sandbox needs no writable directory.
        return _socket.socket(fileno=int(fd))
    import os  # not in a sandbox: no hurry
    import socket

    path = getenv("__OW_SOCKET")
    if not path:
        port = int(getenv("__OW_PORT") or "8080")
        return socket.create_server(("0.0.0.0", port), reuse_port=False)
    # sun_path holds 107 bytes; the factory starts us in the socket's directory, so a long
    # absolute path can be bound by its short relative name instead.
    if len(path) > 100 and os.path.dirname(path) == os.getcwd():
        path = os.path.basename(path)
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    return listener


def signal_ready() -> None:
    fd = popenv("__OW_READY_FD") or ""
    if fd.isdigit():
        posix.write(int(fd), b"r")
        posix.close(int(fd))


def watch_lifeline(fd: str | None = None, first: "Callable[[], None] | None" = None) -> bool:
    """Take the process group down once the factory lets go of ``fd`` (by default
    ``__OW_LIFELINE_FD``, removed from the environment); False when there is none.
    ``first`` runs first on the watching thread (the zygote's runtime drops that
    thread's capabilities there).

    The factory holds the pipe's write end for as long as it wants the container; EOF means
    it destroyed the container or died itself (an invoker crash). A thread waits for it, so
    this works even while an action runs forever on the main thread.
    """
    if fd is None:
        fd = popenv("__OW_LIFELINE_FD") or ""
    if not fd.isdigit():
        return False

    def wait() -> None:
        if first is not None:
            first()
        try:
            while posix.read(int(fd), 1):
                pass
        except OSError:
            pass
        if posix.getpgid(0) == posix.getpid():
            posix.killpg(posix.getpid(), _signal.SIGKILL)  # the group it leads, itself included
        posix._exit(1)

    # A bare thread (as daemon as threading's daemons): threading.Thread.start would wait
    # until the new thread runs, a context switch on the cold start's path.
    _thread.start_new_thread(wait, ())
    return True


def add_libraries() -> None:
    """Put the kind's library set (``__OW_LIBRARIES``) at the end of ``sys.path``: after the
    standard library, and after what ``/init`` puts in front (the action's own directory and
    virtualenv), so an action's own copy of a library wins. Nothing is imported here."""
    libraries = popenv("__OW_LIBRARIES") or ""
    if libraries and libraries not in sys.path:
        sys.path.append(libraries)


def start(lifeline: bool = True) -> "tuple[_socket.socket, Orphans | None]":
    """Everything before serving: the library set, line-buffered output, the lifeline
    (unless not ``lifeline``: the caller starts :func:`watch_lifeline` itself), the
    listening socket, orphan reaping as pid 1; then the ready byte. Connections arriving
    from then on wait in the socket's backlog until :func:`serve` runs."""
    add_libraries()
    # Line buffering: each printed line reaches the invoker (and its timestamp) when written.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)
    if lifeline:
        watch_lifeline()
    listener = listen()
    reaper = None
    if posix.getpid() == 1:  # this namespace's init: see Orphans
        reaper = orphans()
        reaper.track()
    signal_ready()
    return listener, reaper


def main() -> None:
    listener, reaper = start()
    # A process's first compile() builds the types of the ``ast`` module (every compile
    # checks first whether its source is an AST object): ~1 ms of CPU, more than the
    # compile of an action itself. /init compiles the action; done here, after the ready
    # byte, it overlaps the invoker's connecting and sending /init instead of following
    # it. It imports nothing and leaves no trace an action could see.
    compile("", "<warm-up>", "exec", dont_inherit=True)
    serve(listener, Runtime(), reaper)


if __name__ == "__main__":
    main()
