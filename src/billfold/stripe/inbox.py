"""The Stripe webhook inbox: verify, store once, answer fast, apply exactly once.

1. `receive_webhook` checks the signature on the raw body against every configured secret
   (rotation) with Stripe's 300 s tolerance, and stores the event under its unique id
   (INSERT ... ON CONFLICT DO NOTHING) in the request's transaction. A forged or stale request
   stores nothing. Both webhook routes (`/api/v1/payments/webhook`, `/api/stripe/webhook`) call it.
   A new delivery's `note` hooks run in that same transaction (one statement each, e.g. the
   version of the row the event is about); a repeat of an event already applied is not
   scheduled again.
2. After the commit, `process_event` applies the event: the handlers' `prepare` hooks ask
   Stripe what they need with no transaction open, then, in a transaction of its own, the inbox
   row is claimed (one `UPDATE ... RETURNING` that locks it, skipping a row another worker
   holds, and marks it processed), the handlers run, and everything commits together, so an
   event is applied once even when delivered twice, concurrently, or replayed by
   `billfold stripe sync`.
3. A failure rolls that whole transaction back (the handlers' writes and the claim) and
   records the error, the traceback and the attempt in a new one; `process_due` (the server's
   retry loop, `billfold stripe retry`) tries again with backoff.

Handlers are registered per event type (`register_handler`); the subscription handlers live in
`billfold.subscriptions.handlers`, and other domains add theirs to `HANDLER_MODULES`.
"""

from __future__ import annotations

import importlib
import json
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import stripe
from prometheus_client import Counter
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.clock import Clock, SystemClock
from billfold.config import Settings
from billfold.container import Container
from billfold.db.dialect import insert_ignoring_conflict
from billfold.errors import ConfigurationError, ValidationFailed
from billfold.observability import REGISTRY
from billfold.stripe.gateway import StripeEvent, gateway_of
from billfold.stripe.models import InboxStatus, WebhookEvent

log = logging.getLogger("billfold.stripe.inbox")

SIGNATURE_TOLERANCE_SECONDS = 300
MAX_ATTEMPTS = 12
MAX_PAYLOAD_BYTES = 1024 * 1024

EVENTS_RECEIVED = Counter(
    "billfold_stripe_events_received_total",
    "Stripe events received, by whether they were new or a repeat.",
    ["outcome"],
    registry=REGISTRY,
)
EVENTS_APPLIED = Counter(
    "billfold_stripe_events_applied_total",
    "Attempts to apply a stored Stripe event, by type and outcome.",
    ["type", "outcome"],
    registry=REGISTRY,
)
SIGNATURES_REFUSED = Counter(
    "billfold_stripe_webhooks_refused_total",
    "Webhook deliveries refused (bad, stale or missing signature).",
    registry=REGISTRY,
)

Handler = Callable[[AsyncSession, Container, StripeEvent], Awaitable[None]]
# Runs before the event's transaction, holding no lock: asks Stripe what the handler will need
# and leaves it in `event.prepared` (the handler checks it is still current, or asks again).
Prepare = Callable[[Container, StripeEvent], Awaitable[None]]
# Runs in the transaction that stores a new delivery: notes (in `event.prepared`) what `prepare`
# would otherwise open a transaction of its own to read, e.g. a row's version.
Note = Callable[[AsyncSession, StripeEvent], Awaitable[None]]
_handlers: dict[str, list[Handler]] = {}
_preparers: dict[str, list[Prepare]] = {}
_notes: dict[str, list[Note]] = {}

# Modules that register handlers when imported. Add your domain's module here.
HANDLER_MODULES = ["billfold.subscriptions.handlers"]
_loaded = False


def register_handler(
    *event_types: str, prepare: Prepare | None = None, note: Note | None = None
) -> Callable[[Handler], Handler]:
    """Decorator: run this coroutine for every event of these types, inside the transaction
    that marks the event processed; `prepare` (optional) runs first, outside it; `note`
    (optional) runs in the transaction that stores a new delivery (a `prepare` must still work
    without what it notes: retries and `billfold stripe sync` do not run it)."""

    def decorate(handler: Handler) -> Handler:
        for event_type in event_types:
            _handlers.setdefault(event_type, []).append(handler)
            if prepare is not None:
                _preparers.setdefault(event_type, []).append(prepare)
            if note is not None and note not in _notes.get(event_type, []):
                _notes.setdefault(event_type, []).append(note)
        return handler

    return decorate


