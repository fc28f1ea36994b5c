"""The action inside Squall's CPython runtime proxy (:mod:`proxy`): ``/init`` loads it,
``/run`` calls its ``main``.

:class:`Runtime` holds one container's action and answers the two requests as (status,
payload) pairs; :mod:`proxy` serves them over HTTP. What each answer means is the
guarantees list of :mod:`proxy`'s docstring. Standard library only, never ``squall``; as
:mod:`proxy`, it imports only what the interpreter has loaded at its start (what
``/init`` of a zip, an ``async def main`` or an error needs is imported where used).
"""

import _frozen_importlib  # importlib's core: loaded at the interpreter's start
import _frozen_importlib_external
import posix
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Reply = tuple[int, Any]

NOT_A_DICT = "The action did not return a dictionary or array."

#: The run values that differ on every run: exported through buffers the proxy owns
#: (:class:`OwnedEnv`), so a warm container does not grow by them.
PER_RUN_NAMES = ("__OW_ACTIVATION_ID", "__OW_TRANSACTION_ID", "__OW_DEADLINE")
#: Each buffer's size: a longer ``NAME=value`` goes through ``os.environ`` as any other.
OWNED_BYTES = 256
#: A started proxy, which has not loaded ctypes (1.9 MB RSS, 4-7 ms to import), loads it
#: after this many runs: about as much as setenv would keep for these runs' values
#: (272 B a run, bench/README.md "setenv"). A proxy forked by the zygote has it already.
CTYPES_AFTER_RUNS = 8192


async def _coroutine() -> None:
    pass


_c = _coroutine()
#: types.CoroutineType, without importing types.
CoroutineType = type(_c)
_c.close()
del _c


# The environment without ``os``: a true cold start's proxy serves before anything imports
# ``os`` (≈ 1.5 ms of its start: ``os`` builds ``_collections_abc``'s ABCs), so an action
# that never imports it does not pay for it. ``os.environ`` wraps ``posix.environ`` — the
# same dict, created at the interpreter's start — so what is written here (the C
# environment with ``putenv``, the dict beside it) is what ``os.environ`` shows once
# imported, as if it had been written through ``os.environ``. Once ``os`` is loaded
# (the action imported it, or a zygote did), everything goes through ``os.environ``
# itself, as before, including a replacement the action put there.
def _encode(text: str) -> bytes:
    return text.encode(sys.getfilesystemencoding(), "surrogateescape")


def _os_environ() -> "Any":
    """``os.environ`` once ``os`` is loaded, else None. Read as an attribute, not taken
    from ``os`` being in ``sys.modules``: while another thread imports ``os`` (an action's
    bare ``_thread``) the module is there without ``environ`` yet — the ``posix`` path
    writes the very dict it will wrap, so it is right then too."""
    return getattr(sys.modules.get("os"), "environ", None)


def getenv(name: str) -> str | None:
    """``os.environ.get(name)``."""
    environ = _os_environ()
    if environ is not None:
        return environ.get(name)  # type: ignore[no-any-return]
    value = posix.environ.get(_encode(name))
    return None if value is None else value.decode(sys.getfilesystemencoding(), "surrogateescape")


def setenv(name: str, value: str) -> None:
    """``os.environ[name] = value`` (the same errors for a name or value libc refuses)."""
    environ = _os_environ()
    if environ is not None:
        environ[name] = value
        return
    key, encoded = _encode(name), _encode(value)
    posix.putenv(key, encoded)
    posix.environ[key] = encoded


def popenv(name: str) -> str | None:
    """``os.environ.pop(name, None)``."""
    environ = _os_environ()
    if environ is not None:
        return environ.pop(name, None)  # type: ignore[no-any-return]
    value = getenv(name)
    if value is not None:
        key = _encode(name)
        posix.unsetenv(key)
        del posix.environ[key]
    return value


def _join(directory: str, name: str) -> str:
    """``os.path.join(directory, name)`` for a relative ``name``."""
    return directory + name if directory.endswith("/") else f"{directory}/{name}"


class InitError(Exception):
    """An /init failure whose message is already meant for the user."""


