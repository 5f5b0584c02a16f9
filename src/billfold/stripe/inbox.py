"""The Stripe webhook inbox: verify, store once, answer fast, apply exactly once.

1. `receive_webhook` checks the signature on the raw body against every configured secret
   (rotation) with Stripe's 300 s tolerance, and stores the event under its unique id
   (INSERT ... ON CONFLICT DO NOTHING) together with the job that applies it (key
   `stripe-event:<id>`), in the request's transaction. A forged or stale request stores
   nothing. Both webhook routes (`/api/v1/payments/webhook`, `/api/stripe/webhook`) call it. A
   new delivery's `note` hooks run in that same transaction (one statement each, e.g. the
   version of the row the event is about); a repeat of an event already applied is not
   scheduled again.
2. The event is applied by the job runner (billfold.jobs): right after the commit by
   `process_event` (the route's background task runs the event's job at once), else by any
   worker. The job's `prepare` hooks ask Stripe what they need with no transaction open; then,
   in the transaction that also marks the job done, the inbox row is marked processed and the
   handlers run, so an event is applied once even when delivered twice, concurrently, or
   replayed by `billfold stripe sync`.
3. A failure rolls that transaction back (the handlers' writes and the mark); the runner backs
   the job off and gives up after `MAX_ATTEMPTS` (dead), and the event row mirrors the job's
   status, error and traceback for `billfold stripe events`. There is no retry loop of the
   inbox's own: `billfold jobs retry` / `billfold stripe retry` make the job due again.

Domains declare their handlers on a `WebhookHandlers` of their own (`@handlers.on(...)`); the
composition root (billfold.wiring) combines them into `container.webhook_handlers`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.clock import Clock, SystemClock
from billfold.config import Settings
from billfold.container import Container
from billfold.db.dialect import insert_ignoring_conflict
from billfold.errors import ConfigurationError, ValidationFailed
from billfold.jobs import JobFailure, JobRegistry, JobRun, JobRunner, JobStatus, enqueue
from billfold.jobs import retry as retry_jobs
from billfold.observability import REGISTRY
from billfold.stripe.gateway import StripeEvent, gateway_of
from billfold.stripe.models import InboxStatus, WebhookEvent

log = logging.getLogger("billfold.stripe.inbox")

SIGNATURE_TOLERANCE_SECONDS = 300
MAX_ATTEMPTS = 12
MAX_PAYLOAD_BYTES = 1024 * 1024
# An event's envelope: Stripe's ids are `evt_` and letters and digits; `created` is a Unix time
# (0 .. the year 2100); nesting and text are bounded so any database can store the payload.
EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,251}")
EVENT_TYPE = re.compile(r"[a-z0-9_.]{1,100}")
MAX_CREATED = 4_102_444_800
MAX_PAYLOAD_DEPTH = 64
APPLY_EVENT = "stripe.apply_event"

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


class WebhookHandlers:
    """Handlers of Stripe's events by type. A domain declares its own at import
    (`handlers = WebhookHandlers()`, `@handlers.on("invoice.paid", prepare=...)`); the
    composition root combines them (`WebhookHandlers.combine`)."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[Handler]] = {}
        self.preparers: dict[str, list[Prepare]] = {}
        self.notes: dict[str, list[Note]] = {}

    def on(
        self, *event_types: str, prepare: Prepare | None = None, note: Note | None = None
    ) -> Callable[[Handler], Handler]:
        """Decorator: run this coroutine for every event of these types, inside the
        transaction that marks the event processed; `prepare` (optional) runs first, outside
        it; `note` (optional) runs in the transaction that stores a new delivery (a `prepare`
        must still work without what it notes: retries and `billfold stripe sync` skip it)."""

        def decorate(handler: Handler) -> Handler:
            for event_type in event_types:
                self.handlers.setdefault(event_type, []).append(handler)
                if prepare is not None:
                    self.preparers.setdefault(event_type, []).append(prepare)
                if note is not None and note not in self.notes.get(event_type, []):
                    self.notes.setdefault(event_type, []).append(note)
            return handler

        return decorate

    @classmethod
    def combine(cls, parts: Iterable[WebhookHandlers]) -> WebhookHandlers:
        combined = cls()
        for part in parts:
            for target, source in (
                (combined.handlers, part.handlers),
                (combined.preparers, part.preparers),
                (combined.notes, part.notes),
            ):
                for event_type, found in source.items():
                    target.setdefault(event_type, []).extend(found)  # type: ignore[arg-type]
        return combined

    def handlers_for(self, event_type: str) -> list[Handler]:
        return list(self.handlers.get(event_type, []))

    def preparers_for(self, event_type: str) -> list[Prepare]:
        return list(self.preparers.get(event_type, []))

    def notes_for(self, event_type: str) -> list[Note]:
        return list(self.notes.get(event_type, []))


