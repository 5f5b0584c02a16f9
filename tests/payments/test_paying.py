"""Dues, pay-balance with the ordered fallback, one-off charges (3-D Secure), bank debits,
refunds and disputes, over HTTP against the sandbox, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

import httpx
from sqlalchemy import select

from billfold.app import create_app
from billfold.config import Settings
from billfold.container import Container
from billfold.db.engine import Database
from billfold.ledger.models import LedgerAccount
from billfold.ledger.verify import verify_ledger
from tests.payments.conftest import WEBHOOK, Billing
from tests.subscriptions.fixtures import bearer, deliver

PAYMENT_KEYS = {
    "id",
    "kind",
    "amount",
    "currency",
    "description",
    "status",
    "payment_method_id",
    "payment_intent_id",
    "failure_code",
    "failure_message",
    "refunded_amount",
    "dispute_id",
    "dispute_status",
    "dispute_reason",
    "client_secret",
    "attempts",
    "created_at",
    "updated_at",
}


async def _ledger_clean(database: Database) -> None:
    async with database.read() as session:
        assert await verify_ledger(session) == []


async def test_config_never_shows_a_secret(alice: Billing) -> None:
    body = await alice.call("GET", "/config")
    assert body == {"publishable_key": "pk_test_billfold", "default_currency": "usd"}


async def test_charges_accumulate_as_dues(alice: Billing) -> None:
    first = await alice.charge(1250)
    assert set(first) == {"id", "amount", "currency", "description", "dues"}
    assert first["dues"] == [{"currency": "usd", "settled": 1250, "pending": 0, "total": 1250}]
    await alice.charge(250)
    assert await alice.dues() == {"settled": 1500, "pending": 0}
    for amount, currency, field in (
        (0, "usd", "amount"),
        (-5, "usd", "amount"),
        (12.5, "usd", "amount"),
        (10**12, "usd", "amount"),
        (100, "xyz", "currency"),
    ):
        refused = await alice.call(
            "POST", "/_dev/add-charge", expect=400, json={"amount": amount, "currency": currency}
        )
        assert refused["error"]["field"] == field
    assert await alice.dues() == {"settled": 1500, "pending": 0}
    page = await alice.call("GET", "/ledger", params={"limit": 1})
    [newest] = page["entries"]
    assert (newest["kind"], newest["amount"], newest["balance_after"]) == ("dues_charge", 250, 1500)
    older = await alice.call("GET", "/ledger", params={"limit": 1, "cursor": page["next_cursor"]})
    assert older["entries"][0]["balance_after"] == 1250 and older["next_cursor"] is None


async def test_the_balance_answers_both_documents(alice: Billing) -> None:
    """`GET /api/billing/balance` keeps document 001's three fields and adds 003's dues."""
    await alice.charge(1250)
    body = await alice.call("GET", "/balance")
    assert (body["credits"], body["balance"]) == (0, 0)
    assert body["currency"] in ("EUR", "USD")
    assert body["dues"] == [{"currency": "usd", "settled": 1250, "pending": 0, "total": 1250}]


async def test_pay_balance_falls_back_to_the_next_method(
    alice: Billing, database: Database
) -> None:
    failing = await alice.card("pm_card_chargeCustomerFail")
    visa = await alice.card("pm_card_visa")
    await alice.charge(1250)
    paid = await alice.call("POST", "/pay-balance", json={})
    assert set(paid) == PAYMENT_KEYS
    assert (paid["status"], paid["amount"], paid["currency"], paid["payment_method_id"]) == (
        "succeeded",
        1250,
        "usd",
        visa,
    )
    assert [(a["payment_method_id"], a["status"], a["decline_code"]) for a in paid["attempts"]] == [
        (failing, "declined", "generic_decline"),
        (visa, "succeeded", None),
    ]
    assert await alice.dues() == {"settled": 0, "pending": 0}
    await alice.events()  # the intents' own events: nothing moves twice
    assert await alice.dues() == {"settled": 0, "pending": 0}
    [listed] = await alice.payments()
    assert listed["id"] == paid["id"] and len(listed["attempts"]) == 2
    # A generic decline does not block the card: the next payment tries it first again.
    await alice.charge(300)
    again = await alice.call("POST", "/pay-balance")
    assert [a["payment_method_id"] for a in again["attempts"]] == [failing, visa]
    refused = await alice.call("POST", "/pay-balance", expect=409)
    assert refused["error"]["message"] == "nothing is owed"
    await _ledger_clean(database)


async def test_a_lost_card_is_never_retried(alice: Billing) -> None:
    lost = await alice.card("pm_card_visa")
    other = await alice.card("pm_card_mastercard")
    alice.card_reported_lost(lost)
    await alice.charge(800)
    paid = await alice.call("POST", "/pay-balance")
    assert [(a["payment_method_id"], a["decline_code"]) for a in paid["attempts"]] == [
        (lost, "lost_card"),
        (other, None),
    ]
    methods = {m["id"]: m for m in await alice.methods()}
    assert methods[lost]["blocked_reason"] == "lost_card"
    assert not methods[lost]["is_default"] and methods[other]["is_default"]
    await alice.charge(900)
    again = await alice.call("POST", "/pay-balance")
    assert [a["payment_method_id"] for a in again["attempts"]] == [other]


async def test_every_method_declining_reopens_the_dues(alice: Billing) -> None:
    await alice.card("pm_card_chargeCustomerFail")
    await alice.charge(700)
    failed = await alice.call("POST", "/pay-balance")
    assert (failed["status"], failed["failure_code"]) == ("failed", "generic_decline")
    assert await alice.dues() == {"settled": 700, "pending": 0}


async def test_a_bank_debit_that_fails_reopens_the_dues(alice: Billing, database: Database) -> None:
    pm = await alice.bank("000222222227")  # debits are returned: insufficient funds
    await alice.charge(5000)
    paid = await alice.call("POST", "/pay-balance")
    assert (paid["status"], paid["payment_method_id"]) == ("processing", pm)
    assert await alice.dues() == {"settled": 0, "pending": 5000}
    await alice.call("POST", "/pay-balance", expect=409)  # pending: nothing to pay now
    alice.sandbox(f"/v1/test_helpers/payment_intents/{paid['payment_intent_id']}/settle")
    await alice.events()
    [payment] = await alice.payments()
    assert (payment["status"], payment["failure_code"]) == ("failed", "insufficient_funds")
    assert await alice.dues() == {"settled": 5000, "pending": 0}
    await _ledger_clean(database)


async def test_a_bank_debit_that_succeeds_settles_the_dues(alice: Billing) -> None:
    await alice.bank()
    await alice.charge(5000)
    paid = await alice.call("POST", "/pay-balance")
    assert paid["status"] == "processing"
    alice.sandbox(f"/v1/test_helpers/payment_intents/{paid['payment_intent_id']}/settle")
    await alice.events()
    assert (await alice.payments())[0]["status"] == "succeeded"
    assert await alice.dues() == {"settled": 0, "pending": 0}


async def test_charge_once_with_3d_secure(alice: Billing, database: Database) -> None:
    # This card asks for 3-D Secure on every payment, and when it is saved.
    setup = await alice.call(
        "POST", "/setup-intent/card", json={"payment_method_id": "pm_card_authenticationRequired"}
    )
    assert setup["status"] == "requires_action"
    alice.sandbox(f"/v1/test_helpers/setup_intents/{setup['setup_intent_id']}/authenticate")
    await alice.events()
    pm = setup["payment_method_id"]
    assert [m["id"] for m in await alice.methods()] == [pm]
    body = await alice.call(
        "POST",
        "/charge-once",
        json={
            "amount": 1500,
            "currency": "usd",
            "description": "Setup fee",
            "payment_method_id": pm,
        },
    )
    assert body["status"] == "requires_action" and body["client_secret"]
    assert body["client_secret"].startswith(body["payment_intent_id"])
    assert await alice.dues() == {"settled": 0, "pending": 1500}
    alice.sandbox(
        f"/v1/test_helpers/payment_intents/{body['payment_intent_id']}/authenticate",
        outcome="succeed",
    )
    await alice.events()
    [payment] = await alice.payments()
    assert (payment["status"], payment["kind"], payment["description"]) == (
        "succeeded",
        "one_off",
        "Setup fee",
    )
    assert await alice.dues() == {"settled": 0, "pending": 0}
    kinds = [e["kind"] for e in (await alice.call("GET", "/ledger"))["entries"]]
    assert kinds == ["payment_succeeded", "one_off_charge"]
    await _ledger_clean(database)


async def test_charge_once_refusals(alice: Billing, bob: Billing) -> None:
    await alice.call("POST", "/charge-once", expect=402, json={"amount": 100, "currency": "usd"})
    bobs = await bob.card()
    await alice.call(
        "POST",
        "/charge-once",
        expect=404,
        json={"amount": 100, "currency": "usd", "payment_method_id": bobs},
    )
    refused = await alice.call(
        "POST", "/charge-once", expect=400, json={"amount": 10.5, "currency": "usd"}
    )
    assert refused["error"]["field"] == "amount"
    assert await bob.payments() == []
    paid = await alice.call(
        "POST", "/charge-once", expect=402, json={"amount": 100, "currency": "usd"}
    )
    assert paid["error"]["code"] == "payment_required"


def _event(kind: str, obj: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "id": f"evt_test_{kind.replace('.', '_')}_{n}",
        "object": "event",
        "type": kind,
        "api_version": "2026-10-28",
        "created": int(time.time()) + n,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": obj},
    }


async def test_a_refund_and_a_lost_dispute(alice: Billing, database: Database) -> None:
    await alice.card()
    await alice.charge(2000)
    paid = await alice.call("POST", "/pay-balance")
    assert paid["status"] == "succeeded"
    alice.world.client.v1.refunds.create(
        {"payment_intent": paid["payment_intent_id"], "amount": 500}
    )
    await alice.events()
    [payment] = await alice.payments()
    assert payment["refunded_amount"] == 500
    entries = (await alice.call("GET", "/ledger"))["entries"]
    assert (entries[0]["kind"], entries[0]["account"], entries[0]["amount"]) == (
        "payment_refunded",
        "refunded",
        500,
    )

    # The sandbox has no disputes: Stripe-shaped events, signed, to the webhook route.
    intent = alice.world.client.v1.payment_intents.retrieve(paid["payment_intent_id"])
    dispute = {
        "id": "dp_test_1",
        "object": "dispute",
        "amount": 1500,
        "currency": "usd",
        "charge": intent.latest_charge,
        "payment_intent": intent.id,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    for n, (kind, status) in enumerate(
        [("charge.dispute.created", "needs_response"), ("charge.dispute.closed", "lost")]
    ):
        response = await deliver(
            alice.api, _event(kind, {**dispute, "status": status}, n), path=WEBHOOK
        )
        assert response.status_code == 200, response.text
    # A repeat of the first event after the close changes nothing.
    await deliver(alice.api, _event("charge.dispute.created", dispute, 0), path=WEBHOOK)
    [payment] = await alice.payments()
    assert (payment["dispute_id"], payment["dispute_status"], payment["dispute_reason"]) == (
        "dp_test_1",
        "lost",
        "fraudulent",
    )
    assert await alice.dues() == {"settled": 1500, "pending": 0}
    kinds = [e["kind"] for e in (await alice.call("GET", "/ledger"))["entries"]]
    assert kinds[0] == "dispute_lost"
    await _ledger_clean(database)


async def test_a_won_dispute_reinstates(alice: Billing) -> None:
    await alice.card()
    await alice.charge(2000)
    paid = await alice.call("POST", "/pay-balance")
    dispute = {
        "id": "dp_test_2",
        "object": "dispute",
        "amount": 2000,
        "currency": "usd",
        "charge": None,
        "payment_intent": paid["payment_intent_id"],
        "reason": "general",
    }
    for n, status in enumerate(["needs_response", "under_review", "won"]):
        kind = "charge.dispute.closed" if status == "won" else "charge.dispute.updated"
        response = await deliver(
            alice.api, _event(kind, {**dispute, "status": status}, n), path=WEBHOOK
        )
        assert response.status_code == 200
    [payment] = await alice.payments()
    assert payment["dispute_status"] == "won" and payment["status"] == "succeeded"
    assert await alice.dues() == {"settled": 0, "pending": 0}


async def test_dev_add_charge_is_404_outside_development(
    billing_settings: Settings, database: Database, clock: Any, gateway: Any
) -> None:
    settings = billing_settings.model_copy(update={"environment": "test"})
    app = create_app(settings, database=database, clock=clock, stripe_gateway=gateway)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://billfold.test") as api:
        for headers in (bearer(settings, "alice"), {}):
            response = await api.post(
                "/api/billing/_dev/add-charge",
                headers=headers,
                json={"amount": 100, "currency": "usd"},
            )
            assert response.status_code == 404, response.text


async def test_the_host_backend_adds_charges_with_an_api_key(
    api: httpx.AsyncClient, alice: Billing, container: Container
) -> None:
    from billfold.auth.apikeys import create_api_key

    async with container.db.transaction() as session:
        created = await create_api_key(session, "backend", now=container.clock.now())
    headers = {
        "X-API-Key": created.secret,
        "X-Billfold-Account": "user:alice",
        "Idempotency-Key": "usage-may",
    }
    body = {"amount": 420, "currency": "usd", "description": "API usage, May"}
    first = await api.post("/api/billing/charges", headers=headers, json=body)
    assert first.status_code == 200, first.text
    again = await api.post("/api/billing/charges", headers=headers, json=body)
    assert again.json()["id"] == first.json()["id"]
    assert await alice.dues() == {"settled": 420, "pending": 0}
    user = await alice.call("POST", "/charges", expect=403, json=body)
    assert user["error"]["code"] == "forbidden"


async def test_checkout_session_in_payment_mode(alice: Billing, database: Database) -> None:
    body = await alice.call(
        "POST",
        "/checkout_session",
        json={"amount": 2500, "currency": "usd", "description": "Balance top-up"},
    )
    assert set(body) == {"id", "url"}
    session = alice.world.sessions[body["id"]]
    assert (session["mode"], session["amount_total"], session["currency"]) == (
        "payment",
        2500,
        "usd",
    )
    assert session["success_url"].startswith("https://app.example.com/")
    [open_payment] = await alice.payments()
    assert (open_payment["status"], open_payment["kind"]) == ("open", "checkout")
    alice.world.complete_checkout(body["id"])
    await alice.events()
    [payment] = await alice.payments()
    assert (payment["status"], payment["amount"]) == ("succeeded", 2500)
    assert payment["payment_intent_id"] == session["payment_intent"] or payment["payment_intent_id"]
    kinds = [e["kind"] for e in (await alice.call("GET", "/ledger"))["entries"]]
    assert kinds == ["payment_succeeded", "one_off_charge"]
    assert await alice.dues() == {"settled": 0, "pending": 0}
    for wrong, field in (
        ({"amount": 0}, "amount"),
        ({"amount": 100, "currency": "zzz"}, "currency"),
        ({"amount": 100, "success_url": "https://evil.example/x"}, "success_url"),
    ):
        refused = await alice.call("POST", "/checkout_session", expect=400, json=wrong)
        assert refused["error"]["field"] == field
    await _ledger_clean(database)


async def test_an_unpaid_checkout_that_expires_releases_its_payment(
    alice: Billing, database: Database
) -> None:
    key = {"Idempotency-Key": "pay-dues-march"}
    order = {"amount": 4200, "currency": "usd", "description": "March dues"}
    body = await alice.call("POST", "/checkout_session", json=order, headers=key)
    [reserved] = await alice.payments()
    assert (reserved["status"], reserved["amount"]) == ("open", 4200)
    alice.world.advance_clock(24 * 3600 + 1)  # Checkout's sessions expire after 24 hours
    assert alice.world.sessions[body["id"]]["status"] == "expired"
    await alice.events()
    await alice.events()  # a repeated delivery changes nothing
    [released] = await alice.payments()
    assert (released["id"], released["status"], released["failure_code"]) == (
        reserved["id"],
        "expired",
        "expired",
    )
    assert (await alice.call("GET", "/ledger"))["entries"] == []  # nothing was posted
    assert await alice.dues() == {"settled": 0, "pending": 0}
    # Its key is spent; a new one starts a new session, which pays as usual.
    again = await alice.call("POST", "/checkout_session", expect=409, json=order, headers=key)
    assert "expired" in again["error"]["message"]
    fresh = await alice.call(
        "POST",
        "/checkout_session",
        json=order,
        headers={"Idempotency-Key": "pay-dues-march-2"},
    )
    alice.world.complete_checkout(fresh["id"])
    await alice.events()
    assert sorted(p["status"] for p in await alice.payments()) == ["expired", "succeeded"]
    await _ledger_clean(database)


async def _disputed_payment(alice: Billing) -> tuple[dict[str, Any], str]:
    """Dues paid with Stripe's dispute test card: the sandbox disputes the charge at once."""
    await alice.card("pm_card_createDispute")
    await alice.charge(3000)
    paid = await alice.call("POST", "/pay-balance")
    assert paid["status"] == "succeeded"
    await alice.events()
    [dispute] = alice.world.client.v1.disputes.list(
        {"payment_intent": paid["payment_intent_id"]}
    ).data
    [payment] = await alice.payments()
    assert (payment["dispute_id"], payment["dispute_status"], payment["dispute_reason"]) == (
        dispute.id,
        "needs_response",
        "fraudulent",
    )
    assert await alice.dues() == {"settled": 0, "pending": 0}  # withdrawn, not yet owed
    return payment, dispute.id


