"""The one exception tree of Squall.

Every error a user can see carries the HTTP status OpenWhisk answers with and the message
in OpenWhisk's wording; the API layer renders it as ``{"error": message, "code": txid}``.
Activation *outcomes* (application error, developer error, ...) are data on the
activation record, never exceptions.

::

    SquallError                    500  base; unexpected failures
    ├── RequestError               4xx  the caller asked for something wrong
    │   ├── BadRequest             400  malformed JSON, bad names, invalid limits, unknown kinds
    │   ├── Unauthorized           401  missing or wrong credentials
    │   ├── Forbidden              403  another namespace, entitlement
    │   ├── NotFound               404  no such entity / activation
    │   ├── MethodNotAllowed       405
    │   ├── Conflict               409  exists without overwrite, stale revision, non-empty package
    │   ├── PayloadTooLarge        413  body, parameters or code over the limits
    │   ├── UnsupportedMediaType   415  an entity PUT whose body is not application/json
    │   └── TooManyRequests        429  throttles
    ├── ServiceUnavailable         503  no invoker can take the work
    ├── ConfigError                500  settings that cannot work (unknown provider URL, ...)
    └── ProviderError              500  a store, bus or sandbox provider failed
        └── ContainerError         500  a sandbox could not be created or talked to
"""

from __future__ import annotations

from typing import ClassVar


class SquallError(Exception):
    """Base of every Squall error; ``status`` is the HTTP status it maps to."""

    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "An internal error occurred."

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message)


class RequestError(SquallError):
    status = 400
    default_message = "The request content was malformed."


class BadRequest(RequestError):
    status = 400


class Unauthorized(RequestError):
    status = 401
    default_message = "The supplied authentication is invalid."


class Forbidden(RequestError):
    status = 403
    default_message = "The supplied authentication is not authorized to access this resource."


class NotFound(RequestError):
    status = 404
    default_message = "The requested resource does not exist."


class MethodNotAllowed(RequestError):
    status = 405
    default_message = "The requested method is not allowed for this resource."


class Conflict(RequestError):
    status = 409
    default_message = "Concurrent modification to resource detected."


class PayloadTooLarge(RequestError):
    status = 413
    default_message = "The request content was too large."

    @classmethod
    def of(cls, size: int, allowed: int) -> PayloadTooLarge:
        return cls(f"Request larger than allowed: {size} > {allowed} bytes.")


class UnsupportedMediaType(RequestError):
    status = 415
    default_message = "The request's Content-Type is not supported."


class TooManyRequests(RequestError):
    status = 429
    default_message = "Too many requests."


class ServiceUnavailable(SquallError):
    status = 503
    default_message = "No invokers available."


class ConfigError(SquallError):
    """Settings that cannot work, e.g. a store or bus URL of an unknown scheme."""


class ProviderError(SquallError):
    status = 500


class ContainerError(ProviderError):
    """A sandbox could not be started, initialized or talked to."""
