"""The subscription service against the fake gateway, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from billfold.audit.models import AuditEntry
from billfold.clock import FrozenClock
from billfold.container import Container
from billfold.customers.models import AccountKind, BillingAccount
from billfold.customers.service import get_or_create_account
from billfold.errors import Conflict, NotFound, UpstreamUnavailable, ValidationFailed
from billfold.stripe.gateway import LineItem, StripeEvent
from billfold.stripe.inbox import process_due, store_event, sync_events
from billfold.stripe.models import WebhookEvent
from billfold.subscriptions import changes, checkout, reads, reconcile, sync
from billfold.subscriptions.models import Subscription, SubscriptionChange
from tests.fakes.stripe_gateway import FakeStripeGateway

MONTHLY = "billfold_premium_monthly_usd"
YEARLY = "billfold_premium_yearly_usd"


async def _account(container: Container, user: str = "alice") -> BillingAccount:
    async with container.db.transaction() as session:
        return await get_or_create_account(
            session, AccountKind.USER, user, currency="usd", clock=container.clock
        )


async def _checkout(
    container: Container, account: BillingAccount, audit: Any, **kwargs: Any
) -> checkout.CheckoutStarted:
    return await checkout.start_checkout(container, account, audit=audit, **kwargs)


async def _apply_all(container: Container, events: list[dict[str, Any]]) -> None:
    for event in events:
        async with container.db.transaction() as session:
            await store_event(session, event, source="webhook", clock=container.clock)
    await process_due(container)


async def _subscribed(
    container: Container, gateway: FakeStripeGateway, audit: Any, user: str = "alice"
) -> tuple[BillingAccount, str]:
    account = await _account(container, user)
    started = await _checkout(container, account, audit, price_id=MONTHLY)
    sub_id = gateway.stripe.complete_checkout(started.id)
    await _apply_all(container, gateway.stripe.events)
    return account, sub_id


async def _status(container: Container, account: BillingAccount) -> reads.SubscriptionStatus:
    async with container.db.transaction() as session:
        fresh = await session.get(BillingAccount, account.id)
        assert fresh is not None
        found = await reads.status(session, container, fresh)
        # The hot read (columns only, no entity) decides exactly as the full one does.
        hot = await reads.premium_status(session, container, fresh)
        assert hot == dataclasses.replace(found, subscription=None)
        return found


async def test_checkout_creates_customer_once_and_links_it(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account = await _account(container)
    first = await _checkout(container, account, audit, plan="premium", interval="monthly")
    second = await _checkout(container, account, audit, price_id=synced[YEARLY])
    assert first.price_id == synced[MONTHLY] and first.interval == "monthly"
    assert second.price_id == synced[YEARLY] and second.interval == "yearly"
    assert first.customer_id == second.customer_id
    assert len(gateway.stripe.customers) == 1
    async with container.db.transaction() as session:
        linked = await session.get(BillingAccount, account.id)
        assert linked is not None and linked.stripe_customer_id == first.customer_id
        actions = (await session.execute(select(AuditEntry.action))).scalars().all()
    assert actions.count("checkout.created") == 2 and actions.count("customer.created") == 1


async def test_same_checkout_repeated_returns_the_same_session(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account = await _account(container)
    first = await _checkout(container, account, audit, price_id=MONTHLY)
    again = await _checkout(container, account, audit, price_id=MONTHLY)
    assert again.id == first.id
    assert len(gateway.stripe.sessions) == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"price_id": "price_unknown"}, "price_id"),
        ({"price_id": MONTHLY, "interval": "yearly"}, "interval"),
        ({"price_id": MONTHLY, "interval": "weekly-ish"}, "interval"),
        ({"price_id": MONTHLY, "success_url": "https://evil.example.net/x"}, "success_url"),
        ({"price_id": MONTHLY, "cancel_url": "javascript:alert(1)"}, "cancel_url"),
        ({"price_id": MONTHLY, "success_url": "https://app.example.com.evil.net/"}, "success_url"),
        ({"price_id": MONTHLY, "quantity": 0}, "quantity"),
        ({}, "price_id"),
    ],
)
async def test_checkout_refuses_bad_input(
    container: Container,
    synced: dict[str, str],
    audit: Any,
    kwargs: dict[str, Any],
    field: str,
) -> None:
    account = await _account(container)
    with pytest.raises(ValidationFailed) as caught:
        await _checkout(container, account, audit, **kwargs)
    assert caught.value.field == field


async def test_allowed_redirect_hosts_are_accepted(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account = await _account(container)
    started = await _checkout(
        container,
        account,
        audit,
        price_id=MONTHLY,
        success_url="https://billing.example.com/done",
        cancel_url="https://app.example.com/plans",
        allow_promotion_codes=True,
    )
    # Stripe was asked for a session with exactly these redirects.
    sent = gateway.stripe.sessions[started.id]
    assert (sent["success_url"], sent["cancel_url"], sent["allow_promotion_codes"]) == (
        "https://billing.example.com/done",
        "https://app.example.com/plans",
        True,
    )


async def test_paid_checkout_gives_premium_and_a_second_checkout_conflicts(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account, sub_id = await _subscribed(container, gateway, audit)
    found = await _status(container, account)
    assert found.has_premium and found.status == "active"
    assert found.plan == "premium" and found.interval == "monthly"
    assert found.subscription is not None
    assert found.subscription.stripe_subscription_id == sub_id
    assert found.current_period_end is not None
    with pytest.raises(Conflict):
        await _checkout(container, account, audit, price_id=YEARLY)


async def test_cancel_reactivate_cancel_then_period_ends(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account, sub_id = await _subscribed(container, gateway, audit)
    with pytest.raises(ValidationFailed, match="Subscription is not set to cancel"):
        await changes.reactivate(container, account, audit=audit)
    sub = await changes.cancel(container, account, audit=audit)
    assert sub.cancel_at_period_end and sub.status == "active"
    sub = await changes.reactivate(container, account, audit=audit)
    assert not sub.cancel_at_period_end
    sub = await changes.cancel(container, account, audit=audit)
    assert sub.cancel_at_period_end
    assert (await _status(container, account)).has_premium
    gateway.stripe.end_period(sub_id)
    await _apply_all(container, gateway.stripe.events)
    found = await _status(container, account)
    assert found.status == "canceled" and not found.has_premium
    with pytest.raises(ValidationFailed, match="No active Stripe subscription found"):
        await changes.cancel(container, account, audit=audit)
    async with container.db.transaction() as session:
        actions = (await session.execute(select(AuditEntry.action))).scalars().all()
    assert actions.count("subscription.cancel_scheduled") == 2
    assert "subscription.reactivated" in actions
    assert "subscription.status_changed" in actions


async def test_cancel_immediately(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account, _ = await _subscribed(container, gateway, audit)
    sub = await changes.cancel(container, account, audit=audit, immediately=True)
    assert sub.status == "canceled" and sub.canceled_at is not None
    assert not (await _status(container, account)).has_premium
    # A new subscription may start once the old one ended.
    await _checkout(container, account, audit, price_id=YEARLY)


async def test_failed_renewal_is_past_due_with_grace(
    container: Container,
    gateway: FakeStripeGateway,
    synced: dict[str, str],
    audit: Any,
    clock: FrozenClock,
) -> None:
    account, sub_id = await _subscribed(container, gateway, audit)
    gateway.stripe.end_period(sub_id, payment_fails=True)
    await _apply_all(container, gateway.stripe.events)
    found = await _status(container, account)
    assert found.status == "past_due"
    assert found.has_premium  # within the grace period (3 days by default)
    clock.advance(timedelta(days=3, seconds=1))
    assert not (await _status(container, account)).has_premium


async def test_change_plan_prorates(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account, _ = await _subscribed(container, gateway, audit)
    sub = await changes.change_plan(container, account, audit=audit, price_id=YEARLY)
    assert sub.price_id == synced[YEARLY] and sub.interval == "yearly"
    prorations = [i for i in gateway.stripe.invoices if i.get("proration")]
    assert prorations == [
        {
            "id": prorations[0]["id"],
            "object": "invoiceitem",
            "proration": True,
            "credited": synced[MONTHLY],
            "charged": synced[YEARLY],
        }
    ]
    with pytest.raises(ValidationFailed, match="already on this plan"):
        await changes.change_plan(container, account, audit=audit, price_id=YEARLY)
    sub = await changes.change_plan(container, account, audit=audit, quantity=3, proration="none")
    assert sub.quantity == 3


async def test_portal_needs_a_customer(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account = await _account(container)
    with pytest.raises(NotFound):
        await checkout.open_portal(container, account, audit=audit)
    await _checkout(container, account, audit, price_id=MONTHLY)
    async with container.db.transaction() as session:
        fresh = await session.get(BillingAccount, account.id)
        assert fresh is not None
    url = await checkout.open_portal(
        container, fresh, audit=audit, return_url="https://app.example.com/account"
    )
    assert url.startswith("https://billing.stripe.test/")
    with pytest.raises(ValidationFailed):
        await checkout.open_portal(
            container, fresh, audit=audit, return_url="https://evil.example/"
        )


def _end_state(rows: list[Subscription]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            r.stripe_subscription_id,
            r.status,
            r.price_id,
            r.quantity,
            r.cancel_at_period_end,
            r.current_period_end,
            r.canceled_at,
        )
        for r in rows
    )


async def test_duplicated_shuffled_events_end_in_the_same_state(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    """Build a history through the service, then replay every event twice in random order
    into an empty inbox and subscription table: the end state is the same."""
    account, sub_id = await _subscribed(container, gateway, audit)
    await changes.cancel(container, account, audit=audit)
    await changes.reactivate(container, account, audit=audit)
    gateway.stripe.end_period(sub_id, payment_fails=True)
    gateway.stripe.end_period(sub_id)
    await changes.change_plan(container, account, audit=audit, price_id=YEARLY)
    await _apply_all(container, gateway.stripe.events)
    async with container.db.transaction() as session:
        expected = _end_state(list((await session.execute(select(Subscription))).scalars()))
        await session.execute(SubscriptionChange.__table__.delete())
        await session.execute(Subscription.__table__.delete())
        await session.execute(WebhookEvent.__table__.delete())

    events = gateway.stripe.events * 2
    random.Random(7).shuffle(events)
    await _apply_all(container, events)
    async with container.db.transaction() as session:
        again = _end_state(list((await session.execute(select(Subscription))).scalars()))
        stored = (await session.execute(select(func.count()).select_from(WebhookEvent))).scalar()
        pending = (
            await session.execute(
                select(func.count())
                .select_from(WebhookEvent)
                .where(WebhookEvent.status != "processed")
            )
        ).scalar()
    assert again == expected
    assert stored == len(gateway.stripe.events) and pending == 0


async def test_stale_event_copy_never_overwrites_newer_state(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    """When Stripe no longer knows a subscription, the event's own copy is applied only if
    it is newer than what billfold holds."""
    account, sub_id = await _subscribed(container, gateway, audit)
    await changes.cancel(container, account, audit=audit, immediately=True)
    await _apply_all(container, gateway.stripe.events)
    created_event = next(
        e for e in gateway.stripe.events if e["type"] == "customer.subscription.created"
    )
    del gateway.stripe.subscriptions[sub_id]  # Stripe forgot it: only the event's copy remains
    replay = dict(created_event, id="evt_replayed_old")
    await _apply_all(container, [replay])
    assert (await _status(container, account)).status == "canceled"


async def test_failing_event_is_kept_with_error_and_retried(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account = await _account(container)
    started = await _checkout(container, account, audit, price_id=MONTHLY)
    gateway.stripe.complete_checkout(started.id)
    # Stripe fails both the read before the event's transaction and the one inside it.
    gateway.fail_next = UpstreamUnavailable("Stripe is unreachable: boom")
    gateway.failures_left = 2
    first = gateway.stripe.events[0]
    await _apply_all(container, [first])
    async with container.db.transaction() as session:
        row = await session.get(WebhookEvent, first["id"])
        assert row is not None
        assert row.status == "failed" and row.attempts == 1
        assert row.last_error is not None and "boom" in row.last_error
        assert row.last_traceback and "UpstreamUnavailable" in row.last_traceback
        assert row.payload == first
        assert (await session.execute(select(func.count()).select_from(Subscription))).scalar() == 0
    # Not due yet: nothing happens.
    assert (await process_due(container)).processed == 0
    container.clock.advance(timedelta(minutes=5))  # type: ignore[attr-defined]
    report = await process_due(container)
    assert report.processed == 1
    async with container.db.transaction() as session:
        row = await session.get(WebhookEvent, first["id"], populate_existing=True)
        assert row is not None and row.status == "processed" and row.attempts == 2
    assert (await _status(container, account)).has_premium


async def test_event_for_unknown_customer_waits(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    await _subscribed(container, gateway, audit)
    stranger = dict(gateway.stripe.events[0], id="evt_stranger")
    sub = dict(stranger["data"]["object"], id="sub_stranger", customer="cus_nobody", metadata={})
    stranger["data"] = {"object": sub}
    gateway.stripe.subscriptions["sub_stranger"] = sub
    await _apply_all(container, [stranger])
    async with container.db.transaction() as session:
        row = await session.get(WebhookEvent, "evt_stranger")
        assert row is not None and row.status == "failed"
        assert row.last_error is not None and "cus_nobody" in row.last_error


async def test_sync_fills_gaps_from_the_events_api(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account = await _account(container)
    started = await _checkout(container, account, audit, price_id=MONTHLY)
    gateway.stripe.complete_checkout(started.id)  # no webhook delivered: billfold was down
    report = await sync_events(container, since=0)
    assert report.stored == len(gateway.stripe.events)
    assert (await _status(container, account)).has_premium
    again = await sync_events(container)
    assert again.stored == 0


async def test_sync_skips_an_event_it_could_not_store(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    """An event whose envelope the inbox refuses (here `created` out of range) is skipped with
    a warning; the others are stored and applied."""
    account = await _account(container)
    started = await _checkout(container, account, audit, price_id=MONTHLY)
    gateway.stripe.complete_checkout(started.id)
    gateway.stripe.events.append(dict(gateway.stripe.events[0], id="evt_bad", created=10**30))
    report = await sync_events(container, since=0)
    assert report.stored == len(gateway.stripe.events) - 1
    assert (await _status(container, account)).has_premium


async def test_reconcile_reports_and_fixes(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account, sub_id = await _subscribed(container, gateway, audit)
    # Stripe changed behind billfold's back (a lost webhook).
    gateway.stripe.subscriptions[sub_id]["cancel_at_period_end"] = True
    gateway.stripe.subscriptions[sub_id]["status"] = "past_due"
    async with container.db.transaction() as session:
        found = await reconcile.reconcile(session, container)
    assert {(d.stripe_subscription_id, d.field) for d in found} == {
        (sub_id, "status"),
        (sub_id, "cancel_at_period_end"),
    }
    async with container.db.transaction() as session:
        await reconcile.reconcile(session, container, fix=True, audit=audit)
    async with container.db.transaction() as session:
        assert await reconcile.reconcile(session, container) == []
        entry = (
            await session.execute(
                select(AuditEntry).where(AuditEntry.action == "subscription.reconciled")
            )
        ).scalar_one()
    assert {d["field"] for d in entry.details["differences"]} == {"status", "cancel_at_period_end"}
    assert (await _status(container, account)).status == "past_due"


async def test_sync_catalog_is_idempotent_and_follows_amount_changes(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str]
) -> None:
    from billfold.catalog.service import Catalog, load_catalog, sync_catalog

    async with container.db.transaction() as session:
        catalog = await load_catalog(session, container.settings)
        report = await sync_catalog(session, gateway, catalog, clock=container.clock)
    assert report.prices_created == 0 and report.prices_unchanged == 4
    plan_prices = [p for p in gateway.stripe.prices.values() if p["product"] == "billfold_premium"]
    assert len(plan_prices) == 4  # (credit packages have prices of their own)
    plan = catalog.plans[0]
    from dataclasses import replace

    changed_prices = tuple(
        replace(p, amount=799, stripe_price_id=None) if p.lookup_key == MONTHLY else p
        for p in plan.prices
    )
    changed = Catalog(plans=(replace(plan, prices=changed_prices),))
    async with container.db.transaction() as session:
        report = await sync_catalog(session, gateway, changed, clock=container.clock)
    assert report.prices_created == 1
    active_monthly = [
        p for p in gateway.stripe.prices.values() if p["lookup_key"] == MONTHLY and p["active"]
    ]
    assert [p["unit_amount"] for p in active_monthly] == [799]
    assert not gateway.stripe.prices[synced[MONTHLY]]["active"]
    async with container.db.transaction() as session:
        reloaded = await load_catalog(session, container.settings)
    assert reloaded.find_price(MONTHLY)[1].stripe_price_id == active_monthly[0]["id"]  # type: ignore[index]


def test_stripe_event_object_accessor() -> None:
    event = StripeEvent(id="evt_1", type="x", created=1, payload={"data": {"object": {"id": "o"}}})
    assert event.object == {"id": "o"}


async def test_concurrent_deliveries_are_applied_once(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    """The same events stored and applied by many workers at once: one row per event, one
    subscription, one `subscription.created` in the audit log."""
    import asyncio

    from billfold.stripe.inbox import process_event

    account = await _account(container)
    started = await _checkout(container, account, audit, price_id=MONTHLY)
    gateway.stripe.complete_checkout(started.id)
    events = gateway.stripe.events

    async def deliver(event: dict[str, Any]) -> None:
        async with container.db.transaction() as session:
            await store_event(session, event, source="webhook", clock=container.clock)
        await process_event(container, event["id"])

    await asyncio.gather(*(deliver(e) for e in events * 4))
    await process_due(container)
    async with container.db.transaction() as session:
        rows = (await session.execute(select(WebhookEvent))).scalars().all()
        created = (
            await session.execute(
                select(func.count())
                .select_from(AuditEntry)
                .where(AuditEntry.action == "subscription.created")
            )
        ).scalar()
        subs = (await session.execute(select(func.count()).select_from(Subscription))).scalar()
    assert len(rows) == len(events) and all(r.status == "processed" for r in rows)
    assert all(r.attempts == 1 for r in rows)
    assert created == 1 and subs == 1
    assert (await _status(container, account)).has_premium


async def test_a_stale_prefetched_read_is_never_written(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    """A read from Stripe taken before another write is not used: the sync reads again."""
    account, sub_id = await _subscribed(container, gateway, audit)
    early = await sync.prefetch_subscription(container, sub_id)
    assert early.snapshot is not None and not early.snapshot.cancel_at_period_end
    await changes.cancel(container, account, audit=audit)

    calls = len(gateway.stripe.calls)
    async with container.db.transaction() as session:
        row = await sync.sync_subscription(session, container, sub_id, prefetched=early)
        assert row.cancel_at_period_end  # Stripe's newer state, read again
    assert gateway.stripe.calls[calls:] == ["retrieve_subscription"]

    current = await sync.prefetch_subscription(container, sub_id)
    calls = len(gateway.stripe.calls)
    async with container.db.transaction() as session:
        row = await sync.sync_subscription(session, container, sub_id, prefetched=current)
        assert row.cancel_at_period_end
    assert gateway.stripe.calls[calls:] == []  # the current read was used as it was


async def test_a_plan_named_by_code_is_sold_in_the_accounts_currency(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    async with container.db.transaction() as session:
        euro = await get_or_create_account(
            session, AccountKind.SHOP, "shop.example", currency="eur"
        )
    started = await _checkout(container, euro, audit, plan="premium", interval="yearly")
    assert started.price_id == synced["billfold_premium_yearly_eur"]
    dollars = await _account(container, "dan")
    started = await _checkout(container, dollars, audit, plan="premium", interval="yearly")
    assert started.price_id == synced[YEARLY]


async def test_a_customer_deleted_in_stripe_is_unlinked(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    account = await _account(container)
    first = await _checkout(container, account, audit, price_id=MONTHLY)
    deleted = gateway.stripe.emit("customer.deleted", {"id": first.customer_id, "deleted": True})
    await _apply_all(container, [deleted])
    async with container.db.transaction() as session:
        fresh = await session.get(BillingAccount, account.id)
        assert fresh is not None and fresh.stripe_customer_id is None
    # The next checkout creates a new customer (a new idempotency key, not a replay).
    again = await _checkout(container, fresh, audit, price_id=YEARLY)
    assert again.customer_id != first.customer_id


async def test_changes_made_in_stripe_land_in_the_audit_log(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str], audit: Any
) -> None:
    """A cancellation scheduled in Stripe's portal (not through billfold) is audited as
    Stripe's action, with what changed."""
    account, sub_id = await _subscribed(container, gateway, audit)
    before = len(gateway.stripe.events)
    await gateway.subscriptions.update(sub_id, cancel_at_period_end=True, idempotency_key="portal")
    await _apply_all(container, gateway.stripe.events[before:])
    async with container.db.transaction() as session:
        entry = (
            await session.execute(
                select(AuditEntry).where(AuditEntry.action == "subscription.updated")
            )
        ).scalar_one()
    assert entry.actor == "stripe" and entry.account_id == account.id
    assert entry.details["changed"]["cancel_at_period_end"] == {"from": False, "to": True}


