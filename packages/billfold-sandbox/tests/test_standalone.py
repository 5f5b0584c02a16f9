"""The sandbox on its own: its console script serves, the official SDK works against it, and it
loads nothing of billfold (nor a database, FastAPI or Redis client).

Run from this directory after `pip install '.[test]'` (CI: `.ci/run`); billfold's own
`tests/sandbox/` covers every resource in depth.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import stripe

KEY = "sk_test_standalone"
FOREIGN = ("billfold", "sqlalchemy", "fastapi", "asyncpg", "redis", "stripe")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`billfold-sandbox serve` (the console script) on a free port, once it answers."""
    port = _free_port()
    script = Path(sys.executable).with_name("billfold-sandbox")
    state = tmp_path_factory.mktemp("state") / "sandbox.json"
    process = subprocess.Popen(
        [str(script), "serve", "--port", str(port), "--state-file", str(state), "--api-key", KEY]
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                httpx.get(url + "/v1/customers", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError("billfold-sandbox serve did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _client(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        KEY,
        base_addresses={"api": url},
        http_client=stripe.HTTPXClient(allow_sync_methods=True),
        max_network_retries=0,
    )


def test_the_package_loads_nothing_of_billfold() -> None:
    code = (
        "import sys, billfold_sandbox, billfold_sandbox.app, billfold_sandbox.cli\n"
        "from billfold_sandbox.resources import RESOURCE_MODULES\n"
        "import importlib\n"
        "[importlib.import_module(m) for m in RESOURCE_MODULES]\n"
        f"print(','.join(m for m in sys.modules if m.split('.')[0] in {FOREIGN!r}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_the_emulated_api_version_is_the_sandboxs_own(served: str) -> None:
    from billfold_sandbox.version import API_VERSION

    client = _client(served)
    client.v1.customers.create(params={"email": "ada@example.com"})
    event = client.v1.events.list(params={"limit": 1}).data[0]
    assert event.type == "customer.created"
    assert event.api_version == API_VERSION


def test_the_sdk_pays_and_refunds_against_the_console_script(served: str) -> None:
    client = _client(served)
    customer = client.v1.customers.create(params={"email": "grace@example.com"})
    intent = client.v1.payment_intents.create(
        params={
            "amount": 2000,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
            "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
        }
    )
    assert intent.status == "succeeded"
    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 500})
    assert refund.status == "succeeded"
    with pytest.raises(stripe.CardError) as declined:
        client.v1.payment_intents.create(
            params={
                "amount": 2000,
                "currency": "usd",
                "payment_method": "pm_card_chargeDeclined",
                "confirm": True,
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            }
        )
    assert declined.value.code == "card_declined"


def test_only_the_given_key_is_accepted(served: str) -> None:
    answer = httpx.get(served + "/v1/customers", auth=("sk_test_other", ""))
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "invalid_request_error"