async def test_a_sandbox_dispute_lost_reopens_the_dues(alice: Billing, database: Database) -> None:
    payment, dispute_id = await _disputed_payment(alice)
    alice.world.client.v1.disputes.close(dispute_id)  # accepted: lost
    await alice.events()
    [after] = await alice.payments()
    assert (after["id"], after["status"], after["dispute_status"]) == (
        payment["id"],
        "succeeded",
        "lost",
    )
    assert await alice.dues() == {"settled": 3000, "pending": 0}
    kinds = [e["kind"] for e in (await alice.call("GET", "/ledger"))["entries"]]
    assert kinds[:1] == ["dispute_lost"]
    await _ledger_clean(database)


async def test_a_sandbox_dispute_won_reinstates(alice: Billing, database: Database) -> None:
    _, dispute_id = await _disputed_payment(alice)
    alice.world.client.v1.disputes.update(
        dispute_id, {"evidence": {"uncategorized_text": "winning_evidence"}}
    )
    await alice.events()
    [after] = await alice.payments()
    assert (after["dispute_status"], after["status"]) == ("won", "succeeded")
    assert await alice.dues() == {"settled": 0, "pending": 0}
    async with database.read() as session:
        assert await verify_ledger(session) == []
        disputes = await session.execute(
            select(LedgerAccount.balance).where(LedgerAccount.name == "disputes")
        )
        assert [int(b) for b in disputes.scalars()] == [0]  # the money came back


