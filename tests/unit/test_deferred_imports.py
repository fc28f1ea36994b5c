"""uvicorn's supervisors: not imported with uvicorn, uvicorn's own once used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(source: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, cwd=ROOT, timeout=60,
        check=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout))


def test_uvicorn_imports_without_its_supervisors_and_a_use_gets_the_real_one() -> None:
    # Given a fresh interpreter that imports squall, then uvicorn as the server does
    found = run(
        "import json, sys\n"
        "import squall, uvicorn\n"
        "main = sys.modules['uvicorn.main']\n"
        "before = sorted(m for m in ('watchfiles', 'multiprocessing') if m in sys.modules)\n"
        # When uvicorn.run would use a supervisor (workers > 1)
        "config = uvicorn.Config('app:app', workers=2)\n"
        "made = main.Multiprocess(config, sockets=[])\n"
        "from uvicorn.supervisors.multiprocess import Multiprocess\n"
        "import uvicorn.supervisors as package\n"
        "print(json.dumps({'before': before, 'real': type(made) is Multiprocess,\n"
        "    'after': 'multiprocessing' in sys.modules, 'package': type(package).__name__,\n"
        "    'reload': package.ChangeReload.__module__}))\n"
    )
    # Then nothing of them was loaded with uvicorn; the use got uvicorn's own class, and
    # the package is uvicorn's from then on
    assert found["before"] == []
    assert found["real"] is True and found["after"] is True
    assert found["package"] == "module"
    assert found["reload"] == "uvicorn.supervisors.watchfilesreload"


def test_a_submodule_imports_while_the_package_is_deferred() -> None:
    # Given squall and uvicorn imported / When a submodule is imported by its name
    found = run(
        "import json, sys\n"
        "import squall, uvicorn\n"
        "from uvicorn.supervisors.statreload import StatReload\n"
        "print(json.dumps({'name': StatReload.__name__}))\n"
    )
    # Then it is uvicorn's, found through the package's path
    assert found == {"name": "StatReload"}
