"""ApiStore contract: the gateway's APIs with revisions, listings by namespace and by
tenant, sharing between processes, durability and close."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from squall.errors import Conflict, NotFound, ProviderError

from .conftest import FakeClock, Provider, Stores

pytestmark = pytest.mark.anyio

NS = "guest"
TENANT = "9f3b7c8e-tenant"


def swagger(base_path: str, *paths: str) -> dict[str, Any]:
    return {
        "swagger": "2.0",
        "info": {"title": base_path, "version": "1.0.0"},
        "basePath": base_path,
        "paths": {p: {"get": {"x-openwhisk": {"action": "a\u0000b"}}} for p in paths},
    }


async def test_put_get_replace_delete(stores: Stores, clock: FakeClock) -> None:
    # When an API is created
    created = await stores.apis.put(NS, "/club", TENANT, swagger("/club", "/books"), None)
    # Then it comes back with its document, tenant, write time and a revision
    assert (created.namespace, created.base_path, created.tenant) == (NS, "/club", TENANT)
    assert created.swagger == swagger("/club", "/books")
    assert list(created.swagger) == ["swagger", "info", "basePath", "paths"]
    assert created.updated == clock.now
    assert await stores.apis.get(NS, "/club") == created
    # And creating it again is a conflict
    with pytest.raises(Conflict):
        await stores.apis.put(NS, "/club", TENANT, swagger("/club"), None)
    # When it is replaced at its revision
    clock.advance(5)
    replaced = await stores.apis.put(
        NS, "/club", "new-tenant", swagger("/club", "/books", "/books/{id}"), created.rev
    )
    # Then the revision changed and the old one is stale for writes and deletes
    assert replaced.rev != created.rev and replaced.updated == clock.now
    assert await stores.apis.get(NS, "/club") == replaced
    with pytest.raises(Conflict):
        await stores.apis.put(NS, "/club", TENANT, swagger("/club"), created.rev)
    with pytest.raises(Conflict):
        await stores.apis.delete(NS, "/club", created.rev)
    # When it is deleted at its revision, it is gone
    await stores.apis.delete(NS, "/club", replaced.rev)
    with pytest.raises(NotFound):
        await stores.apis.get(NS, "/club")
    with pytest.raises(NotFound):
        await stores.apis.delete(NS, "/club")
    # And replacing what does not exist is a conflict, never a create
    with pytest.raises(Conflict):
        await stores.apis.put(NS, "/club", TENANT, swagger("/club"), replaced.rev)


async def test_list_by_namespace_and_by_tenant(stores: Stores) -> None:
    # Given APIs of two namespaces
    for base in ("/zoo", "/club", "/api/v2"):
        await stores.apis.put(NS, base, TENANT, swagger(base), None)
    await stores.apis.put("other", "/club", "other-tenant", swagger("/club"), None)
    # Then a namespace lists its own, by base path
    assert [a.base_path for a in await stores.apis.list(NS)] == ["/api/v2", "/club", "/zoo"]
    assert [a.namespace for a in await stores.apis.list("other")] == ["other"]
    assert await stores.apis.list("nobody") == []
    # And a tenant finds exactly its namespace's APIs
    assert [(a.namespace, a.base_path) for a in await stores.apis.of_tenant(TENANT)] == [
        (NS, "/api/v2"),
        (NS, "/club"),
        (NS, "/zoo"),
    ]
    assert [a.namespace for a in await stores.apis.of_tenant("other-tenant")] == ["other"]
    assert await stores.apis.of_tenant("unknown") == []
    # And deleting one namespace's API leaves the other's
    await stores.apis.delete(NS, "/club")
    assert (await stores.apis.get("other", "/club")).tenant == "other-tenant"


async def test_concurrent_replacers_one_wins(stores: Stores) -> None:
    # Given an API, and ten writers that all read its revision
    created = await stores.apis.put(NS, "/club", TENANT, swagger("/club"), None)
    outcomes: list[bool] = []

    async def replace(n: int) -> None:
        try:
            await stores.apis.put(NS, "/club", TENANT, swagger("/club", f"/p{n}"), created.rev)
            outcomes.append(True)
        except Conflict:
            outcomes.append(False)

    # When they all replace it at once
    async with anyio.create_task_group() as tg:
        for n in range(10):
            tg.start_soon(replace, n)
    # Then exactly one wrote, and its document is the stored one
    assert Counter(outcomes) == {True: 1, False: 9}
    assert len((await stores.apis.get(NS, "/club")).swagger["paths"]) == 1


async def test_a_second_opener_sees_writes_at_once(
    durable_provider: Provider, tmp_path: Path, clock: FakeClock
) -> None:
    # Given two openers of one store (two controllers), then the first closed
    first = await durable_provider.open(tmp_path, clock)
    second = await durable_provider.open(tmp_path, clock)
    try:
        # When one creates an API, the other finds it by tenant at once
        stored = await first.apis.put(NS, "/club", TENANT, swagger("/club", "/books"), None)
        assert await second.apis.of_tenant(TENANT) == [stored]
        # And a delete through the other is seen by the first
        await second.apis.delete(NS, "/club")
        assert await first.apis.list(NS) == []
        kept = await first.apis.put(NS, "/kept", TENANT, swagger("/kept"), None)
    finally:
        await first.close()
        await second.close()
    # When it is opened again, what was written is there
    third = await durable_provider.open(tmp_path, clock)
    try:
        assert await third.apis.get(NS, "/kept") == kept
    finally:
        await third.close()


async def test_every_api_method_raises_after_close(provider: Provider, tmp_path: Path) -> None:
    stores = await provider.open(tmp_path, FakeClock())
    await stores.close()
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: stores.apis.put(NS, "/a", TENANT, {}, None),
        lambda: stores.apis.get(NS, "/a"),
        lambda: stores.apis.delete(NS, "/a"),
        lambda: stores.apis.list(NS),
        lambda: stores.apis.of_tenant(TENANT),
    ]
    for call in calls:
        with pytest.raises(ProviderError, match="store is closed"):
            await call()