class Runtime:
    """The action's state: the /init protocol and calling ``main`` for /run."""

    def __init__(self) -> None:
        self.init_started = False  # a container is initialized at most once
        self.main: Callable[[Any], Any] | None = None
        self.run_env_keys: list[str] = []
        self.runs = 0
        self.owned_env: OwnedEnv | None = None
        self.owned_env_failed = False  # OwnedEnv could not be built: os.environ for good

    def init(self, message: "dict[str, Any]") -> "Reply":
        if self.init_started:
            return 403, {"error": "Cannot initialize the action more than once."}
        self.init_started = True
        value = message.get("value")
        try:
            self.main = self._load(value if isinstance(value, dict) else {})
        except InitError as ex:
            return 502, {"error": f"Initialization has failed due to: {ex}"}
        except Exception as ex:
            import traceback

            traceback.print_exc()
            return 502, {"error": f"Initialization has failed due to: {type(ex).__name__}: {ex}"}
        return 200, {"ok": True}

    def _load(self, value: "dict[str, Any]") -> "Callable[[Any], Any]":
        main_name = value.get("main") or "main"
        code = value.get("code")
        if not isinstance(code, str) or not code:
            raise InitError("Missing main/no code to execute.")
        env = value.get("env")
        for key, val in (env if isinstance(env, dict) else {}).items():
            if not isinstance(val, str):
                import json  # only for parameters that are not strings

                val = json.dumps(val)
            setenv(str(key), val)
        directory = action_directory(getenv("__OW_WORKDIR"))
        source: str | None = None
        if value.get("binary"):
            entry = self._extract(code, directory)
        else:
            entry = _join(directory, "main__.py")
            with open(entry, "w", encoding="utf-8") as file:
                file.write(code)  # for tracebacks (linecache) and the action's own reading
            source = code.removeprefix("\ufeff")  # as the file's decoder drops a BOM
        sys.path.insert(0, directory)
        posix.chdir(directory)  # relative file access in the action refers to its own files
        # importlib.util's two functions, from the modules they come from (loaded at the
        # interpreter's start: importlib.util would import contextlib, types, ...).
        spec = _frozen_importlib_external.spec_from_file_location("main__", entry)
        if spec is None or spec.loader is None:
            raise InitError(f"cannot load {entry}")
        module = _frozen_importlib.module_from_spec(spec)
        sys.modules["main__"] = module
        if source is None:
            spec.loader.exec_module(module)
        else:
            # The code as given, compiled once: the file loader would stat, read and decode
            # it again and write a .pyc nobody reads (0.2-0.6 ms of a forked /init).
            exec(compile(source, entry, "exec", dont_inherit=True), module.__dict__)
        target: Any = module
        for part in main_name.split("."):
            target = getattr(target, part, None)
        if not callable(target):
            raise InitError(f"Action entrypoint '{main_name}' is not a function.")
        return target  # type: ignore[no-any-return]

    @staticmethod
    def _extract(code: str, directory: str) -> str:
        import base64
        import binascii
        import glob
        import io
        import os
        import zipfile

        try:
            with zipfile.ZipFile(io.BytesIO(base64.b64decode(code))) as archive:
                archive.extractall(directory)  # zipfile drops "..", absolute names
        except (binascii.Error, zipfile.BadZipFile, ValueError) as ex:
            raise InitError(f"the action code is not a valid zip file: {ex}") from None
        entry = os.path.join(directory, "__main__.py")
        if not os.path.isfile(entry):
            raise InitError("Zip file does not include __main__.py")
        site_dirs = glob.glob(os.path.join(directory, "virtualenv/lib/python*/site-packages"))
        if site_dirs:
            import site  # the interpreter runs with -S; site is only needed here

            before = list(sys.path)
            for site_dir in site_dirs:
                site.addsitedir(site_dir)  # also runs its .pth files
            # In front, as virtualenv's activate_this.py puts them: the zip's packages win
            # over same-named ones of the standard library.
            added = [p for p in sys.path if p not in before]
            sys.path[:] = added + before
        return entry

    def run(self, message: "dict[str, Any]") -> "Reply":
        if self.main is None:
            return 403, {"error": "Cannot run the action before initialization."}
        self.runs += 1
        if (
            self.owned_env is None
            and not self.owned_env_failed
            and ("ctypes" in sys.modules or self.runs >= CTYPES_AFTER_RUNS)
        ):
            self.own_environment()
        self._export_env(message)
        args = message.get("value")
        try:
            result = self.main({} if args is None else args)
            if isinstance(result, CoroutineType):
                import asyncio  # only actions written as `async def main` pay for it

                result = asyncio.run(result)
        except Exception as ex:
            import traceback

            tb = ex.__traceback__
            traceback.print_exception(type(ex), ex, tb.tb_next if tb else None)
            return 200, {"error": str(ex)}
        if not isinstance(result, dict | list):
            return 502, {"error": NOT_A_DICT}
        return 200, result

    def own_environment(self) -> None:
        """Build the :class:`OwnedEnv` the runs export through (once). A spare forked by
        the zygote does it while it waits to be taken: ~0.1 ms of ctypes (a ``dlopen``, a
        symbol, six buffers) off its first run, i.e. off a cold start."""
        if self.owned_env is not None or self.owned_env_failed:
            return
        try:
            self.owned_env = OwnedEnv()
        except Exception:
            # ctypes cannot be loaded (libffi missing, or the action replaced or broke
            # it): the runs go on exporting through os.environ, as before OwnedEnv. The
            # action's logs are its own: nothing is written to them.
            self.owned_env_failed = True

    def _export_env(self, message: "dict[str, Any]") -> None:
        # Only a value that differs from the environment's is written, and only a name this
        # run does not export is removed: each write is a libc setenv (glibc keeps every
        # distinct NAME=value it was given in a tree, for the life of the process) and each
        # removal an unsetenv, while most values (namespace, action name, API host and key)
        # are the same run after run. The comparison is with os.environ, not with the last
        # message, so a value the action changed or removed is set again.
        keys = []
        owned = self.owned_env
        for key, val in message.items():
            if key != "value" and isinstance(val, str):
                name = f"__OW_{key.upper()}"
                if getenv(name) != val and (owned is None or not owned.set(name, val)):
                    setenv(name, val)
                keys.append(name)
        for key in self.run_env_keys:
            if key not in keys:
                popenv(key)
        self.run_env_keys = keys


