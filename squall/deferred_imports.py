"""Third-party modules a server never uses, loaded only if something does use them.

``import uvicorn`` runs ``uvicorn/__init__.py``, which imports ``uvicorn.main`` (its
command line), which imports ``uvicorn.supervisors``: the reloader and the multi-process
supervisor, with ``watchfiles`` (a Rust extension), ``multiprocessing`` and their imports.
Squall serves through ``uvicorn.Server`` itself (``squall/cli/serving.py``) and never
reloads or forks workers, yet every server held them for its whole life: ~1.1 MiB of
heap and ~0.7 MiB of the extension's pages (bench/README.md, "memory_at_concurrency.py").

:func:`defer_uvicorn_supervisors` puts a stand-in for ``uvicorn.supervisors`` in
``sys.modules`` before uvicorn is imported. ``uvicorn.main`` binds its two names
(``ChangeReload``, ``Multiprocess``) to callables that import the real module when called;
any other name read from the stand-in imports it too. The stand-in has the package's
``__path__`` (found without importing uvicorn), so its submodules import as usual, and
``from uvicorn.supervisors import ChangeReload`` finds the name without importing
anything. Guarantees:

- Nothing changes for a caller: whoever uses the supervisors gets uvicorn's own, loaded
  on that first use (once: a lock makes concurrent first uses import it once).
- A process that imported ``uvicorn.supervisors`` before (another library) keeps it: the
  stand-in is only put where nothing is yet.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

SUPERVISORS = "uvicorn.supervisors"
#: What ``uvicorn.main`` imports from the package when it is imported.
_NAMES = ("ChangeReload", "Multiprocess")
# Two threads' first uses must not both take the stand-in out and import twice.
_loading = threading.Lock()


class _DeferredSupervisors(types.ModuleType):
    """``uvicorn.supervisors`` until something reads a name it does not have."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_real(), name)


def _real() -> types.ModuleType:
    with _loading:
        if isinstance(sys.modules.get(SUPERVISORS), _DeferredSupervisors):
            del sys.modules[SUPERVISORS]
        return importlib.import_module(SUPERVISORS)


def _deferred(name: str) -> Callable[..., Any]:
    def construct(*args: Any, **kwargs: Any) -> Any:
        return getattr(_real(), name)(*args, **kwargs)

    construct.__name__ = construct.__qualname__ = name
    return construct


def defer_uvicorn_supervisors() -> None:
    """Put the stand-in in place, unless uvicorn's supervisors are already imported."""
    if SUPERVISORS in sys.modules:
        return
    uvicorn = importlib.machinery.PathFinder.find_spec("uvicorn")
    if uvicorn is None or not uvicorn.submodule_search_locations:
        return  # not installed: nothing to defer
    stand_in = _DeferredSupervisors(SUPERVISORS, __doc__)
    stand_in.__path__ = [f"{where}/supervisors" for where in uvicorn.submodule_search_locations]
    for name in _NAMES:
        setattr(stand_in, name, _deferred(name))
    sys.modules[SUPERVISORS] = stand_in
