"""How Stripe's events change billfold's subscriptions: `handlers`, which the composition root
(billfold.wiring) gives the webhook inbox.

Each handler writes Stripe's current state of the subscription (`sync_subscription`) rather
than the event's copy, so duplicates, retries and any delivery order end in the same state. The
read from Stripe happens in `prepare`, before the event's transaction, and is used only if no
one wrote the subscription in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from billfold.audit.context import system_audit_context
from billfold.container import Container
from billfold.customers.service import ACCOUNT_METADATA_KEY, unlink_stripe_customer
from billfold.stripe.gateway import (
    StripeEvent,
    checkout_session_from_stripe,
    invoice_subscription_id,
    subscription_from_stripe,
)
from billfold.stripe.inbox import WebhookHandlers
from billfold.subscriptions.sync import (
    NotedRevision,
    PrefetchedSubscription,
    link_checkout_customer,
    prefetch_subscription,
    subscription_revisions,
    sync_subscription,
)

handlers = WebhookHandlers()

PREPARED = "subscription"
NOTED = "subscription_revision"
# A batch's reads from Stripe, shared by its events about the same subscription.
READS = "subscription_reads"


def subscription_of(event: StripeEvent) -> str | None:
    """The subscription an event is about, if any."""
    obj = event.object
    if event.type.startswith("checkout.session."):
        checkout = checkout_session_from_stripe(obj)
        return checkout.subscription_id if checkout.mode == "subscription" else None
    if event.type.startswith("customer.subscription."):
        return str(obj["id"]) if obj.get("id") else None
    if event.type.startswith("invoice."):
        return invoice_subscription_id(obj)
    return None


async def note(session: AsyncSession, events: Sequence[StripeEvent]) -> None:
    """Before a batch's `prepare` hooks: the revisions of the rows its events are about (one
    statement), and one read from Stripe per subscription for the batch to share."""
    about = {event.id: subscription_of(event) for event in events}
    revisions = await subscription_revisions(session, {s for s in about.values() if s})
    reads: dict[str, asyncio.Future[PrefetchedSubscription]] = {}
    for event in events:
        subscription_id = about[event.id]
        if subscription_id:
            event.prepared[NOTED] = NotedRevision(subscription_id, revisions.get(subscription_id))
            event.prepared[READS] = reads


async def prepare(container: Container, event: StripeEvent) -> None:
    subscription_id = subscription_of(event)
    noted = event.prepared.pop(NOTED, None)
    reads = event.prepared.pop(READS, None)
    if not subscription_id:
        return
    fetch = prefetch_subscription(
        container, subscription_id, noted=noted if isinstance(noted, NotedRevision) else None
    )
    if not isinstance(reads, dict):
        event.prepared[PREPARED] = await fetch
        return
    shared = reads.get(subscription_id)
    if shared is None:
        shared = reads[subscription_id] = asyncio.ensure_future(fetch)
    else:
        fetch.close()  # another event of the batch reads it
    event.prepared[PREPARED] = await asyncio.shield(shared)


def _prefetched(event: StripeEvent) -> PrefetchedSubscription | None:
    found = event.prepared.get(PREPARED)
    return found if isinstance(found, PrefetchedSubscription) else None


@handlers.on(
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    prepare=prepare,
    note=note,
)
async def on_checkout_completed(
    session: AsyncSession, container: Container, event: StripeEvent
) -> None:
    """A paid subscription Checkout: link the customer and record the subscription."""
    checkout = checkout_session_from_stripe(event.object)
    if checkout.mode != "subscription" or not checkout.subscription_id:
        return  # one-off payments belong to other domains' handlers
    account_id = checkout.metadata.get(ACCOUNT_METADATA_KEY) or checkout.client_reference_id
    await link_checkout_customer(
        session, account_id, checkout.customer_id, now=container.clock.now()
    )
    await sync_subscription(
        session,
        container,
        checkout.subscription_id,
        account_hint=account_id,
        seen_at=event.created,
        prefetched=_prefetched(event),
        audit=system_audit_context("stripe", container.clock),
    )


@handlers.on(
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
    prepare=prepare,
    note=note,
)
async def on_subscription_changed(
    session: AsyncSession, container: Container, event: StripeEvent
) -> None:
    obj = event.object
    if not obj.get("id"):
        return
    await sync_subscription(
        session,
        container,
        str(obj["id"]),
        seen_at=event.created,
        fallback=subscription_from_stripe(obj),
        prefetched=_prefetched(event),
        audit=system_audit_context("stripe", container.clock),
    )


@handlers.on(
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.payment_action_required",
    prepare=prepare,
    note=note,
)
async def on_invoice(session: AsyncSession, container: Container, event: StripeEvent) -> None:
    """A renewal paid or failed: the subscription's status (active, past_due) follows."""
    subscription_id = invoice_subscription_id(event.object)
    if not subscription_id:
        return
    await sync_subscription(
        session,
        container,
        subscription_id,
        seen_at=event.created,
        prefetched=_prefetched(event),
        audit=system_audit_context("stripe", container.clock),
    )


@handlers.on("customer.deleted")
async def on_customer_deleted(
    session: AsyncSession, container: Container, event: StripeEvent
) -> None:
    """A customer deleted in Stripe: unlink it, so the next checkout creates a new one instead
    of failing on a customer that no longer exists."""
    await unlink_stripe_customer(
        session, str(event.object.get("id") or ""), now=container.clock.now()
    )
