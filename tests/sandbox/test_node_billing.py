"""Billing with the official Node `stripe` SDK: subscriptions, a test clock, Checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.sandbox_fixtures import SandboxServer

NODE_DIR = Path(__file__).parent / "node"


def test_node_sdk_drives_billing(sandbox_server: SandboxServer) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "stripe").exists():
        if os.environ.get("BILLFOLD_REQUIRE_NODE") == "1":
            pytest.fail("node and tests/sandbox/node/node_modules are required (CI)")
        pytest.skip("needs node and `npm install` in tests/sandbox/node")
    done = subprocess.run(
        [node, str(NODE_DIR / "billing_sdk.mjs"), sandbox_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    feb_1 = 1_767_225_600 + 31 * 86_400  # the test clock starts on 2026-01-01
    assert (result["status"], result["periodEnd"], result["paid"]) == ("active", feb_1, 4000)
    assert result["cancelAt"] == feb_1
    assert result["after"] == "canceled"
    assert result["session"] == "complete"
    assert result["trial"] == ["trialing", "premium"]
    assert len(result["lineItems"]) == 1