def _load_handlers() -> None:
    global _loaded
    if not _loaded:
        for name in HANDLER_MODULES:
            importlib.import_module(name)
        _loaded = True


def handlers_for(event_type: str) -> list[Handler]:
    _load_handlers()
    return list(_handlers.get(event_type, []))


def preparers_for(event_type: str) -> list[Prepare]:
    _load_handlers()
    return list(_preparers.get(event_type, []))


def notes_for(event_type: str) -> list[Note]:
    _load_handlers()
    return list(_notes.get(event_type, []))


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """The inbox's answer to a delivery: which event, and whether it was new."""

    id: str
    type: str
    inserted: bool
    # The event as received (lets the first application skip reading it back).
    event: StripeEvent | None = field(default=None, compare=False, repr=False)
    # A repeat of an event already applied (or abandoned): nothing left to do.
    done: bool = False


def verify_signature(
    settings: Settings, payload: bytes, signature_header: str | None
) -> dict[str, Any]:
    """The event's JSON when `signature_header` signs `payload` with one of the configured
    secrets within the tolerance; ValidationFailed otherwise (or when the signed body is not a
    JSON object). With no secret configured every request is refused: billfold never accepts
    an unsigned event. Only the signature is checked with the SDK (`verify_header`): building
    its event object would cost more than the rest of storing the event."""
    secrets = settings.webhook_secrets
    if not secrets:
        raise ConfigurationError(
            "STRIPE_WEBHOOK_SECRET is not set: billfold refuses every webhook until it is"
        )
    if not signature_header:
        SIGNATURES_REFUSED.inc()
        raise ValidationFailed("missing Stripe-Signature header", field="Stripe-Signature")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValidationFailed("webhook body is too large")
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature_header, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError:
            continue
        try:
            body = json.loads(payload)
        except ValueError as exc:
            raise ValidationFailed("webhook body is not a JSON event") from exc
        if not isinstance(body, dict):
            raise ValidationFailed("webhook body is not a JSON event")
        return body
    SIGNATURES_REFUSED.inc()
    raise ValidationFailed("invalid or expired Stripe signature", field="Stripe-Signature")


async def store_event(
    session: AsyncSession, body: dict[str, Any], *, source: str, clock: Clock | None = None
) -> StoredEvent:
    """Insert an event into the inbox unless its id is there already."""
    event_id = body.get("id")
    event_type = body.get("type")
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise ValidationFailed("the event has no id or type")
    if len(event_id) > 255 or not event_type or len(event_type) > 100:
        raise ValidationFailed("the event's id or type is too long")
    inserted = await insert_ignoring_conflict(
        session,
        WebhookEvent.__table__,  # type: ignore[arg-type]
        {
            "id": event_id,
            "type": event_type,
            "stripe_created": int(body.get("created") or 0),
            "livemode": bool(body.get("livemode")),
            "payload": body,
            "source": source,
            "status": InboxStatus.PENDING.value,
            "attempts": 0,
            "received_at": (clock or SystemClock()).now(),
        },
        ["id"],
    )
    return StoredEvent(
        id=event_id,
        type=event_type,
        inserted=inserted,
        event=StripeEvent(
            id=event_id, type=event_type, created=int(body.get("created") or 0), payload=body
        ),
    )


