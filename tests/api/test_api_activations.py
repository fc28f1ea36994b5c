"""Activations: listing with filters, counting, full records, logs, results, ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from apisupport import FORBIDDEN, GUEST, NOT_FOUND, NS, assert_error, clock_past, node_action, poll

pytestmark = pytest.mark.anyio

Unique = Callable[[str], str]
ECHO = "function main(p) { console.log('n=' + p.n); return {n: p.n}; }"


async def run(client: httpx.AsyncClient, name: str, n: int) -> dict[str, Any]:
    """Invoke ``name`` blocking; return its record once the clock moved past its start, so
    the next activation starts strictly later (newest-first order is then unambiguous)."""
    r = await client.post(f"{NS}/actions/{name}", json={"n": n}, params={"blocking": "true"})
    assert r.status_code == 200, r.text
    record: dict[str, Any] = r.json()
    await poll(lambda: clock_past(record["end"]), what="the clock to pass the activation's end")
    return record


async def list_activations(client: httpx.AsyncClient, **params: str) -> Any:
    r = await client.get(f"{NS}/activations", params=params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
async def three(client: httpx.AsyncClient, unique: Unique) -> tuple[str, list[dict[str, Any]]]:
    """An action with three activations, oldest first."""
    name = unique("act")
    r = await client.put(f"{NS}/actions/{name}", json=node_action(ECHO))
    assert r.status_code == 200
    return name, [await run(client, name, n) for n in range(3)]


async def test_list_is_newest_first_and_filtered_by_name(
    client: httpx.AsyncClient, unique: Unique, three: tuple[str, list[dict[str, Any]]]
) -> None:
    # Given an action with three activations and another action with one
    name, records = three
    other = unique("other")
    await client.put(f"{NS}/actions/{other}", json=node_action(ECHO))
    await run(client, other, 9)
    # When activations are listed by the first action's name
    listed = await list_activations(client, name=name)
    # Then exactly its three, newest first, as summaries
    assert [a["activationId"] for a in listed] == [r["activationId"] for r in reversed(records)]
    for entry in listed:
        assert entry["name"] == name
        assert entry["namespace"] == GUEST
        assert "logs" not in entry
        assert "result" not in entry.get("response", {})
    # And the unfiltered list is newest first too, and holds both actions
    everything = await list_activations(client, limit="0")
    starts = [a["start"] for a in everything]
    assert starts == sorted(starts, reverse=True)
    assert {name, other} <= {a["name"] for a in everything}
    # And skip/limit page through the filtered list
    page = await list_activations(client, name=name, skip="1", limit="1")
    assert [a["activationId"] for a in page] == [records[1]["activationId"]]


async def test_filter_by_package_and_name(client: httpx.AsyncClient, unique: Unique) -> None:
    # Given an action in a package and a top-level action of the same name
    pkg, name = unique("pkg"), unique("same")
    await client.put(f"{NS}/packages/{pkg}", json={})
    await client.put(f"{NS}/actions/{pkg}/{name}", json=node_action(ECHO))
    await client.put(f"{NS}/actions/{name}", json=node_action(ECHO))
    inside = await run(client, f"{pkg}/{name}", 1)
    outside = await run(client, name, 2)
    # When filtered by pkg/name / Then only the packaged action's activation
    listed = await list_activations(client, name=f"{pkg}/{name}")
    assert [a["activationId"] for a in listed] == [inside["activationId"]]
    # And the plain name means the top-level action
    listed = await list_activations(client, name=name)
    assert [a["activationId"] for a in listed] == [outside["activationId"]]


async def test_since_and_upto(
    client: httpx.AsyncClient, three: tuple[str, list[dict[str, Any]]]
) -> None:
    name, records = three
    first, second, third = records
    # When filtered from the second activation's start on / Then the second and third
    since = await list_activations(client, name=name, since=str(second["start"]))
    assert [a["activationId"] for a in since] == [third["activationId"], second["activationId"]]
    # When filtered up to the second's start / Then the first and the second
    upto = await list_activations(client, name=name, upto=str(second["start"]))
    assert [a["activationId"] for a in upto] == [second["activationId"], first["activationId"]]
    # When both bound the second only / Then just that one
    both = await list_activations(
        client, name=name, since=str(second["start"]), upto=str(second["start"])
    )
    assert [a["activationId"] for a in both] == [second["activationId"]]


async def test_count(client: httpx.AsyncClient, three: tuple[str, list[dict[str, Any]]]) -> None:
    name, records = three
    # When counted by name / Then {"activations": 3}
    assert await list_activations(client, name=name, count="true") == {"activations": 3}
    # And the count honours since
    counted = await list_activations(
        client, name=name, count="true", since=str(records[1]["start"])
    )
    assert counted == {"activations": 2}


async def test_docs_gives_full_records(
    client: httpx.AsyncClient, three: tuple[str, list[dict[str, Any]]]
) -> None:
    name, records = three
    # When listed with docs=true / Then the entries are the full records, newest first
    listed = await list_activations(client, name=name, docs="true")
    assert listed == list(reversed(records))
    assert listed[0]["response"]["result"] == {"n": 2}
    assert any(line.endswith("stdout: n=2") for line in listed[0]["logs"])


async def test_docs_with_count_is_400(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{NS}/activations", params={"count": "true", "docs": "true"})
    assert_error(r, 400, "The parameter 'docs' is not permitted with 'count'.")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"name": "a/b/c"},
            "Parameter may be a 'simple' name or 'package-name/simple' name: a/b/c",
        ),
        ({"name": "bad$"}, "Parameter may be a 'simple' name or 'package-name/simple' name: bad$"),
        ({"since": "yesterday"}, "Parameter is not a valid value for epoch seconds: yesterday"),
        ({"upto": "-5"}, "Parameter is not a valid value for epoch seconds: -5"),
        ({"limit": "201"}, "The value '201' is not in the range of 0 to 200 for activations."),
        ({"skip": "-1"}, "The value '-1' is not greater than or equal to 0 for activations."),
    ],
)
async def test_bad_list_parameters_are_400(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    assert_error(await client.get(f"{NS}/activations", params=params), 400, message)


async def test_get_logs_and_result(
    client: httpx.AsyncClient, three: tuple[str, list[dict[str, Any]]]
) -> None:
    _, records = three
    record = records[2]
    aid = record["activationId"]
    # When the record is read / Then it is the blocking answer
    assert (await client.get(f"{NS}/activations/{aid}")).json() == record
    # When its logs are read / Then {"logs": [...]}
    logs = await client.get(f"{NS}/activations/{aid}/logs")
    assert logs.status_code == 200
    assert logs.json() == {"logs": record["logs"]}
    assert any(line.endswith("stdout: n=2") for line in logs.json()["logs"])
    # When its result is read / Then the response object as OpenWhisk shows it: status
    # and success, no statusCode, and the size of the runtime's answer ('{"n":2}')
    result = await client.get(f"{NS}/activations/{aid}/result")
    assert result.status_code == 200
    assert result.json() == record["response"]
    assert result.json() == {
        "status": "success",
        "success": True,
        "result": {"n": 2},
        "size": len('{"n":2}'),
    }


async def test_unknown_sub_resource_is_404(
    client: httpx.AsyncClient, three: tuple[str, list[dict[str, Any]]]
) -> None:
    # OpenWhisk answers only /logs and /result below an activation
    aid = three[1][0]["activationId"]
    assert_error(await client.get(f"{NS}/activations/{aid}/bogus"), 404, NOT_FOUND)


@pytest.mark.parametrize(
    ("activation_id", "message"),
    [
        ("abc", "Activation id length is 3 but must be 32."),
        ("0" * 33, "Activation id length is 33 but must be 32."),
        ("z" * 32, "The activation id is not valid."),
        ("0123456789abcdef0123456789abcdeg", "The activation id is not valid."),
    ],
)
async def test_malformed_activation_id_is_400(
    client: httpx.AsyncClient, activation_id: str, message: str
) -> None:
    for suffix in ("", "/logs", "/result"):
        r = await client.get(f"{NS}/activations/{activation_id}{suffix}")
        assert_error(r, 400, message)


async def test_unknown_activation_is_404(client: httpx.AsyncClient) -> None:
    for suffix in ("", "/logs", "/result"):
        r = await client.get(f"{NS}/activations/{'0' * 32}{suffix}")
        assert_error(r, 404, NOT_FOUND)


async def test_another_namespace_is_403(
    client: httpx.AsyncClient, three: tuple[str, list[dict[str, Any]]]
) -> None:
    # Given an existing activation of the guest
    aid = three[1][0]["activationId"]
    # When it is addressed through another namespace (and an unknown id too)
    for activation_id in (aid, "f" * 32):
        for suffix in ("", "/logs", "/result"):
            r = await client.get(f"/api/v1/namespaces/other/activations/{activation_id}{suffix}")
            # Then 403, the same whether or not it exists
            assert_error(r, 403, FORBIDDEN)


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE"])
async def test_activations_are_read_only(
    client: httpx.AsyncClient, three: tuple[str, list[dict[str, Any]]], method: str
) -> None:
    # When an activation is written to / Then 405 and it is still there
    aid = three[1][0]["activationId"]
    assert_error(await client.request(method, f"{NS}/activations/{aid}"), 405)
    assert (await client.get(f"{NS}/activations/{aid}")).status_code == 200
