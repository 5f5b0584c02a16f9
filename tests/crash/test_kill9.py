"""Nothing lost to a crash: `billfold serve` (sandbox mode, PostgreSQL) under a bounded load of
first checkouts, paid through the sandbox's test helper, is killed with SIGKILL at seeded random
moments and restarted. Afterwards every checkout whose payment the sandbox acknowledged is paid
in the sandbox and gives premium in billfold, every account has one Stripe customer, every
Stripe event reached billfold once, and `ledger verify`, `audit verify` and `stripe reconcile`
are clean.

The moments are drawn from a seeded RNG, so a run is repeatable in what it tries, not in where
each kill lands: the checks are invariants that hold wherever it lands."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from billfold.auth.tokens import issue_token
from billfold.config import SANDBOX_MOUNT_PATH, SANDBOX_SECRET_KEY, Settings
from tests.conftest import REQUIRE_PG, _create_pg_database, _drop_pg_database
from tests.sandbox_fixtures import free_port

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

SEED = 20_261_204
KILLS = 4
USERS = 16
JWT_SECRET = "crash-test-secret-that-is-long-enough-for-hs256-0123"
P = "/api/v1/payments"
BILLFOLD = str(Path(sys.executable).with_name("billfold"))
DEADLINE = 240.0  # the whole run gives up after this long (a hang, not a measurement)


class Server:
    """`billfold serve` as a subprocess that can be killed and started again."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [BILLFOLD, "serve", "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + f"{P}/plans", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError("billfold serve did not start:\n" + self.log.read_text())
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def scratch_postgres() -> Iterator[str]:
    try:
        url = asyncio.run(asyncio.wait_for(_create_pg_database(), timeout=15))
    except Exception as exc:
        if REQUIRE_PG:
            raise
        pytest.skip(f"PostgreSQL is not available: {exc}")
    try:
        yield url
    finally:
        asyncio.run(_drop_pg_database(url))


def _sandbox(server: Server, method: str, path: str, **form: Any) -> httpx.Response:
    return httpx.request(
        method,
        server.url + SANDBOX_MOUNT_PATH + path,
        data=form or None,
        headers={"Authorization": f"Bearer {SANDBOX_SECRET_KEY}"},
        timeout=30,
    )


