"""The official `@trpc/client` (v11, under Node) calls billfold's `/trpc` unchanged.

billfold runs under uvicorn on a loopback port, first with its Stripe adapter on the sandbox
(events delivered in process), then with the sandbox's own webhook deliveries
(`tests.e2e_fixtures`); the Node script
(tests/node/trpc_billing.mjs) calls both billing procedures with `httpLink` and batched with
`httpBatchLink`, and prints what the client got. Skipped, visibly, when node or
tests/node/node_modules is missing (`./scripts/test` runs `npm install`), unless
BILLFOLD_REQUIRE_NODE=1, where that fails the test instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from billfold.auth.tokens import issue_token
from billfold.config import Settings
from tests.api.stripe_events import pay_in_sandbox
from tests.e2e_fixtures import BillfoldServer
from tests.sandbox_stripe import SandboxStripe

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "trpc_billing.mjs"
REQUIRE_NODE = os.environ.get("BILLFOLD_REQUIRE_NODE") == "1"
APP = "https://app.example.com"


def _node_or_skip() -> str:
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed"
    elif not (NODE_DIR / "node_modules" / "@trpc" / "client").is_dir():
        missing = "tests/node/node_modules is missing (run: cd tests/node && npm install)"
    if missing is not None:
        if REQUIRE_NODE:
            pytest.fail(f"the tRPC client test needs Node (BILLFOLD_REQUIRE_NODE=1): {missing}")
        pytest.skip(missing)
    assert node is not None
    return node


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """`app` under uvicorn on 127.0.0.1 and a free port, in this event loop (so it shares the
    test's database engine); yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(1000):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            raise RuntimeError("billfold did not start under uvicorn")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)
        sock.close()


async def _run_node(node: str, *args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        *args,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, stderr.decode()
    result: dict[str, Any] = json.loads(stdout)
    return result


def _not_found(outcome: dict[str, Any]) -> None:
    assert outcome["ok"] is False, outcome
    error = outcome["error"]
    assert error["message"] == "no billing record for this account yet: start a checkout first"
    assert error["code"] == -32004
    assert error["data"] == {
        "code": "NOT_FOUND",
        "httpStatus": 404,
        "path": "billing.createCustomerPortalSession",
    }


async def test_official_trpc_client_calls_billfold(
    billing_app: Any,
    billing_settings: Settings,
    stripe_world: SandboxStripe,
    synced: dict[str, str],
) -> None:
    node = _node_or_skip()
    alice = issue_token(billing_settings, "alice")
    bob = issue_token(billing_settings, "bob")
    async with served(billing_app) as url:
        out = await _run_node(
            node,
            url,
            alice,
            "--batch-token",
            bob,
            "--product",
            "billfold_premium",
            "--app-url",
            APP,
        )

    # httpLink: one POST per call, token in the input.
    single = out["httpLink"]
    _not_found(single["portalBeforeCheckout"])
    checkout = single["checkout"]
    assert checkout["ok"] is True, checkout
    assert set(checkout["data"]) == {"id", "url"}
    session = stripe_world.sessions[checkout["data"]["id"]]
    assert checkout["data"]["url"] == session["url"]
    assert session["mode"] == "subscription"
    assert session["allow_promotion_codes"] is True
    assert session["price"] == synced["billfold_premium_monthly_usd"]
    assert session["success_url"] == f"{APP}/success"
    portal = single["portalAfterCheckout"]
    assert portal["ok"] is True, portal
    assert set(portal["data"]) == {"url"}
    assert stripe_world.portal_customer(portal["data"]["url"]) == session["customer"]
    assert [(r["method"], r["status"]) for r in single["requests"]] == [
        ("POST", 404),
        ("POST", 200),
        ("POST", 200),
    ]
    assert all("batch=1" not in r["url"] for r in single["requests"])

    # httpBatchLink: [portal, checkout] in one request, run in order (207: mixed results).
    batch = out["httpBatchLink"]
    before, bob_checkout = batch["portalThenCheckout"]
    _not_found(before)
    assert bob_checkout["ok"] is True, bob_checkout
    assert bob_checkout["data"]["id"] != checkout["data"]["id"]
    (request,) = batch["requests"]
    assert request["method"] == "POST"
    assert request["status"] == 207
    assert request["url"] == (
        f"{url}/trpc/billing.createCustomerPortalSession,billing.createCheckoutSession?batch=1"
    )
    # ...then two portal calls authenticated by the Authorization header instead of the body.
    assert [o["ok"] for o in batch["portalTwiceWithHeaderToken"]] == [True, True]
    assert [(r["method"], r["status"]) for r in batch["headerRequests"]] == [("POST", 200)]
    bob_customer = stripe_world.sessions[bob_checkout["data"]["id"]]["customer"]
    assert bob_customer != session["customer"]
    bobs_portal = batch["portalTwiceWithHeaderToken"][0]["data"]["url"]
    assert stripe_world.portal_customer(bobs_portal) == bob_customer


async def test_official_trpc_client_against_the_stripe_sandbox(
    billfold_server: BillfoldServer,
) -> None:
    """The same client calls with billfold on the real SDK and the sandbox: the hosted pages
    answer, and paying the Checkout gives the account premium."""
    node = _node_or_skip()
    server = billfold_server
    alice = issue_token(server.settings, "alice")
    bob = issue_token(server.settings, "bob")
    out = await _run_node(
        node, server.url, alice, "--batch-token", bob, "--product", "premium", "--app-url", APP
    )
    single = out["httpLink"]
    _not_found(single["portalBeforeCheckout"])
    checkout = single["checkout"]["data"]
    assert checkout["id"].startswith("cs_")
    portal = single["portalAfterCheckout"]["data"]["url"]
    before, bob_checkout = out["httpBatchLink"]["portalThenCheckout"]
    _not_found(before)
    assert bob_checkout["data"]["id"].startswith("cs_")
    assert [o["ok"] for o in out["httpBatchLink"]["portalTwiceWithHeaderToken"]] == [True, True]

    stripe_session = await asyncio.to_thread(
        server.sandbox.client().v1.checkout.sessions.retrieve, checkout["id"]
    )
    assert stripe_session.mode == "subscription"
    assert stripe_session.allow_promotion_codes is True
    assert stripe_session.url == checkout["url"]
    async with httpx.AsyncClient(timeout=30) as http:
        for page in (checkout["url"], portal):
            assert (await http.get(page)).status_code == 200, page

    # The customer pays: the sandbox's webhooks reach billfold, and alice has premium.
    await pay_in_sandbox(server, checkout["id"])
    async with server.http() as http:
        current = await http.get("/api/subscriptions/current", headers=server.bearer("alice"))
    assert current.json()["hasPremium"] is True
    assert current.json()["subscription"]["plan"] == "premium"