class OwnedEnv:
    """Sets :data:`PER_RUN_NAMES` in the process environment without growing it.

    ``os.environ[name] = value`` is libc ``setenv``, and glibc keeps every distinct
    ``NAME=value`` string it was given in a tree for the life of the process (272 B a run
    for the three names, until the container's memory limit kills a run). libc ``putenv``
    instead puts the caller's own string into ``environ``: here two buffers per name,
    used in turn, so nothing is allocated. Each run writes the buffer that is not in
    ``environ`` and then puts it there (a pointer swap): a thread the action left running
    that reads the variable meanwhile sees the old value or the new one, never a
    half-written one (only a reader still holding the pointer of two runs ago could).
    ``os.environ``'s own mapping is updated directly (what its ``__setitem__`` does
    besides ``setenv``), so the action sees the value in ``os.environ`` and in the C
    environment its children inherit, as before; a value the action changes or deletes
    is set again by the next run (the caller compares with ``os.environ``). An action
    that replaced ``os.environ`` (with a plain dict, say) gets its values through the
    replacement, as before: :meth:`set` refuses, so the caller assigns them. The
    environment is rewritten only before a ``main`` runs (the proxy answers one run at a
    time)."""

    def __init__(self) -> None:
        import ctypes  # loaded already in a proxy forked by the zygote
        import os  # ctypes imports it

        putenv = ctypes.CDLL(None).putenv
        putenv.argtypes = [ctypes.c_void_p]
        putenv.restype = ctypes.c_int
        self._putenv = putenv
        # The buffers live as long as this object, i.e. the proxy's runtime: two per name,
        # and the index of the one to write next (the other may be in ``environ``).
        make = ctypes.create_string_buffer
        self._buffers = {name: (make(OWNED_BYTES), make(OWNED_BYTES)) for name in PER_RUN_NAMES}
        self._next = dict.fromkeys(PER_RUN_NAMES, 0)
        self._addressof = ctypes.addressof
        #: The mapping whose ``_data`` :meth:`set` updates: the interpreter's own.
        self._environ = os.environ

    def set(self, name: str, value: str) -> bool:
        """Set ``name`` to ``value``; False (nothing changed) if it is not one this sets."""
        pair = self._buffers.get(name)
        if pair is None:
            return False
        # Loaded (ctypes imported it), unless the action took it out of sys.modules.
        environ = _os_environ()
        if environ is not self._environ:
            return False  # the action replaced os.environ: the caller assigns into its own
        encoded = environ.encodevalue(value)  # type: ignore[attr-defined]
        entry = name.encode() + b"=" + encoded
        if len(entry) >= OWNED_BYTES or b"\0" in entry:
            return False  # os.environ then writes it (or refuses it) as before
        turn = self._next[name]
        buffer = pair[turn]  # not in ``environ`` now: no reader sees it half-written
        buffer.value = entry  # NUL-terminated: shorter than the buffer
        if self._putenv(self._addressof(buffer)) != 0:
            return False
        self._next[name] = 1 - turn  # the one in ``environ`` now is written next time but one
        environ._data[environ.encodekey(name)] = encoded  # type: ignore[attr-defined]
        return True


def action_directory(root: str | None) -> str:
    """A new directory for the action's files: ``<root>/action-main`` under the container's
    own working directory (``__OW_WORKDIR``: private to this container, and /init runs once),
    else a fresh temporary directory (``tempfile`` draws a random name: slower in a
    forked process, whose first draw seeds a generator)."""
    if root:
        directory = _join(root, "action-main")
        try:
            posix.mkdir(directory, 0o700)
            return directory
        except FileExistsError:
            pass
    import tempfile

    return tempfile.mkdtemp(prefix="action-", dir=root or tempfile.gettempdir())