async def receive_webhook(
    session: AsyncSession,
    settings: Settings,
    payload: bytes,
    signature_header: str | None,
    *,
    clock: Clock | None = None,
) -> StoredEvent:
    """Verify a delivery and store it once (in the caller's transaction). Raises
    ValidationFailed (400) for a forged, stale or unsigned request, which stores nothing, and
    ConfigurationError when no webhook secret is configured. Process the event after the
    commit with `process_event` (or let the retry loop pick it up)."""
    body = verify_signature(settings, payload, signature_header)
    stored = await store_event(session, body, source="webhook", clock=clock)
    if stored.inserted and stored.event is not None:
        for note in notes_for(stored.type):
            await note(session, stored.event)
    else:
        found = (
            await session.execute(select(WebhookEvent.status).where(WebhookEvent.id == stored.id))
        ).scalar_one_or_none()
        if found in _DONE:
            stored = StoredEvent(id=stored.id, type=stored.type, inserted=False, done=True)
    EVENTS_RECEIVED.labels("new" if stored.inserted else "duplicate").inc()
    return stored


_DONE = (InboxStatus.PROCESSED.value, InboxStatus.DEAD.value)
_DUE = (InboxStatus.PENDING.value, InboxStatus.FAILED.value)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(3600, 5 * 2 ** max(0, attempts - 1)))


async def process_event(container: Container, event_id: str | StoredEvent) -> str | None:
    """Apply one stored event in its own transaction, unless it was applied already. Returns
    the event's status afterwards (None when another worker holds it or it does not exist).

    The handlers' `prepare` hooks run first with no transaction open, so the slow part (asking
    Stripe) holds no lock; on SQLite a transaction is a database-wide write lock. Given the
    `StoredEvent` of a delivery that was just inserted, the event is not read back first (and
    given a repeat of an event already applied, nothing is done)."""
    db = container.db
    event: StripeEvent | None = None
    if isinstance(event_id, StoredEvent):
        if event_id.done:
            return None
        event = event_id.event if event_id.inserted else None
        event_id = event_id.id
    if event is None:
        async with db.transaction() as session:
            found = await session.get(WebhookEvent, event_id)
            if found is None or found.status in _DONE:
                return found.status if found is not None else None
            event = StripeEvent(
                id=found.id,
                type=found.type,
                created=found.stripe_created,
                payload=dict(found.payload),
            )
    try:
        for prepare in preparers_for(event.type):
            await prepare(container, event)
    except Exception:
        event.prepared.clear()  # the handlers ask Stripe themselves, under their locks
    try:
        async with db.transaction() as session:
            if not await _claim(session, container, event_id):
                return await _status_of(session, event_id)
            for handler in handlers_for(event.type):
                await handler(session, container, event)
    except Exception as exc:
        return await _record_failure(container, event_id, exc)
    EVENTS_APPLIED.labels(event.type, InboxStatus.PROCESSED.value).inc()
    return InboxStatus.PROCESSED.value


