"""`billfold serve` starts small: what a fresh interpreter has imported once the app is built
(no timing: which modules are loaded), and what `serve --workers`' parent process holds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.config.cli_support import BILLFOLD
from tests.sandbox_fixtures import free_port

# Never imported by the server, whatever its configuration (Redis: only with BILLFOLD_REDIS_URL).
NEVER = ("alembic", "mako", "schemathesis", "hypothesis", "pytest", "redis")
# Imported where first used (a Stripe call or webhook, a token signed or checked), not at start.
FIRST_USE = ("stripe", "jwt", "cryptography")
# Only the embedded sandbox needs these.
SANDBOX = ("billfold_sandbox", "httpx")

BUILD_APP = """
import sys
from billfold.app import create_app
from billfold.config import Settings
extra = dict(arg.split("=", 1) for arg in sys.argv[2:])
settings = Settings(jwt_secret="j" * 40, data_dir=sys.argv[1], environment="test", **extra)
app = create_app(settings)
print(" ".join(sorted(name for name in sys.modules if "." not in name)))
"""


def top_level_modules_after_create_app(data_dir: Path, *settings: str) -> set[str]:
    # A fresh interpreter: the test process itself has imported everything.
    loaded = subprocess.run(
        [sys.executable, "-c", BUILD_APP, str(data_dir), *settings],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(loaded.split())


def test_with_a_live_key_the_app_loads_no_sandbox_and_no_tooling(tmp_path: Path) -> None:
    loaded = top_level_modules_after_create_app(
        tmp_path, "stripe_secret_key=sk_test_live_start", "stripe_webhook_secret=whsec_start"
    )
    assert {"fastapi", "sqlalchemy"} <= loaded  # the probe does see what is imported
    unwanted = set(NEVER + FIRST_USE + SANDBOX)
    assert loaded.isdisjoint(unwanted), sorted(loaded & unwanted)


def test_in_sandbox_mode_the_sandbox_is_mounted_but_not_loaded(tmp_path: Path) -> None:
    # The mounted sandbox is built by the first request under its path (in `billfold serve`,
    # the catalog sync's, once the server listens).
    loaded = top_level_modules_after_create_app(tmp_path)
    unwanted = set(NEVER + FIRST_USE + ("billfold_sandbox",))
    assert loaded.isdisjoint(unwanted), sorted(loaded & unwanted)


def test_the_parent_of_serve_workers_holds_uvicorn_only(tmp_path: Path) -> None:
    # `serve --workers 2` replaces itself with billfold.supervisor once it has checked the
    # settings and the database: the ORM and pydantic's core are mapped in the workers only.
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BILLFOLD_", "STRIPE_"))}
    env = {
        **base,
        "BILLFOLD_DATA_DIR": str(tmp_path),
        "BILLFOLD_JWT_SECRET": "j" * 40,
        "BILLFOLD_EMBEDDED_WORKER": "off",
        "STRIPE_SECRET_KEY": "sk_test_workers",
        "STRIPE_WEBHOOK_SECRET": "whsec_workers",
        "BILLFOLD_STRIPE_API_BASE": "http://127.0.0.1:9",
    }
    process = subprocess.Popen(
        [BILLFOLD, "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve --workers 2 did not answer"
            time.sleep(0.1)
        command = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert b"billfold.supervisor" in command
        maps = Path(f"/proc/{process.pid}/maps").read_text()
        assert "pydantic_core" not in maps
        assert "sqlalchemy" not in maps
        children = [
            int(pid)
            for task in Path(f"/proc/{process.pid}/task").iterdir()
            for pid in (task / "children").read_text().split()
        ]
        served = [Path(f"/proc/{pid}/maps").read_text() for pid in children]
        assert sum("pydantic_core" in worker for worker in served) == 2  # the probe sees them
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
