"""``squall dev`` as an action author runs it: a subprocess watching a file, updating the
action on the session's standalone at each save and invoking it with ``-p`` parameters."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _standalone import Standalone, clean_env

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0
CODE = (
    "function main(args) {\n"
    "  console.log('v%d for ' + args.who);\n"
    "  return { v: %d, who: args.who };\n"
    "}\n"
)
V1 = CODE % (1, 1)
V2 = CODE % (2, 2)
DEV = (sys.executable, "-m", "squall.cli.main", "dev")


def dev_args(standalone: Standalone, *args: str) -> list[str]:
    wskprops = str(standalone.home / "wskprops")
    return [*DEV, "--wskprops", wskprops, *args]


class Lines:
    """The lines a process prints, read by a thread so the test can wait on them."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def close(self) -> None:
        """Stop the process if it still runs, then close its pipe once read to the end."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(DEADLINE_S)
        assert self.process.stdout is not None
        self.process.stdout.close()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, wanted: Callable[[str], bool]) -> str:
        """The next line for which ``wanted`` is true; fails after the deadline or at EOF."""
        while True:
            try:
                line = self._queue.get(timeout=DEADLINE_S)
            except queue.Empty:
                raise AssertionError(f"nothing wanted within {DEADLINE_S} s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"squall dev ended: {self.seen}")
            self.seen.append(line)
            if wanted(line):
                return line

    def result(self) -> dict[str, object]:
        """The JSON result printed after an ``activation ...`` line."""
        self.wait_for(lambda line: line.startswith("activation "))
        text = [self.wait_for(lambda line: True)]
        while text[-1] != "}":
            text.append(self.wait_for(lambda line: True))
        parsed: dict[str, object] = json.loads("\n".join(text))
        return parsed


@pytest.fixture
def action_file(tmp_path: Path) -> Path:
    path = tmp_path / "greet.js"
    path.write_text(V1)
    return path


@pytest.fixture
def running(
    standalone: Standalone, action_file: Path, unique: Callable[[str], str]
) -> Iterator[tuple[Lines, str]]:
    name = unique("devGreet")
    process = subprocess.Popen(
        dev_args(standalone, str(action_file), "--name", name, "-p", "who", "tester"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=clean_env(),
    )
    lines = Lines(process)
    try:
        yield lines, name
    finally:
        lines.close()


def test_each_save_updates_and_invokes(
    running: tuple[Lines, str], action_file: Path, standalone: Standalone
) -> None:
    lines, name = running
    # Given squall dev started on the file: it deploys and invokes it with the parameters
    lines.wait_for(lambda line: f"updated {name} (version 0.0.1" in line)
    assert lines.result() == {"v": 1, "who": "tester"}
    lines.wait_for(lambda line: "v1 for tester" in line)  # the logs follow the result
    # When the file is saved with new code
    action_file.write_text(V2)
    # Then the action is updated and the new result and logs are shown
    lines.wait_for(lambda line: f"updated {name} (version 0.0.2" in line)
    assert lines.result() == {"v": 2, "who": "tester"}
    lines.wait_for(lambda line: "v2 for tester" in line)
    # And the platform holds the new code
    with standalone.client() as client:
        stored = client.get(f"/namespaces/_/actions/{name}").json()
    assert stored["exec"]["code"] == V2
    # When Ctrl-C is pressed / Then it stops cleanly
    lines.process.send_signal(signal.SIGINT)
    lines.wait_for(lambda line: line == "stopped")
    assert lines.process.wait(DEADLINE_S) == 0


def test_sigterm_stops_cleanly(running: tuple[Lines, str]) -> None:
    lines, name = running
    # Given squall dev running
    lines.wait_for(lambda line: f"updated {name}" in line)
    # When it gets SIGTERM / Then it says so and exits 0
    lines.process.send_signal(signal.SIGTERM)
    lines.wait_for(lambda line: line == "stopped")
    assert lines.process.wait(DEADLINE_S) == 0


def test_a_refused_update_is_reported(
    standalone: Standalone, action_file: Path, unique: Callable[[str], str]
) -> None:
    # When the platform refuses the action (an unknown kind)
    name = unique("bad")
    done = subprocess.run(
        dev_args(standalone, str(action_file), "--name", name, "--kind", "cobol:1", "--once"),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
        timeout=DEADLINE_S,
        check=False,
    )
    # Then its error is shown as 'squall action update' shows it
    assert (
        f"Unable to update action '{name}': The specified runtime 'cobol:1' is not supported"
        in done.stderr
    )


def test_runs_straight_after_standalone(
    standalone: Standalone, action_file: Path, unique: Callable[[str], str], tmp_path: Path
) -> None:
    # Given no wskprops of the user's own (an empty HOME, no WSK_CONFIG_FILE), only the
    # file the standalone wrote into its home
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env({"HOME": str(home), "SQUALL_HOME": str(standalone.home)})
    env.pop("WSK_CONFIG_FILE", None)
    name = unique("devFresh")
    # When squall dev runs once with a parameter
    done = subprocess.run(
        [*DEV, str(action_file), "--name", name, "-p", "who", "fresh", "--once"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
        timeout=DEADLINE_S,
        check=False,
    )
    # Then it deployed to that standalone and shows the result
    assert done.returncode == 0, done.stderr
    assert f"updated {name} (version 0.0.1" in done.stdout
    assert '"who": "fresh"' in done.stdout