async def test_concurrent_events_link_a_customer_created_outside_billfold(
    container: Container, gateway: FakeStripeGateway, synced: dict[str, str]
) -> None:
    """Checkout created the customer (not billfold): the concurrent events that link it to the
    account and record the subscription take their locks in one order, so none fails."""
    import asyncio

    from billfold.stripe.inbox import process_event

    account = await _account(container, "outsider")
    customer_id = (
        await gateway.customers.create(
            email=None, name=None, metadata={}, idempotency_key="elsewhere"
        )
    ).id
    started = await gateway.checkout.create_session(
        mode="subscription",
        customer_id=customer_id,
        line_items=[LineItem(price_id=synced[MONTHLY])],
        success_url="https://app.example.com/ok",
        cancel_url="https://app.example.com/no",
        client_reference_id=account.id,
        metadata={"billfold_account_id": account.id},
        idempotency_key="cs-elsewhere",
    )
    gateway.stripe.complete_checkout(started.id)
    events = gateway.stripe.events

    async def deliver(event: dict[str, Any]) -> None:
        async with container.db.transaction() as session:
            await store_event(session, event, source="webhook", clock=container.clock)
        await process_event(container, event["id"])

    await asyncio.gather(*(deliver(e) for e in events * 3))
    async with container.db.transaction() as session:
        rows = (await session.execute(select(WebhookEvent))).scalars().all()
        linked = await session.get(BillingAccount, account.id)
    assert all(r.status == "processed" and r.attempts == 1 for r in rows), [
        (r.type, r.status, r.attempts, r.last_error) for r in rows
    ]
    assert linked is not None and linked.stripe_customer_id == customer_id
    assert (await _status(container, account)).has_premium
