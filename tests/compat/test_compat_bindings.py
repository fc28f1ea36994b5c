"""Package bindings through the official ``openwhisk`` npm client."""

from __future__ import annotations

import pytest
from _standalone import Standalone
from compatsupport import assert_rejected, run_script

pytestmark = pytest.mark.compat


def test_package_bindings(standalone: Standalone) -> None:
    # Given a package with parameters and an action, bound with parameters of its own
    observed = run_script(standalone, "bindings.js")
    # Then the binding names its source package
    assert observed["bound"]["binding"] == {"namespace": "guest", "name": observed["pkg"]}
    assert observed["got"]["binding"] == {"namespace": "guest", "name": observed["pkg"]}
    # And invoking through it merges package < binding < payload
    assert observed["invoked"] == {"a": "package", "b": "binding", "c": "payload"}
    # And the client surfaces OpenWhisk's refusals
    assert_rejected(observed["bindingOfBinding"], 409, "Cannot bind to another package binding.")
    assert_rejected(observed["toMissing"], 400, "Binding references a package that does not exist.")
