"""The owner of a web action's namespace is cached as credentials are (controller/auth.py):
a web request does not read the store for it within the cache's ``ttl``, a deleted
subject stops owning its namespace once the entry is gone, and a namespace not found is
never cached (a subject created after a 404 serves at once)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from apisupport import BASE_URL
from websupport import url, web_action

from squall.cli.standalone import Standalone

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]


async def test_the_owner_is_cached_and_a_missing_one_is_not(
    system: Standalone, anonymous: httpx.AsyncClient, unique: Unique
) -> None:
    # Given a namespace not created yet
    namespace = unique("web-owner")
    missing = await anonymous.get(url("hello", ".json", namespace=namespace))
    assert missing.status_code == 404
    # When its subject is created, with a web action: it serves at once (no cached 404)
    subject = await system.store.auth.create_subject(namespace)
    uuid_, key = subject.auth.split(":", 1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=system.app), base_url=BASE_URL, auth=(uuid_, key)
    ) as owner:
        await web_action(owner, "hello")
    first = await anonymous.get(url("hello", ".json", namespace=namespace))
    assert first.status_code == 200, first.text
    # And when the subject is deleted behind the controller's back (as `squall admin`
    # does), the cached owner still serves within the ttl: no store read per request
    await system.store.auth.delete_subject(namespace)
    cached = await anonymous.get(url("hello", ".json", namespace=namespace))
    assert cached.status_code == 200, cached.text
    # Until the entry is gone: then the namespace has no owner, 404
    system.controller.authenticator.forget_all()
    gone = await anonymous.get(url("hello", ".json", namespace=namespace))
    assert gone.status_code == 404, gone.text
