"""The README's Node example: the official Node `stripe` SDK with host/port/protocol."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.sandbox_fixtures import SandboxServer

NODE_DIR = Path(__file__).parent / "node"


def test_node_sdk_against_the_sandbox(sandbox_server: SandboxServer) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "stripe").exists():
        if os.environ.get("BILLFOLD_REQUIRE_NODE") == "1":
            pytest.fail("node and tests/sandbox/node/node_modules are required (CI)")
        pytest.skip("needs node and `npm install` in tests/sandbox/node")
    done = subprocess.run(
        [node, str(NODE_DIR / "stripe_sdk.mjs"), sandbox_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["replayed"] is True
    assert result["productName"] == "Node plan"
    assert result["lookup"] is True
    assert result["search"] == [result["customer"]]
    assert result["unknown"] == {
        "type": "StripeInvalidRequestError",
        "param": "bogus",
        "status": 400,
    }
    assert result["signature"] == "evt_node"
