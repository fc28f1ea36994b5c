"""The systemd units in deploy/systemd are valid: ``systemd-analyze verify`` accepts them
(instantiated, with ExecStart pointing at this checkout's ``squall``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _required import unavailable

UNITS = Path(__file__).resolve().parents[3] / "deploy" / "systemd"
INSTALLED = "/opt/squall/.venv/bin/squall"


@pytest.mark.parametrize("unit", ["squall-controller@.service", "squall-invoker@.service"])
def test_the_unit_verifies(tmp_path: Path, unit: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze is not installed (Debian package systemd)")
    # Given the unit as an operator installs it, instantiated, run from this checkout
    text = (UNITS / unit).read_text()
    assert INSTALLED in text and "Restart=always" in text
    squall = Path(sys.executable).with_name("squall")
    instance = tmp_path / unit.replace("@.", "@0.")
    instance.write_text(text.replace(INSTALLED, str(squall)))
    # When systemd checks it / Then it finds nothing wrong
    done = subprocess.run(
        [analyze, "verify", str(instance)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
