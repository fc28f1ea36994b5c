"""Squall: a function-as-a-service platform that speaks the Apache OpenWhisk REST API."""

from squall.deferred_imports import defer_uvicorn_supervisors

__version__ = "0.1.0"

# Before any module of ours imports uvicorn: its reloader and workers' supervisor (with
# watchfiles and multiprocessing) are imported only if used (deferred_imports.py).
defer_uvicorn_supervisors()
