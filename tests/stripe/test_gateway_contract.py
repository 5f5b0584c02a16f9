"""One contract for each capability of billfold's Stripe gateway, run against both
implementations: the hand-written fake (tests/fakes/stripe_gateway.py) and the real SDK adapter
driving the Stripe sandbox over loopback. Whatever the domain's unit tests learn from the fake
holds for Stripe, so the fake cannot drift. The fake's raw objects are also compared with
Stripe's own sample objects (tests/stripe_fixtures/fixtures3.json, read by tests/sandbox/shapes.py):
every key the fake writes is one Stripe has."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import stripe

from billfold.config import Settings
from billfold.errors import (
    IdempotencyConflict,
    NotFound,
    PaymentFailed,
    UpstreamUnavailable,
    ValidationFailed,
)
from billfold.stripe.gateway import (
    BankAccount,
    LineItem,
    StripeClientGateway,
    StripeGateway,
)
from tests.fakes.stripe_gateway import FakeStripeGateway
from tests.sandbox.shapes import shape_differences, stripe_sample
from tests.sandbox_fixtures import SandboxServer

OK = "https://app.example.com/ok"
NO = "https://app.example.com/no"
HAND_TYPED = BankAccount("Jenny Rosen", "110000000", "000123456789")


@dataclass
class Backend:
    """A gateway and what a test needs of the Stripe behind it that the gateway has no call
    for (the customer paying on the hosted Checkout page)."""

    name: str
    gateway: StripeGateway
    fake: FakeStripeGateway | None = None
    sandbox: SandboxServer | None = None

    async def pay_checkout(self, session_id: str) -> None:
        if self.fake is not None:
            self.fake.stripe.complete_checkout(session_id)
            return
        assert self.sandbox is not None
        sandbox = self.sandbox

        def complete() -> None:
            response = httpx.post(
                f"{sandbox.url}/v1/test_helpers/checkout/sessions/{session_id}/complete",
                headers={"Authorization": f"Bearer {sandbox.api_key}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text

        await asyncio.to_thread(complete)

    def fail_next(self, path: str, status: int) -> None:
        """Stripe answers the next call to `path` with `status` (a 5xx, or 429)."""
        if self.fake is not None:
            message = "Stripe is unreachable" if status == 429 else "Stripe failed"
            self.fake.fail_next = UpstreamUnavailable(message)
            return
        assert self.sandbox is not None
        self.sandbox.state.faults.add(path, status=status, count=1)


@pytest.fixture(params=["fake", "sandbox"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "fake":
        fake = FakeStripeGateway()
        yield Backend("fake", fake, fake=fake)
        return
    sandbox: SandboxServer = request.getfixturevalue("sandbox_server")
    client = stripe.StripeClient(
        sandbox.api_key, base_addresses={"api": sandbox.url}, max_network_retries=0
    )
    settings = Settings(jwt_secret="x" * 40, environment="test")
    yield Backend("sandbox", StripeClientGateway(settings, client=client), sandbox=sandbox)


async def _customer(gateway: StripeGateway, key: str = "customer:acct_1") -> str:
    created = await gateway.customers.create(
        email="jenny@example.com",
        name="Jenny",
        metadata={"billfold_account_id": "acct_1"},
        idempotency_key=key,
    )
    return created.id


async def _monthly_price(gateway: StripeGateway, amount: int = 699) -> str:
    await gateway.catalog.upsert_product(
        "billfold_contract", name="Contract", description=None, active=True, metadata={}
    )
    price = await gateway.catalog.create_price(
        product_id="billfold_contract",
        currency="usd",
        unit_amount=amount,
        interval="month",
        lookup_key="billfold_contract_monthly_usd",
        nickname=None,
        idempotency_key=f"price:billfold_contract_monthly_usd:{amount}",
    )
    return price.id


async def _subscribed(backend: Backend) -> tuple[str, str]:
    """A customer with a paid monthly subscription: (customer id, subscription id)."""
    gateway = backend.gateway
    customer_id = await _customer(gateway)
    session = await gateway.checkout.create_session(
        mode="subscription",
        customer_id=customer_id,
        line_items=[LineItem(price_id=await _monthly_price(gateway))],
        success_url=OK,
        cancel_url=NO,
        client_reference_id="acct_1",
        metadata={"billfold_account_id": "acct_1"},
        idempotency_key="checkout:acct_1:1",
    )
    await backend.pay_checkout(session.id)
    (subscription,) = await gateway.subscriptions.list(customer_id=customer_id)
    return customer_id, subscription.id


async def _card(gateway: StripeGateway, customer_id: str, test_id: str = "pm_card_visa") -> str:
    attached = await gateway.payment_methods.attach(
        test_id, customer_id=customer_id, idempotency_key=f"attach:{customer_id}:{test_id}"
    )
    return attached.id


# --- customers ----------------------------------------------------------------------------------


async def test_customers_create_retrieve_and_replay(backend: Backend) -> None:
    gateway = backend.gateway
    created = await gateway.customers.create(
        email="jenny@example.com",
        name="Jenny",
        metadata={"billfold_account_id": "acct_1"},
        idempotency_key="customer:acct_1",
    )
    assert created.id.startswith("cus_")
    assert (created.email, created.name, created.deleted) == ("jenny@example.com", "Jenny", False)
    assert created.metadata == {"billfold_account_id": "acct_1"}
    assert await gateway.customers.retrieve(created.id) == created
    again = await gateway.customers.create(
        email="jenny@example.com",
        name="Jenny",
        metadata={"billfold_account_id": "acct_1"},
        idempotency_key="customer:acct_1",
    )
    assert again.id == created.id
    with pytest.raises(IdempotencyConflict):
        await gateway.customers.create(
            email="other@example.com", name="Jenny", metadata={}, idempotency_key="customer:acct_1"
        )
    with pytest.raises(NotFound):
        await gateway.customers.retrieve("cus_missing")


async def test_customers_list_and_delete(backend: Backend) -> None:
    gateway = backend.gateway
    first = await _customer(gateway, "customer:acct_1")
    second = await _customer(gateway, "customer:acct_2")
    listed = await gateway.customers.list()
    assert [c.id for c in listed if c.id in (first, second)] == [second, first]  # newest first
    assert listed[0].metadata == {"billfold_account_id": "acct_1"}
    deleted = await gateway.customers.delete(first)
    assert (deleted.id, deleted.deleted) == (first, True)
    assert first not in [c.id for c in await gateway.customers.list()]
    assert (await gateway.customers.retrieve(first)).deleted is True
    with pytest.raises(NotFound):
        await gateway.customers.delete("cus_missing")


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_stripe_failing_is_upstream_unavailable(backend: Backend, status: int) -> None:
    backend.fail_next("/v1/customers", status)
    with pytest.raises(UpstreamUnavailable):
        await _customer(backend.gateway)
    assert (await _customer(backend.gateway, "customer:acct_2")).startswith("cus_")


async def test_a_blank_idempotency_key_never_reaches_stripe(backend: Backend) -> None:
    with pytest.raises(ValueError, match="idempotency key"):
        await _customer(backend.gateway, key=" ")


# --- catalog ------------------------------------------------------------------------------------


async def test_catalog_products_and_prices_by_lookup_key(backend: Backend) -> None:
    catalog = backend.gateway.catalog
    assert await catalog.retrieve_product("billfold_contract") is None
    first = await _monthly_price(backend.gateway, 699)
    product = await catalog.retrieve_product("billfold_contract")
    assert product is not None and product.name == "Contract" and product.active
    renamed = await catalog.upsert_product(
        "billfold_contract", name="Renamed", description="d", active=True, metadata={"a": "b"}
    )
    assert (renamed.name, renamed.description, renamed.metadata) == ("Renamed", "d", {"a": "b"})
    (found,) = await catalog.prices_by_lookup_keys(["billfold_contract_monthly_usd"])
    assert (found.id, found.unit_amount, found.currency, found.interval, found.active) == (
        first,
        699,
        "usd",
        "month",
        True,
    )
    # A new amount is a new price that takes the lookup key over.
    second = await _monthly_price(backend.gateway, 799)
    (found,) = await catalog.prices_by_lookup_keys(["billfold_contract_monthly_usd"])
    assert found.id == second != first
    archived = await catalog.set_price_active(first, False)
    assert archived.active is False and archived.lookup_key is None
    with pytest.raises(NotFound):  # Stripe's 400 resource_missing, on the `product` param
        await catalog.create_price(
            product_id="billfold_nothing",
            currency="usd",
            unit_amount=100,
            interval="month",
            lookup_key="nothing",
            nickname=None,
            idempotency_key="price:nothing",
        )


# --- checkout -----------------------------------------------------------------------------------


async def test_checkout_subscription_mode_replays_and_expires(backend: Backend) -> None:
    gateway = backend.gateway
    customer_id = await _customer(gateway)
    price_id = await _monthly_price(gateway)
    arguments: dict[str, Any] = {
        "mode": "subscription",
        "customer_id": customer_id,
        "line_items": [LineItem(price_id=price_id, quantity=2)],
        "success_url": OK,
        "cancel_url": NO,
        "client_reference_id": "acct_1",
        "metadata": {"billfold_account_id": "acct_1"},
        "idempotency_key": "checkout:acct_1:1",
    }
    session = await gateway.checkout.create_session(**arguments)
    assert session.id.startswith("cs_") and session.url
    assert (session.mode, session.status, session.customer_id) == (
        "subscription",
        "open",
        customer_id,
    )
    assert session.client_reference_id == "acct_1"
    assert session.metadata == {"billfold_account_id": "acct_1"}
    assert (await gateway.checkout.create_session(**arguments)).id == session.id
    assert await gateway.checkout.retrieve_session(session.id) == session
    expired = await gateway.checkout.expire_session(session.id)
    assert (expired.status, expired.url) == ("expired", None)
    with pytest.raises(ValidationFailed):
        await gateway.checkout.expire_session(session.id)
    # A replay answers what the first call answered (Stripe keeps the response), so the
    # session's current status must be read back, not taken from a replayed create.
    replayed = await gateway.checkout.create_session(**arguments)
    assert (replayed.id, replayed.status) == (session.id, "open")
    with pytest.raises(NotFound):
        await gateway.checkout.retrieve_session("cs_test_missing")
    with pytest.raises(NotFound):
        await gateway.checkout.create_session(
            **{
                **arguments,
                "line_items": [LineItem(price_id="price_missing")],
                "idempotency_key": "checkout:acct_1:2",
            }
        )


async def test_checkout_payment_mode_sells_an_amount(backend: Backend) -> None:
    gateway = backend.gateway
    customer_id = await _customer(gateway)
    session = await gateway.checkout.create_session(
        mode="payment",
        customer_id=customer_id,
        line_items=[LineItem(amount=1000, currency="usd", name="1,000 credits", quantity=2)],
        success_url=OK,
        cancel_url=NO,
        client_reference_id="acct_1",
        metadata={"billfold_topup": "top_1"},
        idempotency_key="topup:acct_1:top_1",
    )
    assert (session.mode, session.status, session.payment_status) == ("payment", "open", "unpaid")
    assert (session.amount_total, session.currency) == (2000, "usd")
    assert session.subscription_id is None


async def test_checkout_setup_mode_saves_a_payment_method(backend: Backend) -> None:
    gateway = backend.gateway
    session = await gateway.checkout.create_session(
        mode="setup",
        customer_id=await _customer(gateway),
        currency="usd",
        payment_method_types=["card"],
        success_url=OK,
        cancel_url=NO,
        client_reference_id="acct_1",
        metadata={},
        idempotency_key="setup:acct_1:1",
    )
    assert (session.mode, session.status) == ("setup", "open")
    assert session.payment_status == "no_payment_required" and session.amount_total is None


# --- subscriptions, invoices, events, portal ----------------------------------------------------


async def test_subscriptions_follow_their_changes(backend: Backend) -> None:
    gateway = backend.gateway
    customer_id, subscription_id = await _subscribed(backend)
    found = await gateway.subscriptions.retrieve(subscription_id)
    assert (found.status, found.customer_id, found.quantity) == ("active", customer_id, 1)
    assert (found.interval, found.currency, found.unit_amount) == ("month", "usd", 699)
    assert found.metadata == {"billfold_account_id": "acct_1"}
    assert found.current_period_start and found.current_period_end
    assert found.current_period_end > found.current_period_start
    scheduled = await gateway.subscriptions.update(
        subscription_id, cancel_at_period_end=True, idempotency_key=f"cancel:{subscription_id}:r1"
    )
    assert scheduled.cancel_at_period_end and scheduled.status == "active"
    replayed = await gateway.subscriptions.update(
        subscription_id, cancel_at_period_end=True, idempotency_key=f"cancel:{subscription_id}:r1"
    )
    assert replayed.cancel_at_period_end
    canceled = await gateway.subscriptions.cancel(
        subscription_id, idempotency_key=f"cancel-now:{subscription_id}:r2"
    )
    assert canceled.status == "canceled" and canceled.ended_at is not None
    with pytest.raises(ValidationFailed):
        await gateway.subscriptions.update(
            subscription_id, cancel_at_period_end=False, idempotency_key=f"r:{subscription_id}"
        )
    with pytest.raises(NotFound):
        await gateway.subscriptions.retrieve("sub_missing")
    assert [s.id for s in await gateway.subscriptions.list(customer_id="cus_other")] == []


async def test_invoices_of_a_subscription(backend: Backend) -> None:
    gateway = backend.gateway
    customer_id, subscription_id = await _subscribed(backend)
    invoices = await gateway.invoices.list(customer_id=customer_id)
    assert invoices and all(i.customer_id == customer_id for i in invoices)
    first = invoices[-1]
    assert (first.subscription_id, first.status, first.currency) == (subscription_id, "paid", "usd")
    assert first.amount_paid == first.amount_due == 699
    assert first.billing_reason == "subscription_create"
    assert await gateway.invoices.retrieve(first.id) == first
    assert await gateway.invoices.list(subscription_id=subscription_id) == invoices
    with pytest.raises(NotFound):
        await gateway.invoices.retrieve("in_missing")


async def test_events_newest_first(backend: Backend) -> None:
    await _subscribed(backend)
    events = [e async for e in backend.gateway.events.list()]
    types = [e.type for e in events]
    assert "customer.subscription.created" in types and "checkout.session.completed" in types
    assert [e.created for e in events] == sorted((e.created for e in events), reverse=True)
    completed = next(e for e in events if e.type == "checkout.session.completed")
    assert completed.payload["object"] == "event" and completed.object["object"] == (
        "checkout.session"
    )
    only = [e async for e in backend.gateway.events.list(types=["invoice.paid"])]
    assert only and {e.type for e in only} == {"invoice.paid"}


async def test_portal_needs_a_customer(backend: Backend) -> None:
    gateway = backend.gateway
    url = await gateway.portal.create_session(customer_id=await _customer(gateway), return_url=OK)
    assert url.startswith("http")
    with pytest.raises(NotFound):
        await gateway.portal.create_session(customer_id="cus_missing", return_url=OK)


# --- payment methods and setup intents ----------------------------------------------------------


async def test_payment_methods_attach_list_default_detach(backend: Backend) -> None:
    gateway = backend.gateway
    customer_id = await _customer(gateway)
    card = await gateway.payment_methods.attach(
        "pm_card_visa", customer_id=customer_id, idempotency_key="attach:acct_1:1"
    )
    assert card.id.startswith("pm_") and card.id != "pm_card_visa"
    assert (card.type, card.brand, card.last4, card.customer_id) == (
        "card",
        "visa",
        "4242",
        customer_id,
    )
    assert card.exp_month and card.exp_year
    again = await gateway.payment_methods.attach(
        "pm_card_visa", customer_id=customer_id, idempotency_key="attach:acct_1:1"
    )
    assert again.id == card.id
    assert await gateway.payment_methods.list(customer_id) == [card]
    assert await gateway.payment_methods.list(customer_id, type="us_bank_account") == []
    customer = await gateway.customers.set_default_payment_method(customer_id, card.id)
    assert customer.default_payment_method_id == card.id
    assert await gateway.payment_methods.retrieve(card.id) == card
    detached = await gateway.payment_methods.detach(card.id)
    assert detached.customer_id is None
    assert await gateway.payment_methods.list(customer_id) == []
    with pytest.raises(NotFound):
        await gateway.payment_methods.retrieve("pm_missing")


async def test_setup_intents_for_a_card_and_a_bank_account(backend: Backend) -> None:
    gateway = backend.gateway
    customer_id = await _customer(gateway)
    arguments: dict[str, Any] = {
        "customer_id": customer_id,
        "method": "card",
        "payment_method_id": "pm_card_visa",
        "metadata": {"billfold_account_id": "acct_1"},
        "idempotency_key": "setup:acct_1:1",
    }
    card = await gateway.setup_intents.create(**arguments)
    assert (card.status, card.next_action, card.customer_id) == ("succeeded", None, customer_id)
    assert card.payment_method_id and card.client_secret
    assert (await gateway.setup_intents.create(**arguments)).id == card.id

    bank = await gateway.setup_intents.create(
        customer_id=customer_id,
        method="us_bank_account",
        bank_account=HAND_TYPED,
        metadata={},
        idempotency_key="setup:acct_1:2",
    )
    assert (bank.status, bank.next_action) == ("requires_action", "verify_with_microdeposits")
    with pytest.raises(ValidationFailed):
        await gateway.setup_intents.verify_microdeposits(bank.id, amounts=[1, 2])
    verified = await gateway.setup_intents.verify_microdeposits(bank.id, amounts=[32, 45])
    assert (verified.status, verified.next_action) == ("succeeded", None)
    assert await gateway.setup_intents.retrieve(bank.id) == verified
    with pytest.raises(ValidationFailed):
        await gateway.setup_intents.verify_microdeposits(bank.id, amounts=[32, 45])
    (saved,) = await gateway.payment_methods.list(customer_id, type="us_bank_account")
    assert (saved.id, saved.last4) == (verified.payment_method_id, "6789")
    with pytest.raises(NotFound):
        await gateway.setup_intents.retrieve("seti_missing")


# --- payment intents and refunds ----------------------------------------------------------------


async def test_off_session_payment_succeeds_replays_and_refunds(backend: Backend) -> None:
    gateway = backend.gateway
    customer_id = await _customer(gateway)
    card = await _card(gateway, customer_id)
    arguments: dict[str, Any] = {
        "customer_id": customer_id,
        "payment_method_id": card,
        "amount": 500,
        "currency": "usd",
        "metadata": {"billfold_charge": "chg_1"},
        "idempotency_key": "charge:acct_1:chg_1",
    }
    paid = await gateway.payment_intents.create_off_session(**arguments)
    assert (paid.status, paid.amount, paid.currency) == ("succeeded", 500, "usd")
    assert paid.latest_charge_id and paid.payment_method_id == card
    assert paid.metadata == {"billfold_charge": "chg_1"}
    assert (await gateway.payment_intents.create_off_session(**arguments)).id == paid.id
    assert await gateway.payment_intents.find_by_metadata("billfold_charge", "chg_1") == paid
    assert await gateway.payment_intents.find_by_metadata("billfold_charge", "chg_9") is None
    with pytest.raises(IdempotencyConflict):
        await gateway.payment_intents.create_off_session(**{**arguments, "amount": 600})
    assert await gateway.payment_intents.retrieve(paid.id) == paid
    with pytest.raises(ValidationFailed):
        await gateway.payment_intents.cancel(paid.id, idempotency_key="cancel:chg_1")

    refund = await gateway.refunds.create(
        payment_intent_id=paid.id, amount=200, idempotency_key="refund:chg_1:1"
    )
    assert (refund.status, refund.amount, refund.currency) == ("succeeded", 200, "usd")
    assert (refund.payment_intent_id, refund.charge_id) == (paid.id, paid.latest_charge_id)
    again = await gateway.refunds.create(
        payment_intent_id=paid.id, amount=200, idempotency_key="refund:chg_1:1"
    )
    assert again.id == refund.id
    assert await gateway.refunds.retrieve(refund.id) == refund
    with pytest.raises(ValidationFailed):
        await gateway.refunds.create(
            payment_intent_id=paid.id, amount=400, idempotency_key="refund:chg_1:2"
        )
    rest = await gateway.refunds.create(payment_intent_id=paid.id, idempotency_key="refund:chg_1:3")
    assert rest.amount == 300
    with pytest.raises(NotFound):
        await gateway.refunds.retrieve("re_missing")


async def test_a_declined_off_session_payment_is_an_answer(backend: Backend) -> None:
    gateway = backend.gateway
    customer_id = await _customer(gateway)
    with pytest.raises(PaymentFailed):  # its check on attaching is declined already
        await _card(gateway, customer_id, "pm_card_chargeDeclined")
    declined = await gateway.payment_intents.create_off_session(
        customer_id=customer_id,
        payment_method_id=await _card(gateway, customer_id, "pm_card_chargeCustomerFail"),
        amount=500,
        currency="usd",
        metadata={},
        idempotency_key="charge:acct_1:chg_2",
    )
    assert declined.status == "requires_payment_method"
    assert (declined.last_error_code, declined.decline_code) == ("card_declined", "generic_decline")
    canceled = await gateway.payment_intents.cancel(declined.id, idempotency_key="cancel:chg_2")
    assert canceled.status == "canceled"
    with pytest.raises(ValidationFailed):
        await gateway.refunds.create(payment_intent_id=declined.id, idempotency_key="refund:chg_2")
    with pytest.raises(NotFound):
        await gateway.payment_intents.retrieve("pi_missing")


# --- payments domain: on-session charges ---------------------------------------------------------


async def test_an_on_session_payment_succeeds_and_replays(backend: Backend) -> None:
    gateway = backend.gateway
    customer_id = await _customer(gateway)
    card = await _card(gateway, customer_id)
    arguments: dict[str, Any] = {
        "customer_id": customer_id,
        "payment_method_id": card,
        "amount": 700,
        "currency": "usd",
        "metadata": {"billfold_payment": "pay_1"},
        "idempotency_key": "payment_attempt:pay_1:1",
        "description": "one-off",
    }
    paid = await gateway.payment_intents.create_on_session(**arguments)
    assert (paid.status, paid.amount, paid.payment_method_id) == ("succeeded", 700, card)
    assert paid.metadata == {"billfold_payment": "pay_1"}
    assert (await gateway.payment_intents.create_on_session(**arguments)).id == paid.id


# --- disputes -----------------------------------------------------------------------------------


async def test_disputes_read(backend: Backend) -> None:
    gateway = backend.gateway
    assert await gateway.disputes.list() == []
    with pytest.raises(NotFound):
        await gateway.disputes.retrieve("dp_missing")


# --- the fake's objects against Stripe's samples ------------------------------------------------

# The fake's bookkeeping that never leaves it (its own keys start with "_").
_FAKE_ONLY = {"checkout.session": ("price", "quantity", "subscription_metadata")}


def _extra_keys(obj: dict[str, Any], resource: str) -> list[str]:
    sample = stripe_sample(resource)
    own = tuple(k for k in obj if k.startswith("_")) + _FAKE_ONLY.get(resource, ())
    return shape_differences(obj, resource, allow_missing=tuple(sample), allow_extra=own)


async def test_the_fakes_objects_have_only_stripes_keys() -> None:
    """Every key (and nested key) the fake writes is one Stripe's sample object has."""
    fake = FakeStripeGateway()
    backend = Backend("fake", fake, fake=fake)
    customer_id, subscription_id = await _subscribed(backend)
    await fake.setup_intents.create(
        customer_id=customer_id,
        method="us_bank_account",
        bank_account=HAND_TYPED,
        metadata={},
        idempotency_key="setup:1",
    )
    paid = await fake.payment_intents.create_off_session(
        customer_id=customer_id,
        payment_method_id=await _card(fake, customer_id),
        amount=500,
        currency="usd",
        metadata={},
        idempotency_key="charge:1",
    )
    await fake.refunds.create(payment_intent_id=paid.id, idempotency_key="refund:1")
    world = fake.stripe
    subscription = world.subscriptions[subscription_id]
    objects: list[tuple[str, dict[str, Any]]] = [
        ("customer", world.customers[customer_id]),
        ("subscription", subscription),
        ("subscription_item", subscription["items"]["data"][0]),
        ("price", subscription["items"]["data"][0]["price"]),
        *(("checkout.session", s) for s in world.sessions.values()),
        *(("product", p) for p in world.products.values()),
        *(("invoice", i) for i in world.invoices if i["object"] == "invoice"),
        *(("setup_intent", s) for s in world.setup_intents.values()),
        *(("payment_intent", p) for p in world.payment_intents.values()),
        *(("refund", r) for r in world.refunds.values()),
        *(("event", e) for e in world.events),
    ]
    methods = list(world.payment_methods.values())
    objects += [
        ("payment_method", {k: v for k, v in m.items() if k != "us_bank_account"}) for m in methods
    ]
    problems = [p for resource, obj in objects for p in _extra_keys(obj, resource)]
    card = next(m["card"] for m in methods if m["type"] == "card")
    problems += [f"card.{k}" for k in set(card) - set(stripe_sample("payment_method")["card"])]
    invoice_settings = world.customers[customer_id]["invoice_settings"]
    problems += [
        f"invoice_settings.{k}"
        for k in set(invoice_settings) - set(stripe_sample("customer")["invoice_settings"])
    ]
    assert not problems, problems
