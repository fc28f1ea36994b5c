"""``squall completion``: the printed script, loaded into a real bash, completes commands,
lazily imported subcommands and their options."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _required import unavailable

BIN = Path(sys.executable).parent


def completion_script(shell: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "squall.cli.main", "completion", shell],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def bash_completes(words: list[str]) -> list[str]:
    """What <Tab> after ``words`` offers in bash with the script loaded (the last word is
    the one being completed)."""
    bash = shutil.which("bash")
    if bash is None:
        unavailable("bash is not installed")
    if not (BIN / "squall").exists():
        unavailable(f"the squall script is not installed in {BIN} (pip install -e .)")
    program = (
        'eval "$(squall completion bash)"\n'
        f"COMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}\n"
        "_squall_completion squall\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if line]


def test_bash_completes_subcommands_and_options() -> None:
    # Given the bash script loaded / When <Tab> follows "squall adm"
    # Then the lazily imported admin command is offered
    assert bash_completes(["squall", "adm"]) == ["admin"]
    # And nested groups and camelCase options complete too
    assert bash_completes(["squall", "admin", "li"]) == ["limits"]
    assert bash_completes(["squall", "admin", "limits", "set", "--inv"]) == [
        "--invocationsPerMinute",
        "--invocations-per-minute",
    ]


@pytest.mark.parametrize(
    ("shell", "marker"), [("bash", "complete -o nosort"), ("zsh", "#compdef squall")]
)
def test_scripts_are_printed_for_each_shell(shell: str, marker: str) -> None:
    # When a shell's script is printed / Then it is click's, for the squall program
    script = completion_script(shell)
    assert marker in script
    assert "_SQUALL_COMPLETE" in script


def test_an_unknown_shell_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "squall.cli.main", "completion", "tcsh"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "tcsh" in done.stderr
