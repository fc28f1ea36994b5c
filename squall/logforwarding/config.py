"""A namespace's log-forwarding configuration: Adobe I/O Runtime's destinations and their
settings, as ``aio rt:namespace:log-forwarding:set:*`` (aio-lib-runtime's
``LogForwarding``) sends them, and as ``GET /runtime/namespaces/<ns>/logForwarding`` shows
them.

- ``PUT`` body: exactly one key, the destination, mapped to its settings:
  ``{"splunk_hec": {host, port, index, hec_token}}``,
  ``{"azure_log_analytics": {customer_id, shared_key, log_type}}``,
  ``{"new_relic": {base_uri, license_key}}`` or ``{"adobe_io_runtime": {}}`` (the default:
  logs stay in the activation records only). Every setting is required and a string
  (``port`` too, as aio sends it); an unknown destination or setting is a 400.
- The view (GET and the PUT answer): ``{destination: {settings…, "updated_at": ISO}}``
  without the secret settings (``hec_token``, ``shared_key``, ``license_key``: the ones
  aio's destinations provider types ``password``), as App Builder expects (it compares
  the server's view with its local settings, which hold no secrets).
- Stored as an entity document of the namespace (:data:`squall.store.contracts.LOG_FORWARDING`)
  whose settings are ``parameters``, so the store encrypts them as it encrypts default
  parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from squall.errors import BadRequest

ADOBE_IO_RUNTIME = "adobe_io_runtime"
SPLUNK_HEC = "splunk_hec"
AZURE_LOG_ANALYTICS = "azure_log_analytics"
NEW_RELIC = "new_relic"

#: Each destination's settings, in aio's order, and which of them are secret.
SETTINGS: dict[str, tuple[str, ...]] = {
    ADOBE_IO_RUNTIME: (),
    SPLUNK_HEC: ("host", "port", "index", "hec_token"),
    AZURE_LOG_ANALYTICS: ("customer_id", "shared_key", "log_type"),
    NEW_RELIC: ("base_uri", "license_key"),
}
SECRETS = frozenset({"hec_token", "shared_key", "license_key"})


def malformed(detail: str) -> BadRequest:
    return BadRequest(f"The request content was malformed:\n{detail}")


@dataclass(frozen=True, slots=True)
class LogForwardingConfig:
    """One namespace's destination and its settings (secrets included)."""

    destination: str
    settings: dict[str, str]
    updated_at: str = ""

    @property
    def forwards(self) -> bool:
        """Whether logs leave the platform (anything but the default destination)."""
        return self.destination != ADOBE_IO_RUNTIME

    @classmethod
    def default(cls) -> LogForwardingConfig:
        return cls(ADOBE_IO_RUNTIME, {})

    @classmethod
    def from_request(cls, raw: object, now_ms: int) -> LogForwardingConfig:
        """Validate a PUT body (400 with what is wrong)."""
        if not isinstance(raw, dict) or len(raw) != 1:
            raise malformed("the body must be an object with exactly one destination.")
        ((destination, given),) = raw.items()
        if destination not in SETTINGS:
            supported = ", ".join(SETTINGS)
            raise BadRequest(
                f"Destination '{destination}' is not supported (supported: {supported})."
            )
        if not isinstance(given, dict):
            raise malformed(f"the settings of '{destination}' must be an object.")
        expected = SETTINGS[destination]
        unknown = sorted(set(given) - set(expected))
        if unknown:
            raise malformed(f"'{destination}' has no setting {', '.join(unknown)}.")
        settings: dict[str, str] = {}
        for name in expected:
            value = given.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and name == "port":
                value = str(value)
            if not isinstance(value, str) or not value.strip():
                raise malformed(f"'{destination}' needs a non-empty string '{name}'.")
            settings[name] = value.strip()
        return cls(destination, settings, iso_time(now_ms))

    def view(self) -> dict[str, Any]:
        """What GET answers: the settings without secrets, and ``updated_at``."""
        shown: dict[str, Any] = {k: v for k, v in self.settings.items() if k not in SECRETS}
        if self.updated_at:
            shown["updated_at"] = self.updated_at
        return {self.destination: shown}

    # -- the stored document -------------------------------------------------------------

    def to_body(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "parameters": [{"key": k, "value": v} for k, v in self.settings.items()],
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> LogForwardingConfig:
        settings = {str(kv["key"]): str(kv["value"]) for kv in body.get("parameters", [])}
        return cls(str(body["destination"]), settings, str(body.get("updated_at", "")))


def iso_time(epoch_ms: int) -> str:
    """Adobe's ``updated_at`` shape: ``2021-08-27T14:40:06.000+00:00``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds")
