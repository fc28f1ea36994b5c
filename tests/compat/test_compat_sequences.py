"""Sequences and conductor actions through the official ``openwhisk`` npm client.

The script is ``sequences.js``; the helpers (running a script against the session's
server, reading the client's rejections) are shared with ``test_openwhisk_client.py``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from _standalone import Standalone
from compatsupport import assert_rejected, run_script

pytestmark = pytest.mark.compat


def annotation(entity: dict[str, Any], key: str) -> Any:
    return next((a["value"] for a in entity["annotations"] if a["key"] == key), None)


def test_sequences_through_the_client(standalone: Standalone) -> None:
    # Given / When: the client creates sequences, invokes them and reads the records
    seen = run_script(standalone, "sequences.js")
    ns = standalone.namespace
    components = [f"/{ns}/{seen['inc']}", f"/{ns}/{seen['double']}"]

    # Then the client's `sequence` option creates a sequence, "_" resolved
    assert seen["created"]["exec"] == {"kind": "sequence", "components": components}
    assert annotation(seen["created"], "exec") == "sequence"
    assert seen["got"]["exec"] == seen["created"]["exec"]
    assert seen["createdExplicit"]["exec"]["components"][0] == f"/{ns}/{seen['seq']}"

    # And a blocking invoke is the sequence's full record: (1 + 1) * 2
    record = seen["record"]
    assert record["name"] == seen["seq"]
    assert record["response"]["result"] == {"n": 4}
    assert record["response"]["status"] == "success"
    assert annotation(record, "kind") == "sequence"
    assert annotation(record, "topmost") is True
    # And its logs are the components' ids, whose records name it as their cause
    assert [c["activationId"] for c in seen["components"]] == record["logs"]
    assert [c["name"] for c in seen["components"]] == [seen["inc"], seen["double"]]
    for component in seen["components"]:
        assert component["cause"] == record["activationId"]
        assert annotation(component, "causedBy") == "sequence"
    assert record["duration"] == sum(c["duration"] for c in seen["components"])

    # And a nested sequence with result=true: ((1 + 1) * 2) + 1
    assert seen["nestedResult"] == {"n": 5}
    # And a non-blocking invoke resolves to the id, whose record ends with (5 + 1) * 2
    assert re.fullmatch(r"[0-9a-f]{32}", seen["accepted"]["activationId"])
    assert seen["fetched"]["response"]["result"] == {"n": 12}

    # And the client surfaces OpenWhisk's 400s for an empty or a cyclic sequence
    assert_rejected(seen["emptyCreate"], 400, "No component specified for the sequence.")
    assert_rejected(seen["cyclic"], 400, "Sequence may not refer to itself.")

    # And a conductor action runs its composition: conductor, double, conductor
    composition = seen["composition"]
    assert composition["name"] == seen["conductor"]
    assert composition["response"]["result"] == {"n": 42, "done": True}
    assert len(composition["logs"]) == 3
    assert annotation(composition, "conductor") is True
