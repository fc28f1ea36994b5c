"""Exit codes of the client commands, as ``wsk`` has them.

``wsk`` exits with the HTTP status minus 256 (so modulo 256, as a process exit code is one
byte) when the server refuses a request: a script can tell "not found" (148) from
"unauthorized" (145) without parsing the message. A blocking invoke that outlives its
wait exits with 202, as in OpenWhisk's own test suite.
"""

from __future__ import annotations

OK = 0
#: Anything else: a bad file, an invalid argument the server never saw.
ERROR = 1
#: Wrong usage (click's own code for usage errors), or no API host / key configured.
USAGE = 2
#: The API host could not be reached (refused, unresolvable, TLS, timeout).
NETWORK = 3

ACCEPTED = 202
BAD_REQUEST = 144  # 400
UNAUTHORIZED = 145  # 401
FORBIDDEN = 147  # 403
NOT_FOUND = 148  # 404
NOT_ALLOWED = 149  # 405
CONFLICT = 153  # 409
TOO_LARGE = 157  # 413
THROTTLED = 173  # 429
INTERNAL_ERROR = 244  # 500
APP_ERROR = 246  # 502: the action failed (application or developer error)
UNAVAILABLE = 247  # 503


def for_status(status: int) -> int:
    """The exit code for an HTTP status the client treats as a failure."""
    code = status % 256
    return code if code != OK else ERROR