async def _claim(session: AsyncSession, container: Container, event_id: str) -> bool:
    """Lock a due event's row and mark it processed, in one statement; False when it is done
    already or (PostgreSQL) another worker holds it. If a handler fails, the transaction's
    rollback undoes the mark along with the handlers' writes."""
    due: ColumnElement[bool] = (WebhookEvent.id == event_id) & WebhookEvent.status.in_(_DUE)
    if not container.db.is_sqlite:
        held = select(WebhookEvent.id).where(due).with_for_update(skip_locked=True)
        due = WebhookEvent.id.in_(held.scalar_subquery())
    stmt = (
        update(WebhookEvent)
        .where(due)
        .values(
            status=InboxStatus.PROCESSED.value,
            attempts=WebhookEvent.attempts + 1,
            processed_at=container.clock.now(),
            last_error=None,
            last_traceback=None,
            next_attempt_at=None,
        )
        .returning(WebhookEvent.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(stmt)).scalar_one_or_none() is not None


async def _status_of(session: AsyncSession, event_id: str) -> str | None:
    """A done event's status; None when it is missing or another worker holds it."""
    found = (
        await session.execute(select(WebhookEvent.status).where(WebhookEvent.id == event_id))
    ).scalar_one_or_none()
    return found if found in _DONE else None


async def _record_failure(container: Container, event_id: str, exc: Exception) -> str | None:
    """Record a failed attempt (its handlers' writes were rolled back), with backoff."""
    db = container.db
    error = f"{type(exc).__name__}: {exc}"[:4000]
    trace = "".join(traceback.format_exception(exc))[-16000:]
    async with db.transaction() as session:
        stmt = select(WebhookEvent).where(WebhookEvent.id == event_id)
        stmt = stmt.with_for_update(skip_locked=True) if not db.is_sqlite else stmt
        row = (await session.execute(stmt)).scalar_one_or_none()
        if row is None or row.status in _DONE:
            return row.status if row is not None else None
        row.attempts += 1
        row.last_error = error
        row.last_traceback = trace
        dead = row.attempts >= MAX_ATTEMPTS
        row.status = (InboxStatus.DEAD if dead else InboxStatus.FAILED).value
        row.next_attempt_at = None if dead else container.clock.now() + _backoff(row.attempts)
        EVENTS_APPLIED.labels(row.type, row.status).inc()
        log.warning(
            "stripe event %s (%s) failed, attempt %d: %s", row.id, row.type, row.attempts, error
        )
        return row.status


async def process_event_safely(container: Container, event: str | StoredEvent) -> None:
    """`process_event` for a background task: logs instead of raising (the retry loop and
    `billfold stripe retry` pick up whatever is left). Pass the `StoredEvent` itself to save
    reading a new event back."""
    try:
        await process_event(container, event)
    except Exception:
        log.exception("processing stripe event %s", getattr(event, "id", event))


@dataclass
class ProcessReport:
    processed: int = 0
    failed: int = 0
    skipped: int = 0


async def process_due(
    container: Container, *, limit: int = 200, include_dead: bool = False
) -> ProcessReport:
    """Apply every pending event and every failed one whose next attempt is due, oldest first
    (the retry loop and `billfold stripe retry`). `include_dead` also retries the abandoned."""
    now = container.clock.now()
    statuses = [InboxStatus.PENDING.value, InboxStatus.FAILED.value]
    if include_dead:
        statuses.append(InboxStatus.DEAD.value)
    async with container.db.transaction() as session:
        stmt = (
            select(WebhookEvent.id)
            .where(WebhookEvent.status.in_(statuses))
            .where(or_(WebhookEvent.next_attempt_at.is_(None), WebhookEvent.next_attempt_at <= now))
            .order_by(WebhookEvent.stripe_created, WebhookEvent.received_at)
            .limit(limit)
        )
        ids = list((await session.execute(stmt)).scalars().all())
        if include_dead and ids:
            for row in (
                await session.execute(
                    select(WebhookEvent).where(
                        WebhookEvent.id.in_(ids), WebhookEvent.status == InboxStatus.DEAD.value
                    )
                )
            ).scalars():
                row.status = InboxStatus.FAILED.value
                row.attempts = 0
    report = ProcessReport()
    for event_id in ids:
        outcome = await process_event(container, event_id)
        if outcome == InboxStatus.PROCESSED.value:
            report.processed += 1
        elif outcome in (InboxStatus.FAILED.value, InboxStatus.DEAD.value):
            report.failed += 1
        else:
            report.skipped += 1
    return report


@dataclass
class SyncReport:
    seen: int = 0
    stored: int = 0
    applied: ProcessReport | None = None


async def sync_events(
    container: Container, *, since: int | None = None, apply: bool = True
) -> SyncReport:
    """Fill gaps from Stripe's Events API (after downtime): store every event created since
    `since` (default: five minutes before the newest event in the inbox, or the last 30 days)
    that the inbox lacks, then apply what is due."""
    gateway = gateway_of(container)
    if since is None:
        async with container.db.transaction() as session:
            newest = (
                await session.execute(
                    select(WebhookEvent.stripe_created)
                    .order_by(WebhookEvent.stripe_created.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
        since = (
            int(newest) - 300
            if newest
            else int((container.clock.now() - timedelta(days=30)).timestamp())
        )
    report = SyncReport()
    async for event in gateway.events.list(created_after=since):
        report.seen += 1
        async with container.db.transaction() as session:
            stored = await store_event(session, event.payload, source="sync", clock=container.clock)
        if stored.inserted:
            report.stored += 1
    if apply:
        report.applied = await process_due(container, limit=100_000)
    return report
