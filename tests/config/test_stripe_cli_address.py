"""`billfold stripe sync|reconcile` find the server's embedded sandbox where `billfold serve`
listens (any port, from any directory), and say in one sentence what they tried when it is not
there."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.config.cli_support import BILLFOLD, run_billfold
from tests.sandbox_fixtures import free_port

JWT = {"BILLFOLD_JWT_SECRET": "s" * 40}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """`billfold serve --port P` on its own data dir, in sandbox mode."""
    data = tmp_path / "data"
    port = free_port()
    env = {"BILLFOLD_DATA_DIR": str(data), **JWT}
    base = run_billfold("db", "upgrade", cwd=tmp_path, env=env)
    assert base.returncode == 0, base.stderr
    process = subprocess.Popen(
        [BILLFOLD, "serve", "--port", str(port)],
        cwd=tmp_path,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("BILLFOLD_", "STRIPE_"))},
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):  # up to a minute on a busy machine: a condition, not a timing
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("billfold serve did not come up")
        yield data, port
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_sync_and_reconcile_reach_the_server_on_another_port(
    served: tuple[Path, int], tmp_path: Path
) -> None:
    data, _port = served
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"BILLFOLD_DATA_DIR": str(data), **JWT}
    synced = run_billfold("stripe", "sync", cwd=elsewhere, env=env)
    assert synced.returncode == 0, synced.stderr
    assert "events read" in synced.stdout
    reconciled = run_billfold("stripe", "reconcile", cwd=elsewhere, env=env)
    assert reconciled.returncode == 0, reconciled.stderr


def test_unreachable_sandbox_is_one_sentence_naming_the_address(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = {"BILLFOLD_DATA_DIR": str(tmp_path / "d"), "BILLFOLD_PORT": str(port), **JWT}
    assert run_billfold("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    result = run_billfold("stripe", "sync", cwd=tmp_path, env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"http://127.0.0.1:{port}/stripe-sandbox" in lines[0]
    assert "BILLFOLD_PORT" in lines[0] and "billfold serve" in lines[0]
