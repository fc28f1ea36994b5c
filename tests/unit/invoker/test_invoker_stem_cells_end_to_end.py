"""A cold start through the whole platform takes a stem cell and says so in its record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from _polling import until
from poolsupport import NODE

from squall.cli.standalone import Standalone
from squall.config import Settings
from squall.invoker.container import State

pytestmark = pytest.mark.anyio

CODE = "function main(p) { return {n: (p.n || 0) + 1} }"


def _annotations(record: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: a["value"] for a in record["annotations"]}


async def test_a_matching_cold_start_is_an_init_on_a_stem_cell(tmp_path: Path) -> None:
    # Given the platform keeping one Node.js stem cell of 256 MB, prewarmed
    settings = Settings(home=tmp_path / "home", keep_warm_s=60, stem_cells=f"{NODE}@256x1")
    system = await Standalone.start(settings)
    pool = system.invoker.pool
    try:
        assert await until(lambda: [c.state for c in pool.stem_cells()] == [State.PREWARMED])
        [cell] = pool.stem_cells()
        user, _, key = system.guest_auth.partition(":")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=system.app),
            base_url="http://testserver",
            auth=(user, key),
            timeout=30.0,
        ) as client:
            for name, memory in (("at256", 256), ("at128", 128)):
                body = {"exec": {"kind": NODE, "code": CODE}, "limits": {"memory": memory}}
                r = await client.put(f"/api/v1/namespaces/_/actions/{name}", json=body)
                assert r.status_code == 200, r.text
            # When the 256 MB action is invoked cold
            r = await client.post(
                "/api/v1/namespaces/_/actions/at256",
                params={"blocking": "true"},
                json={"n": 1},
            )
            assert r.status_code == 200, r.text
            record = r.json()
            # Then it ran on the stem cell, its record says prewarmed, initTime is the /init
            assert record["response"]["result"] == {"n": 2}
            notes = _annotations(record)
            assert notes["prewarmed"] is True and isinstance(notes["initTime"], int)
            assert cell.key is not None and cell.key[1].endswith("/at256")
            # And a replacement stem cell comes up
            assert await until(lambda: [c.state for c in pool.stem_cells()] == [State.PREWARMED])
            # When an action of another memory size starts cold / Then it is a true cold start
            r = await client.post(
                "/api/v1/namespaces/_/actions/at128", params={"blocking": "true"}, json={}
            )
            assert r.status_code == 200, r.text
            notes = _annotations(r.json())
            assert "prewarmed" not in notes and "initTime" in notes
    finally:
        await system.close()