def handlers_of(container: Container) -> WebhookHandlers:
    if container.webhook_handlers is None:
        raise ConfigurationError(
            "no webhook handlers are wired into this container (billfold.wiring.wire)"
        )
    return container.webhook_handlers


def job_key(event_id: str) -> str:
    return f"stripe-event:{event_id}"


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
    import stripe  # the SDK loads with the first webhook, not at every start

    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature_header, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError:
            continue
        # The SDK refuses only old signatures; one dated further ahead than the tolerance is
        # not a clock's drift (the SDK's own clock, the system's, is the one it compares with).
        if _signed_at(signature_header) > time.time() + SIGNATURE_TOLERANCE_SECONDS:
            SIGNATURES_REFUSED.inc()
            raise ValidationFailed(
                "the Stripe signature is dated in the future", field="Stripe-Signature"
            )
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise ValidationFailed("webhook body is not a JSON event") from exc
        if not isinstance(body, dict):
            raise ValidationFailed("webhook body is not a JSON event")
        return body
    SIGNATURES_REFUSED.inc()
    raise ValidationFailed("invalid or expired Stripe signature", field="Stripe-Signature")


def _signed_at(signature_header: str) -> int:
    """The `t=` of a header the SDK has verified (so it is there and a number)."""
    for part in signature_header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                return int(value)
            except ValueError:
                break
    return 0


