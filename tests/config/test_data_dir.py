"""One resolution of the data directory for the server and every CLI command, whatever the
current directory: `billfold token` run elsewhere signs with the secret the server uses."""

from __future__ import annotations

from pathlib import Path

import jwt

from billfold.auth.tokens import signing_secret
from billfold.config import Settings, resolve_data_dir
from tests.config.cli_support import run_billfold


def test_nearest_billfold_directory_in_the_parents(tmp_path: Path) -> None:
    (tmp_path / ".billfold").mkdir()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert (
        resolve_data_dir(cwd=deep, prefix=tmp_path / "nowhere" / "venv") == tmp_path / ".billfold"
    )


def test_beside_the_virtual_environment(tmp_path: Path) -> None:
    clone, elsewhere = tmp_path / "clone", tmp_path / "elsewhere"
    (clone / ".billfold").mkdir(parents=True)
    elsewhere.mkdir()
    assert resolve_data_dir(cwd=elsewhere, prefix=clone / ".venv") == clone / ".billfold"


def test_else_the_current_directory(tmp_path: Path) -> None:
    assert resolve_data_dir(cwd=tmp_path, prefix=tmp_path / "x" / ".venv") == tmp_path / ".billfold"


def test_a_relative_data_dir_is_made_absolute(tmp_path: Path) -> None:
    assert Settings(data_dir=Path("rel")).data_dir.is_absolute()


def test_token_from_a_subdirectory_is_signed_with_the_servers_secret(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".billfold").mkdir(parents=True)
    server = Settings(data_dir=project / ".billfold")  # what `billfold serve` in project uses
    secret = signing_secret(server)
    sub = project / "frontend" / "src"
    sub.mkdir(parents=True)
    result = run_billfold("token", "alice", cwd=sub)
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(
        result.stdout.strip(), secret, algorithms=["HS256"], audience=server.jwt_audience
    )
    assert claims["sub"] == "alice"
    assert not (sub / ".billfold").exists()
