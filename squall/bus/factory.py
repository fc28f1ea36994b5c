"""Choosing the bus from settings: ``bus_url`` empty = the in-process bus, ``nats://``
(or ``tls://``) = NATS JetStream.

A NATS URL may carry the provider's options as query parameters, e.g.
``nats://10.0.0.5:4222,nats://10.0.0.6:4222?ack_wait_s=30&max_deliver=5&prefix=staging``
(the query goes after the last server). Every process of one cluster must use the same
``prefix``; ``ack_wait_s`` and ``max_deliver`` are fixed by the first process that
creates a topic's consumer.
"""

from __future__ import annotations

from typing import TypedDict, cast
from urllib.parse import parse_qsl

from squall.bus.contracts import MessagingProvider
from squall.bus.memory import MemoryBus
from squall.config import Settings
from squall.errors import ConfigError

_NATS_SCHEMES = ("nats://", "tls://")
_FLOAT_OPTIONS = ("ack_wait_s", "send_timeout_s", "connect_timeout_s", "completion_max_age_s")
_INT_OPTIONS = ("max_deliver",)
_STR_OPTIONS = ("prefix", "name")


class NatsOptions(TypedDict, total=False):
    ack_wait_s: float
    send_timeout_s: float
    connect_timeout_s: float
    completion_max_age_s: float
    max_deliver: int
    prefix: str
    name: str


def _nats_options(query: str) -> NatsOptions:
    raw: dict[str, object] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        try:
            if key in _FLOAT_OPTIONS:
                raw[key] = float(value)
            elif key in _INT_OPTIONS:
                raw[key] = int(value)
            elif key in _STR_OPTIONS:
                raw[key] = value
            else:
                known = ", ".join(_FLOAT_OPTIONS + _INT_OPTIONS + _STR_OPTIONS)
                raise ConfigError(f"bus_url: unknown option {key!r} (known: {known})")
        except ValueError as e:
            raise ConfigError(f"bus_url: option {key}={value!r} is not a number") from e
    return cast(NatsOptions, raw)


async def open_bus(settings: Settings) -> MessagingProvider:
    """The bus ``settings.bus_url`` names; ``ConfigError`` for a URL of another scheme,
    ``ProviderError`` when NATS cannot be reached."""
    url = settings.bus_url.strip()
    if not url:
        return MemoryBus()
    if not url.startswith(_NATS_SCHEMES):
        raise ConfigError(
            f"bus_url {url!r}: expected empty (in-process bus) or a nats:// URL (NATS JetStream)"
        )
    servers, _, query = url.partition("?")
    try:
        options = _nats_options(query)
    except ValueError as e:  # malformed query string
        raise ConfigError(f"bus_url: malformed options {query!r}") from e
    # Imported here so that standalone never loads nats-py.
    from squall.bus.nats import NatsBus

    return await NatsBus.connect(servers, **options)
