"""Property: whatever Stripe did, and whatever order and number of times its events arrive,
billfold ends with Stripe's state. Random histories (seeded, so failures replay), each
delivered twice over in a random order, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import delete, select

from billfold.audit.context import system_audit_context
from billfold.catalog.service import load_catalog, sync_catalog
from billfold.container import Container
from billfold.customers.models import AccountKind
from billfold.customers.service import get_or_create_account
from billfold.db.engine import Database
from billfold.stripe.inbox import process_due, process_event, store_event
from billfold.stripe.models import WebhookEvent
from billfold.subscriptions import checkout
from billfold.subscriptions.models import Subscription
from tests.fakes.stripe_gateway import FakeStripeGateway


async def play(container: Container, gateway: FakeStripeGateway, rng: random.Random) -> None:
    """A few customers subscribe, then things happen to their subscriptions in Stripe."""
    audit = system_audit_context("test")
    async with container.db.transaction() as session:
        catalog = await load_catalog(session, container.settings)
        await sync_catalog(session, gateway, catalog, clock=container.clock)
        catalog = await load_catalog(session, container.settings)
    prices = [p.stripe_price_id for _, p in catalog.prices() if p.currency == "usd"]
    subs = []
    for n in range(rng.randint(1, 3)):
        async with container.db.transaction() as session:
            account = await get_or_create_account(
                session, AccountKind.USER, f"u{n}", currency="usd"
            )
        started = await checkout.start_checkout(
            container, account, audit=audit, price_id=rng.choice(prices)
        )
        subs.append(gateway.stripe.complete_checkout(started.id))
    for step in range(rng.randint(2, 8)):
        sub_id = rng.choice(subs)
        if gateway.stripe.subscriptions[sub_id]["status"] == "canceled":
            continue
        action = rng.choice(["renew", "fail", "cancel_at_end", "reactivate", "change", "now"])
        key = f"{sub_id}-{step}"
        if action in ("renew", "fail"):
            gateway.stripe.end_period(sub_id, payment_fails=action == "fail")
        elif action in ("cancel_at_end", "reactivate"):
            await gateway.subscriptions.update(
                sub_id, cancel_at_period_end=action == "cancel_at_end", idempotency_key=key
            )
        elif action == "change":
            await gateway.subscriptions.update(
                sub_id,
                price_id=rng.choice(prices),
                quantity=rng.randint(1, 4),
                proration_behavior="create_prorations",
                idempotency_key=key,
            )
        else:
            await gateway.subscriptions.cancel(sub_id, idempotency_key=key)


def stripe_state(gateway: FakeStripeGateway) -> list[tuple[Any, ...]]:
    return sorted(
        (
            s["id"],
            s["status"],
            s["items"]["data"][0]["price"]["id"],
            s["items"]["data"][0]["quantity"],
            s["cancel_at_period_end"],
            s["items"]["data"][0]["current_period_end"],
        )
        for s in gateway.stripe.subscriptions.values()
    )


async def billfold_state(db: Database) -> list[tuple[Any, ...]]:
    """billfold's copy of every subscription, in `stripe_state`'s terms."""
    async with db.transaction() as session:
        rows = (await session.execute(select(Subscription))).scalars().all()
        return sorted(
            (
                r.stripe_subscription_id,
                r.status,
                r.price_id,
                r.quantity,
                r.cancel_at_period_end,
                int(r.current_period_end.timestamp()) if r.current_period_end else None,
            )
            for r in rows
        )


@pytest.mark.parametrize("seed", range(12))
async def test_any_history_any_delivery_order(container: Container, seed: int) -> None:
    rng = random.Random(seed)
    gateway = FakeStripeGateway()
    container.stripe_gateway = gateway
    await play(container, gateway, rng)
    async with container.db.transaction() as session:
        # Start from nothing: only the events tell billfold what happened.
        await session.execute(delete(Subscription))
    deliveries = gateway.stripe.events * 2
    rng.shuffle(deliveries)
    for event in deliveries:
        async with container.db.transaction() as session:
            await store_event(session, event, source="webhook", clock=container.clock)
        if rng.random() < 0.8:  # most are applied at once, in delivery order
            await process_event(container, event["id"])
    await process_due(container, limit=10_000)
    assert await billfold_state(container.db) == stripe_state(gateway)
    async with container.db.transaction() as session:
        statuses = set((await session.execute(select(WebhookEvent.status))).scalars())
    assert statuses == {"processed"}


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1150))
async def test_any_history_any_delivery_order_soak(container: Container, seed: int) -> None:
    await test_any_history_any_delivery_order(container, seed)
