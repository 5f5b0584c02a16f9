"""What a new user gets: the package ships its type marker, and ./scripts/serve installs once."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from importlib import resources
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_package_ships_py_typed() -> None:
    assert resources.files("billfold").joinpath("py.typed").is_file()


def _executable(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_scripts_serve_installs_only_when_pyproject_changes(tmp_path: Path) -> None:
    """A stand-in venv records each pip run; the second start with nothing changed runs none."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "serve", tmp_path / "scripts" / "serve")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "calls.log"
    _executable(bin_dir / "python", f'echo "python $*" >> {log}\n')
    _executable(bin_dir / "billfold", f'echo "billfold $*" >> {log}\n')
    run = [str(tmp_path / "scripts" / "serve"), "--port", "9"]
    env = {**os.environ, "PYTHON": "false"}

    def pip_runs() -> int:
        return sum("-m pip install" in line for line in log.read_text().splitlines())

    subprocess.run(run, cwd="/", env=env, check=True)
    assert pip_runs() == 1
    subprocess.run(run, cwd="/", env=env, check=True)
    assert pip_runs() == 1  # nothing changed: no install
    assert log.read_text().splitlines()[-1] == "billfold serve --port 9"
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    subprocess.run(run, cwd="/", env=env, check=True)
    assert pip_runs() == 2
    # The sandbox's own distribution (installed with billfold) changing reinstalls too.
    sandbox = tmp_path / "packages" / "billfold-sandbox"
    sandbox.mkdir(parents=True)
    (sandbox / "pyproject.toml").write_text("[project]\nname = 's'\n")
    subprocess.run(run, cwd="/", env=env, check=True)
    assert pip_runs() == 3
    assert "-e packages/billfold-sandbox -e ." in log.read_text()
