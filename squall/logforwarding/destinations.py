"""How a batch of log entries is sent to each destination, in its documented ingest
protocol. A :class:`Destination` only builds the HTTP request; the forwarder sends it,
retries it and counts it.

- Splunk HEC: ``POST <scheme>://<host>:<port>/services/collector`` with
  ``Authorization: Splunk <hec_token>``; the body is the batch's event objects one after
  the other (HEC's batch format), each ``{"time": <epoch s>, "host", "source",
  "sourcetype": "_json", "index", "event": {…}}``. ``host`` may carry a scheme
  (``http://…``); without one it is ``https``.
- Azure Log Analytics (HTTP Data Collector API): ``POST
  https://<customer_id>.ods.opinsights.azure.com/api/logs?api-version=2016-04-01`` with
  ``Log-Type: <log_type>``, ``x-ms-date`` (RFC 1123), ``time-generated-field: time`` and
  ``Authorization: SharedKey <customer_id>:<signature>``, the signature being the base64
  HMAC-SHA256, under the base64-decoded shared key, of ``"POST\\n<content length>\\n
  application/json\\nx-ms-date:<date>\\n/api/logs"``; the body is a JSON array of records.
  The URL's base is a setting (``log_forwarding_azure_url``), so tests and sovereign
  clouds can point it elsewhere.
- New Relic (Log API): ``POST <base_uri>`` with ``X-License-Key: <license_key>`` (the
  header for license keys; ``Api-Key`` is for user keys); the body is
  ``[{"common": {"attributes": {…}}, "logs": [{"timestamp": <ms>, "message", "attributes"}]}]``.

Every entry carries the activation's id, namespace, action path, the log line's stream
and time, and its text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any, Protocol

import orjson

from squall.logforwarding.config import (
    AZURE_LOG_ANALYTICS,
    NEW_RELIC,
    SPLUNK_HEC,
    LogForwardingConfig,
)

SOURCE = "squall"
AZURE_API_VERSION = "2016-04-01"
DEFAULT_AZURE_URL = "https://{customer_id}.ods.opinsights.azure.com"


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One log line of one activation."""

    activation_id: str
    namespace: str
    action: str
    time_ms: int
    stream: str
    message: str

    def fields(self) -> dict[str, Any]:
        return {
            "activationId": self.activation_id,
            "namespace": self.namespace,
            "action": self.action,
            "stream": self.stream,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Request:
    """An HTTP request to send: always a POST."""

    url: str
    headers: dict[str, str]
    body: bytes


class Destination(Protocol):
    """Builds the request that delivers a batch (pure: no I/O, no clock but ``now``)."""

    @property
    def name(self) -> str:
        """The destination's name in the configuration (``splunk_hec``, …)."""
        ...

    def request(self, entries: Sequence[LogEntry], now_s: float) -> Request: ...


@dataclass(frozen=True)
class SplunkHec:
    host: str
    port: str
    index: str
    token: str
    name: str = SPLUNK_HEC

    def url(self) -> str:
        base = self.host if "://" in self.host else f"https://{self.host}"
        return f"{base.rstrip('/')}:{self.port}/services/collector"

    def request(self, entries: Sequence[LogEntry], now_s: float) -> Request:
        body = b"".join(
            orjson.dumps(
                {
                    "time": e.time_ms / 1000,
                    "host": e.namespace,
                    "source": SOURCE,
                    "sourcetype": "_json",
                    "index": self.index,
                    "event": e.fields(),
                }
            )
            for e in entries
        )
        headers = {"Authorization": f"Splunk {self.token}", "Content-Type": "application/json"}
        return Request(self.url(), headers, body)


def azure_signature(customer_id: str, shared_key: str, date: str, length: int) -> str:
    """The Data Collector API's ``Authorization`` header value for a POST of ``length``
    bytes at ``date``. An undecodable shared key signs with its UTF-8 bytes (the request
    then fails with 403, which is reported, rather than crashing the forwarder)."""
    text = f"POST\n{length}\napplication/json\nx-ms-date:{date}\n/api/logs"
    try:
        key = base64.b64decode(shared_key, validate=True)
    except (binascii.Error, ValueError):
        key = shared_key.encode()
    digest = hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()
    return f"SharedKey {customer_id}:{base64.b64encode(digest).decode('ascii')}"


@dataclass(frozen=True)
class AzureLogAnalytics:
    customer_id: str
    shared_key: str
    log_type: str
    base_url: str = DEFAULT_AZURE_URL
    name: str = AZURE_LOG_ANALYTICS

    def request(self, entries: Sequence[LogEntry], now_s: float) -> Request:
        body = orjson.dumps([{"time": iso(e.time_ms), **e.fields()} for e in entries])
        date = formatdate(now_s, usegmt=True)
        base = self.base_url.replace("{customer_id}", self.customer_id).rstrip("/")
        headers = {
            "Content-Type": "application/json",
            "Log-Type": self.log_type,
            "x-ms-date": date,
            "time-generated-field": "time",
            "Authorization": azure_signature(self.customer_id, self.shared_key, date, len(body)),
        }
        return Request(f"{base}/api/logs?api-version={AZURE_API_VERSION}", headers, body)


@dataclass(frozen=True)
class NewRelic:
    base_uri: str
    license_key: str
    name: str = NEW_RELIC

    def request(self, entries: Sequence[LogEntry], now_s: float) -> Request:
        logs = [
            {
                "timestamp": e.time_ms,
                "message": e.message,
                "attributes": {k: v for k, v in e.fields().items() if k != "message"},
            }
            for e in entries
        ]
        body = orjson.dumps([{"common": {"attributes": {"source": SOURCE}}, "logs": logs}])
        headers = {"Content-Type": "application/json", "X-License-Key": self.license_key}
        return Request(self.base_uri, headers, body)


def destination_of(config: LogForwardingConfig, azure_url: str) -> Destination | None:
    """The destination a configuration sends to, or None (the platform's records only)."""
    s = config.settings
    if config.destination == SPLUNK_HEC:
        return SplunkHec(s["host"], s["port"], s["index"], s["hec_token"])
    if config.destination == AZURE_LOG_ANALYTICS:
        return AzureLogAnalytics(s["customer_id"], s["shared_key"], s["log_type"], azure_url)
    if config.destination == NEW_RELIC:
        return NewRelic(s["base_uri"], s["license_key"])
    return None


def iso(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds (what Azure's time-generated-field reads)."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