def _pages(server: Server, path: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params = {"limit": "100", **({"starting_after": after} if after else {})}
        response = httpx.get(
            server.url + SANDBOX_MOUNT_PATH + path,
            params=params,
            headers={"Authorization": f"Bearer {SANDBOX_SECRET_KEY}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(page["data"])
        if not page["has_more"]:
            return found
        after = page["data"][-1]["id"]


def _checkout_paid(
    server: Server, settings: Settings, user: str, acknowledged: dict[str, str]
) -> None:
    """Start a checkout and pay it; retried across crashes until the sandbox acknowledged the
    payment (its 200), or a retry finds the session complete."""
    headers = {"Authorization": f"Bearer {issue_token(settings, user)}"}
    session_id: str | None = None
    deadline = time.monotonic() + DEADLINE
    while user not in acknowledged:
        if time.monotonic() > deadline:
            raise AssertionError(f"{user}: no paid checkout before the deadline")
        try:
            if session_id is None:
                plans = httpx.get(server.url + f"{P}/plans", timeout=30).json()["data"]["plans"]
                plan = plans[0]
                response = httpx.post(
                    server.url + f"{P}/create-checkout-session",
                    json={"price_id": plan["stripe_price_id"], "interval": plan["duration"]},
                    headers=headers,
                    timeout=30,
                )
                if response.status_code != 200:
                    time.sleep(0.1)  # e.g. 409 while another request finishes the attempt
                    continue
                session_id = response.json()["data"]["session_id"]
            path = f"/v1/test_helpers/checkout/sessions/{session_id}/complete"
            if _sandbox(server, "POST", path).status_code == 200:
                acknowledged[user] = session_id
                continue
            found = _sandbox(server, "GET", f"/v1/checkout/sessions/{session_id}").json()
            if found.get("status") == "complete":
                acknowledged[user] = session_id  # paid before a crash ate the answer
            elif found.get("status") != "open":
                session_id = None
        except (httpx.TransportError, ValueError, KeyError):
            time.sleep(0.1)  # killed meanwhile: the killer starts it again


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BILLFOLD, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def _billfold_rows(url: str) -> tuple[dict[str, str], dict[str, str | None]]:
    """billfold's inbox (event id -> status) and accounts (user -> Stripe customer)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT id, status FROM stripe_webhook_events"))
            inbox = {event_id: status for event_id, status in rows}
            rows = await conn.execute(
                text("SELECT external_id, stripe_customer_id FROM billing_accounts")
            )
            accounts = {external: customer for external, customer in rows}
    finally:
        await engine.dispose()
    return inbox, accounts


def test_kill_9_under_load_loses_and_doubles_nothing(tmp_path: Path, scratch_postgres: str) -> None:
    rng = random.Random(SEED)
    port = free_port()
    env = {
        **os.environ,
        "NO_COLOR": "1",
        "BILLFOLD_DATA_DIR": str(tmp_path / "data"),
        "BILLFOLD_JWT_SECRET": JWT_SECRET,
        "BILLFOLD_DATABASE_URL": scratch_postgres,
        "BILLFOLD_PORT": str(port),
        "SANDBOX_COMPACT_BYTES": "300000",  # snapshots are written (and killed) under load too
        # A job claimed by a killed server is claimed again once its lease expires.
        "BILLFOLD_JOBS_LEASE_SECONDS": "3",
    }
    for name in ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "BILLFOLD_STRIPE_API_BASE"):
        env.pop(name, None)
    settings = Settings(jwt_secret=JWT_SECRET, environment="test")
    server = Server(env, port, tmp_path / "serve.log")
    server.start()
    acknowledged: dict[str, str] = {}
    pauses = [rng.uniform(0.5, 4.0) for _ in range(KILLS)]
    killed: list[int] = []

    def killer() -> None:
        for pause in pauses:
            time.sleep(pause)
            server.kill()
            killed.append(len(acknowledged))
            server.start()

    thread = threading.Thread(target=killer, name="killer", daemon=True)
    thread.start()
    try:
        user = 0
        while user < USERS or thread.is_alive():  # keep the load on until the last kill
            _checkout_paid(server, settings, f"crash{user}", acknowledged)
            user += 1
            assert user < 10 * USERS, "the kills never came"
        thread.join(timeout=DEADLINE)
        assert len(killed) == KILLS

        # Settle: the sandbox delivers what it owes (resumed after each restart), billfold's
        # worker applies it (a job the kill interrupted, once its lease expires), until every
        # acknowledged payment gives premium and the inbox has nothing left to apply.
        deadline = time.monotonic() + DEADLINE
        missing = list(acknowledged)
        while missing:
            _sandbox(server, "POST", "/v1/test_helpers/sandbox/webhooks/wait")
            missing = []
            for name in acknowledged:
                token = issue_token(settings, name)
                status = httpx.get(
                    server.url + f"{P}/subscription/status",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                ).json()["data"]
                if not status["has_premium"]:
                    missing.append(name)
            assert not missing or time.monotonic() < deadline, f"not settled: {missing}"
            if not missing:
                inbox, _ = asyncio.run(_billfold_rows(scratch_postgres))
                missing = [e for e, status in inbox.items() if status != "processed"]
            if missing:
                time.sleep(0.2)
        idle = _sandbox(server, "POST", "/v1/test_helpers/sandbox/webhooks/wait").json()
        assert idle["idle"] is True

        # Every acknowledged payment is paid in the sandbox, on one subscription.
        for name, session_id in acknowledged.items():
            found = _sandbox(server, "GET", f"/v1/checkout/sessions/{session_id}").json()
            assert (found["status"], found["payment_status"]) == ("complete", "paid"), name
        subscriptions = _pages(server, "/v1/subscriptions")
        live = Counter(s["customer"] for s in subscriptions if s["status"] == "active")
        assert all(count == 1 for count in live.values()), live

        # One Stripe customer per account, and it is the account's.
        customers = _pages(server, "/v1/customers")
        per_account = Counter(c["metadata"].get("billfold_account_id") for c in customers)
        assert all(count == 1 for count in per_account.values()), per_account
        inbox, accounts = asyncio.run(_billfold_rows(scratch_postgres))
        for name in acknowledged:
            assert accounts[name] is not None, name
        linked = {c for c in accounts.values() if c}
        assert linked == {c["id"] for c in customers if c["metadata"].get("billfold_account_id")}

        # Every Stripe event reached billfold and was applied (its id is its key: once).
        stripe_events = _pages(server, "/v1/events")
        assert all(e["pending_webhooks"] == 0 for e in stripe_events)
        assert {e["id"] for e in stripe_events} <= set(inbox)
        assert set(inbox.values()) == {"processed"}

        # The CLI's checks, against the same database and the running server's sandbox.
        for command in (["ledger", "verify"], ["audit", "verify"], ["stripe", "reconcile"]):
            result = _cli(env, *command)
            assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    finally:
        thread.join(timeout=DEADLINE)
        server.stop()
    print(
        f"{len(acknowledged)} paid checkouts, killed after {killed} acknowledged",
        file=sys.stderr,
    )