async def test_a_checkout_paid_on_the_sandboxs_page_is_a_listed_subscription(
    alice: Billing, synced: dict[str, str]
) -> None:
    """The customer opens the Checkout URL and pays on the sandbox's hosted page (its form,
    a typed test card); the subscription is then listed by `GET /subscriptions`."""
    assert (await alice.call("GET", "/subscriptions")) == {"subscriptions": []}
    body = await alice.call(
        "POST", "/checkout_session", json={"price_id": "billfold_premium_monthly_usd"}
    )
    async with httpx.AsyncClient(timeout=30) as browser:
        page = await browser.get(body["url"])
        assert page.status_code == 200 and "4242 4242 4242 4242" in page.text
        paid = await browser.post(
            body["url"],
            data={
                "action": "pay",
                "email": "alice@example.com",
                "cardNumber": "4242 4242 4242 4242",
                "cardExpiry": "12 / 34",
                "cardCvc": "123",
                "billingName": "Alice",
            },
        )
    assert paid.status_code in (302, 303), paid.text
    assert paid.headers["location"].startswith("https://app.example.com/billing/success")
    await alice.events()
    [listed] = (await alice.call("GET", "/subscriptions"))["subscriptions"]
    assert (listed["plan"], listed["status"], listed["interval"]) == (
        "premium",
        "active",
        "monthly",
    )
    assert listed["price_id"] == synced["billfold_premium_monthly_usd"]
    session = alice.world.sessions[body["id"]]
    assert listed["stripe_subscription_id"] == session["subscription"]
