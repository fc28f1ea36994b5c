"""Dashboard session cookies: signed, expiring, and shared by controllers with one secret."""

from __future__ import annotations

import base64

import orjson

from squall.config import Settings
from squall.controller.ui.session import SESSION_S, Session, Sessions

SECRET = b"s" * 32
NOW = 1_700_000_000


def test_a_cookie_round_trips_until_it_expires() -> None:
    # Given a cookie issued now
    sessions = Sessions(SECRET)
    cookie, session = sessions.issue("guest", "uuid-1", now=NOW)
    # Then it names the namespace and uuid until its expiry, not after
    assert session == Session("guest", "uuid-1", NOW + SESSION_S)
    assert sessions.verify(cookie, now=NOW + SESSION_S - 1) == session
    assert sessions.verify(cookie, now=NOW + SESSION_S) is None


def test_altered_forged_or_foreign_cookies_are_no_session() -> None:
    sessions = Sessions(SECRET)
    cookie, _ = sessions.issue("guest", "uuid-1", now=NOW)
    payload, _, signature = cookie.partition(".")
    # A payload naming another namespace, or a later expiry, under the old signature
    other = base64.urlsafe_b64encode(
        orjson.dumps({"ns": "admin", "uuid": "uuid-1", "exp": NOW + 10 * SESSION_S})
    ).rstrip(b"=")
    assert sessions.verify(f"{other.decode()}.{signature}", now=NOW) is None
    # A cookie signed with another secret, a truncated one, garbage, nothing
    foreign, _ = Sessions(b"t" * 32).issue("guest", "uuid-1", now=NOW)
    for bad in (foreign, payload, f"{payload}.", "..", "not a cookie", "", None):
        assert sessions.verify(bad, now=NOW) is None


def test_controllers_sharing_the_secret_accept_each_others_sessions() -> None:
    # Given two controllers' settings with the same action key secret, and one without
    shared = Settings(action_key_secret="k" * 40)
    first, second = Sessions.for_settings(shared), Sessions.for_settings(shared)
    alone = Sessions.for_settings(Settings())
    cookie, session = first.issue("guest", "uuid-1", now=NOW)
    # Then the other controller accepts the session; one with a secret of its own does not
    assert second.verify(cookie, now=NOW) == session
    assert alone.verify(cookie, now=NOW) is None
    # And the cookie carries neither the secret nor anything but namespace, uuid, expiry
    assert "k" * 40 not in cookie
    payload = cookie.partition(".")[0]
    decoded = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert decoded == {"ns": "guest", "uuid": "uuid-1", "exp": NOW + SESSION_S}