def _check_text(value: Any, depth: int = 0) -> None:
    """Every string (and key) of the payload storable by any database (no NUL, no lone
    surrogate), nesting at most MAX_PAYLOAD_DEPTH deep."""
    if depth > MAX_PAYLOAD_DEPTH:
        raise ValidationFailed("the event nests too deeply", field="data")
    if isinstance(value, str):
        if "\x00" in value or (not value.isprintable() and _has_lone_surrogate(value)):
            raise ValidationFailed(
                "the event holds a NUL character or a lone surrogate", field="data"
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, depth + 1)
            _check_text(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_text(item, depth + 1)


def _has_lone_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_envelope(body: dict[str, Any]) -> tuple[str, str, int]:
    """The event's id, type and `created`, once its envelope is one billfold can store and its
    handlers can read (`data.object` an object); ValidationFailed (400) otherwise."""
    event_id, event_type, created = body.get("id"), body.get("type"), body.get("created")
    if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        raise ValidationFailed("the event's id is not a Stripe event id (evt_...)", field="id")
    if not isinstance(event_type, str) or not EVENT_TYPE.fullmatch(event_type):
        raise ValidationFailed("the event's type is not an event type", field="type")
    if isinstance(created, bool) or not isinstance(created, int):
        raise ValidationFailed("the event's created is not a Unix time", field="created")
    if not 0 <= created <= MAX_CREATED:
        raise ValidationFailed("the event's created is out of range", field="created")
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise ValidationFailed("the event's data.object is not an object", field="data.object")
    _check_text(body)
    return event_id, event_type, created


async def store_event(
    session: AsyncSession, body: dict[str, Any], *, source: str, clock: Clock | None = None
) -> StoredEvent:
    """Insert an event into the inbox unless its id is there already, and with it (same
    transaction) the job that applies it."""
    event_id, event_type, created = check_envelope(body)
    clock = clock or SystemClock()
    inserted = await insert_ignoring_conflict(
        session,
        WebhookEvent.__table__,  # type: ignore[arg-type]
        {
            "id": event_id,
            "type": event_type,
            "stripe_created": created,
            "livemode": bool(body.get("livemode")),
            "payload": body,
            "source": source,
            "status": InboxStatus.PENDING.value,
            "attempts": 0,
            "received_at": clock.now(),
        },
        ["id"],
    )
    if inserted:
        # A new row: any earlier job for this id applied a row that is gone (a pruned inbox).
        await _enqueue_apply(session, event_id, event_type, clock, requeue_finished=True)
    return StoredEvent(
        id=event_id,
        type=event_type,
        inserted=inserted,
        event=StripeEvent(id=event_id, type=event_type, created=created, payload=body),
    )


async def _enqueue_apply(
    session: AsyncSession,
    event_id: str,
    event_type: str,
    clock: Clock,
    *,
    requeue_finished: bool = False,
) -> bool:
    return await enqueue(
        session,
        APPLY_EVENT,
        {"event_id": event_id, "type": event_type},
        key=job_key(event_id),
        max_attempts=MAX_ATTEMPTS,
        clock=clock,
        requeue_finished=requeue_finished,
    )


async def receive_webhook(
    session: AsyncSession,
    settings: Settings,
    payload: bytes,
    signature_header: str | None,
    *,
    clock: Clock | None = None,
    handlers: WebhookHandlers | None = None,
) -> StoredEvent:
    """Verify a delivery and store it once with the job that applies it (in the caller's
    transaction). Raises ValidationFailed (400) for a forged, stale or unsigned request, which
    stores nothing, and ConfigurationError when no webhook secret is configured. `handlers`'
    note hooks run for a new delivery. After the commit, `process_event` applies it at once
    (or any worker does)."""
    body = verify_signature(settings, payload, signature_header)
    stored = await store_event(session, body, source="webhook", clock=clock)
    if stored.inserted and stored.event is not None:
        for note in handlers.notes_for(stored.type) if handlers is not None else ():
            # Only a head start for `prepare`: an object a note cannot read (an empty
            # checkout session) is the handlers' to fail on, as a failed event with its error.
            try:
                async with session.begin_nested():
                    await note(session, stored.event)
            except Exception:
                log.warning("noting event %s failed", stored.id, exc_info=True)
                stored.event.prepared.clear()
    else:
        found = (
            await session.execute(select(WebhookEvent.status).where(WebhookEvent.id == stored.id))
        ).scalar_one_or_none()
        if found in _DONE:
            stored = StoredEvent(id=stored.id, type=stored.type, inserted=False, done=True)
    EVENTS_RECEIVED.labels("new" if stored.inserted else "duplicate").inc()
    return stored


_DONE = (InboxStatus.PROCESSED.value, InboxStatus.DEAD.value)
_OUTCOMES = {
    JobStatus.DONE.value: InboxStatus.PROCESSED.value,
    JobStatus.FAILED.value: InboxStatus.FAILED.value,
    JobStatus.DEAD.value: InboxStatus.DEAD.value,
}

# The inbox's job kind; the composition root adds this registry to the worker's.
jobs = JobRegistry()


async def _mirror_failure(session: AsyncSession, run: JobRun, failure: JobFailure) -> None:
    """In the transaction that records the job's failed attempt: the same on the event's row."""
    status = (InboxStatus.DEAD if failure.dead else InboxStatus.FAILED).value
    await session.execute(
        update(WebhookEvent)
        .where(
            WebhookEvent.id == str(run.payload["event_id"]),
            WebhookEvent.status != InboxStatus.PROCESSED.value,
        )
        .values(
            status=status,
            attempts=run.attempt,
            last_error=failure.error,
            last_traceback=failure.traceback,
            next_attempt_at=failure.retry_at,
        )
        .execution_options(synchronize_session=False)
    )
    EVENTS_APPLIED.labels(str(run.payload.get("type", "")), status).inc()


@jobs.kind(APPLY_EVENT, max_attempts=MAX_ATTEMPTS, on_failure=_mirror_failure)
async def apply_event(run: JobRun) -> None:
    """The job that applies one stored event: `prepare` hooks with no transaction open, then
    the handlers in the transaction that marks both the event processed and the job done."""
    container = run.container
    handlers = handlers_of(container)
    event_id = str(run.payload["event_id"])
    event = run.memo if isinstance(run.memo, StripeEvent) else None
    if event is None:
        async with container.db.transaction() as session:
            found = await session.get(WebhookEvent, event_id)
            if found is None or found.status == InboxStatus.PROCESSED.value:
                return
            event = StripeEvent(
                id=found.id,
                type=found.type,
                created=found.stripe_created,
                payload=dict(found.payload),
            )
    try:
        for prepare in handlers.preparers_for(event.type):
            await prepare(container, event)
    except Exception:
        event.prepared.clear()  # the handlers ask Stripe themselves, under their locks
    async with run.transaction() as session:
        marked = (
            await session.execute(
                update(WebhookEvent)
                .where(
                    WebhookEvent.id == event_id,
                    WebhookEvent.status != InboxStatus.PROCESSED.value,
                )
                .values(
                    status=InboxStatus.PROCESSED.value,
                    attempts=run.attempt,
                    processed_at=container.clock.now(),
                    last_error=None,
                    last_traceback=None,
                    next_attempt_at=None,
                )
                .returning(WebhookEvent.id)
                .execution_options(synchronize_session=False)
            )
        ).scalar_one_or_none()
        if marked is None:
            return  # applied already: the job is done
        for handler in handlers.handlers_for(event.type):
            await handler(session, container, event)
    EVENTS_APPLIED.labels(event.type, InboxStatus.PROCESSED.value).inc()


def _runner(container: Container) -> JobRunner:
    return JobRunner(container, jobs, lease_seconds=container.settings.jobs_lease_seconds)


async def process_event(container: Container, event_id: str | StoredEvent) -> str | None:
    """Run the event's job now, in this process (unless it is done, or a worker holds it).
    Returns the event's status afterwards (None when another worker holds it, or it does not
    exist). Given the `StoredEvent` of a delivery just inserted, the event is not read back
    (and given a repeat of an event already applied, nothing is done)."""
    runner = _runner(container)
    if isinstance(event_id, StoredEvent):
        if event_id.done:
            return None
        stored, event_id = event_id, event_id.id
        # Claimed in the transaction that applies it: one transaction less per delivery.
        outcome = await runner.run_inline(
            APPLY_EVENT,
            job_key(event_id),
            {"event_id": event_id, "type": stored.type},
            memo=stored.event if stored.inserted else None,
        )
    else:
        outcome = await runner.run_now(job_key(event_id))
    if outcome is not None:
        return _OUTCOMES[outcome]
    async with container.db.transaction() as session:
        found = (
            await session.execute(select(WebhookEvent.status).where(WebhookEvent.id == event_id))
        ).scalar_one_or_none()
    return found if found in _DONE else None


async def process_event_safely(container: Container, event: str | StoredEvent) -> None:
    """`process_event` for a background task: logs instead of raising (any worker picks up
    whatever is left). Pass the `StoredEvent` itself to save reading a new event back."""
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
    """Run the due jobs of the inbox here (`billfold stripe retry`, `sync`): pending events
    and failed ones whose back-off is over. `include_dead` first makes every failed and dead
    event's job due again with fresh attempts. Events stored without a job (before the job
    runner) get one."""
    statuses = [InboxStatus.PENDING.value, InboxStatus.FAILED.value]
    if include_dead:
        statuses.append(InboxStatus.DEAD.value)
    async with container.db.transaction() as session:
        waiting = (
            await session.execute(
                select(WebhookEvent.id, WebhookEvent.type)
                .where(WebhookEvent.status.in_(statuses))
                .order_by(WebhookEvent.stripe_created, WebhookEvent.received_at)
                .limit(limit)
            )
        ).all()
        for event_id, event_type in waiting:
            await _enqueue_apply(session, event_id, event_type, container.clock)
        if include_dead:
            await retry_jobs(
                session, all_dead=True, also_failed=True, kind=APPLY_EVENT, clock=container.clock
            )
    done = await _runner(container).drain(limit=limit)
    return ProcessReport(processed=done.done, failed=done.failed + done.dead, skipped=done.lost)


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
        try:
            async with container.db.transaction() as session:
                stored = await store_event(
                    session, event.payload, source="sync", clock=container.clock
                )
        except ValidationFailed as exc:
            log.warning("skipping Stripe event %s: %s", event.id, exc.message)
            continue
        if stored.inserted:
            report.stored += 1
    if apply:
        report.applied = await process_due(container, limit=100_000)
    return report
