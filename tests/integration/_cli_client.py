"""Running the ``squall`` client commands as a user does: a subprocess with its own
``WSK_CONFIG_FILE`` (and a ``HOME`` and working directory of its own, so no
``~/.wskprops`` or ``./.squall/wskprops`` of the machine is read)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _standalone import Standalone, clean_env

COMMAND_DEADLINE_S = 90.0  # above the platform's 60 s blocking wait


@dataclass(frozen=True)
class Result:
    rc: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"rc={self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"


class Wsk:
    """``squall`` with a wskprops file of its own."""

    def __init__(self, home: Path, props: Path) -> None:
        self.home = home
        self.props = props

    @classmethod
    def for_server(cls, server: Standalone, home: Path) -> Wsk:
        props = home / "wskprops"
        props.write_text(f"APIHOST={server.api_host}\nAUTH={server.auth}\n")
        return cls(home, props)

    def env(self) -> dict[str, str]:
        return clean_env(
            {
                "WSK_CONFIG_FILE": str(self.props),
                "HOME": str(self.home),
                "SQUALL_HOME": str(self.home / "no-standalone-here"),
                "COLUMNS": "200",
            }
        )

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "squall.cli.main", *args]

    def run(self, *args: str, rc: int | None = 0) -> Result:
        """Run ``squall ARGS``; assert its exit code is ``rc`` (unless None)."""
        done = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.home,
            timeout=COMMAND_DEADLINE_S,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if rc is not None:
            assert result.rc == rc, f"squall {' '.join(args)}: expected rc={rc}\n{result}"
        return result

    def json(self, *args: str) -> Any:
        """``squall ARGS --json``, decoded."""
        return json.loads(self.run(*args, "--json").out)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env(),
            cwd=self.home,
        )


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


HELLO_JS = (
    "function main(args) {\n"
    "  console.log('hello ' + args.name);\n"
    "  return { greeting: 'Hello ' + (args.name || 'stranger') };\n"
    "}\n"
)
INC_PY = "def main(args):\n    return {'n': args.get('n', 0) + 1}\n"
FAIL_JS = "function main() { return { error: 'nope' }; }\n"
