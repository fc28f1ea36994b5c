"""Code that runs *inside* a sandbox: the runtime proxies for each kind family.

Nothing here imports ``squall``: the proxies are started as plain scripts by a container
factory (``node nodejs/proxy.js``, ``python python/proxy.py``). This module only names
their files so factories need not guess paths.
"""

from __future__ import annotations

from pathlib import Path

_ROOT = Path(__file__).resolve().parent

#: Proxy script per kind family (the part of a kind before ``:``). Native executables
#: (``native``, and OpenWhisk's ``blackbox`` form of them) share one proxy.
PROXIES: dict[str, Path] = {
    "nodejs": _ROOT / "nodejs" / "proxy.js",
    "python": _ROOT / "python" / "proxy.py",
    "native": _ROOT / "native" / "proxy.py",
    "blackbox": _ROOT / "native" / "proxy.py",
}

#: Which interpreter runs each family's proxy (``nodejs`` or ``python``).
INTERPRETERS: dict[str, str] = {
    "nodejs": "nodejs",
    "python": "python",
    "native": "python",
    "blackbox": "python",
}

#: Other proxy directories a family's proxy imports from (as ``../<name>``): the native
#: proxy reuses the CPython proxy's server, so a sandbox must show both.
SUPPORT_DIRS: dict[str, tuple[Path, ...]] = {
    "native": (_ROOT / "python",),
    "blackbox": (_ROOT / "python",),
}


def family(kind: str) -> str:
    """The family of a kind: ``nodejs:20`` → ``nodejs``."""
    return kind.partition(":")[0]


def interpreter(kind_or_family: str) -> str:
    """Which interpreter (``nodejs`` or ``python``) runs the proxy of a kind or family.

    Raises ``KeyError`` for a family Squall has no proxy for.
    """
    return INTERPRETERS[family(kind_or_family)]


def proxy_path(kind_or_family: str) -> Path:
    """The proxy script for a kind (``python:3.11``) or family (``python``).

    Raises ``KeyError`` for a family Squall has no proxy for.
    """
    return PROXIES[family(kind_or_family)]
