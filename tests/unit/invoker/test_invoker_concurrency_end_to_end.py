"""Through the whole platform: concurrent invokes of a Node.js action share containers up
to its ``limits.concurrency`` (real runtimes in the process sandbox)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from poolsupport import NODE

from squall.cli.standalone import Standalone
from squall.config import Settings

pytestmark = pytest.mark.anyio

#: Each run lasts long enough that the runs of one burst overlap.
SLOW = "function main(p) { return new Promise(r => setTimeout(() => r({n: p.n}), 1500)) }"


async def test_25_concurrent_invokes_of_a_concurrency_10_action_use_at_most_3_containers(
    tmp_path: Path,
) -> None:
    # Given the platform (no stem cells) and a Node.js action with concurrency 10
    settings = Settings(home=tmp_path / "home", keep_warm_s=60, stem_cells="")
    system = await Standalone.start(settings)
    try:
        user, _, key = system.guest_auth.partition(":")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=system.app),
            base_url="http://testserver",
            auth=(user, key),
            timeout=60.0,
        ) as client:
            body = {"exec": {"kind": NODE, "code": SLOW}, "limits": {"concurrency": 10}}
            r = await client.put("/api/v1/namespaces/_/actions/slow", json=body)
            assert r.status_code == 200, r.text

            async def invoke(n: int) -> httpx.Response:
                return await client.post(
                    "/api/v1/namespaces/_/actions/slow",
                    params={"blocking": "true", "result": "true"},
                    json={"n": n},
                )

            # When 25 blocking invokes are sent at once
            answers = await asyncio.gather(*(invoke(n) for n in range(25)))
        # Then every one got its own result
        assert [a.json() for a in answers] == [{"n": n} for n in range(25)]
        # And at most ceil(25 / 10) containers were started for it (fewer if some runs
        # ended before the last ones arrived), not one per invoke
        mine = [pc for pc in system.invoker.pool.containers() if pc.key is not None]
        assert 1 <= len(mine) <= 3
        assert all(pc.max_concurrent == 10 for pc in mine)
    finally:
        await system.close()
