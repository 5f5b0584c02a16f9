"""The Stripe webhook inbox: verify, store once, answer fast, apply in batches, exactly once.

1. `receive_webhook` checks the signature on the raw body against every configured secret
   (rotation) with Stripe's 300 s tolerance, and stores the event under its unique id together
   with the job that applies it (key `stripe-event:<id>`) in ONE statement on one checkout (on
   PostgreSQL a CTE: INSERT the event ... ON CONFLICT (id) DO NOTHING, then its job from what
   that inserted, in autocommit; on SQLite the same two INSERTs in one transaction). A forged or
   stale request stores nothing; a repeat writes nothing new and is answered 200 (`duplicate`).
   Both webhook routes (`/api/v1/payments/webhook`, `/api/stripe/webhook`) call it.
2. The events are applied in batches by the job runner (billfold.jobs; `stripe.apply_event` is
   a batch kind): right after the response by `apply_due` (one drain at a time per process:
   the deliveries of a backlog that arrive meanwhile wait for the next one, which takes them
   all), else by any worker. A batch of up to `BATCH_SIZE` claimed jobs: the events are read
   and the handlers' `note` hooks run in one read unit of work (one statement each for the
   whole batch, e.g. the versions of the rows the events are about); the `prepare` hooks ask
   Stripe what they need concurrently with no transaction open; then, in one transaction, the
   batch's unapplied events are locked, applied in Stripe's order (`created`), marked processed
   together, and their jobs marked done together, so an event is applied once even when
   delivered twice, concurrently, or replayed by `billfold stripe sync`.
3. When a handler fails, that transaction rolls back and the batch is applied again with each
   event in a savepoint: the failing one's is rolled back and its failure recorded on its own
   job and row in the same transaction (the batch's others still commit); the runner
   backs the job off and gives up after `MAX_ATTEMPTS` (dead), and the event row mirrors the
   job's status, error and traceback for `billfold stripe events`. There is no retry loop of
   the inbox's own: `billfold jobs retry` / `billfold stripe retry` make the job due again.

Domains declare their handlers on a `WebhookHandlers` of their own (`@handlers.on(...)`); the
composition root (billfold.wiring) combines them into `container.webhook_handlers`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import BigInteger, Boolean, Integer, String, bindparam, case, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.clock import Clock, FrozenClock, SystemClock
from billfold.config import Settings
from billfold.container import Container
from billfold.db.base import JSONType, UTCDateTime
from billfold.db.dialect import insert_ignoring_conflict
from billfold.db.engine import Database
from billfold.errors import ConfigurationError, ValidationFailed
from billfold.jobs import (
    Job,
    JobBatch,
    JobFailure,
    JobRegistry,
    JobRun,
    JobRunner,
    JobStatus,
    enqueue,
)
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
# Events applied in one transaction; their `prepare` hooks ask Stripe this many at a time.
BATCH_SIZE = 100
PREPARE_CONCURRENCY = 16

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
# Runs once per batch, before the `prepare` hooks, in a read unit of work, given the batch's
# events of its types: notes (in each `event.prepared`) what `prepare` would otherwise open a
# transaction of its own to read, e.g. the versions of the rows the events are about (one
# statement for them all).
Note = Callable[[AsyncSession, Sequence[StripeEvent]], Awaitable[None]]


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
        it; `note` (optional) runs before the `prepare` hooks, once for the batch's events of
        these types (a `prepare` must still work without what it notes: `process_event` of
        an event that failed before may run it alone, a note that failed leaves nothing)."""

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
    # The event as received.
    event: StripeEvent | None = field(default=None, compare=False, repr=False)


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


_STORE_COLUMNS = (
    bindparam("id", type_=String()),
    bindparam("type", type_=String()),
    bindparam("created", type_=BigInteger()),
    bindparam("livemode", type_=Boolean()),
    bindparam("payload", type_=JSONType),
    bindparam("source", type_=String()),
    bindparam("now", type_=UTCDateTime()),
    bindparam("kind", type_=String()),
    bindparam("job_payload", type_=JSONType),
    bindparam("key", type_=String()),
    bindparam("max_attempts", type_=Integer()),
)
# The event and its job in one statement (PostgreSQL). A new event's job is written (or, when
# an earlier job with its key is done or dead, queued again: it applied a row since pruned); a
# repeat inserts nothing, so its job is left as it is. Returns whether the event was new.
_STORE_POSTGRESQL = text(
    """
    WITH new_event AS (
        INSERT INTO stripe_webhook_events
            (id, type, stripe_created, livemode, payload, source, status, attempts, received_at)
        VALUES (:id, :type, :created, :livemode, :payload, :source, 'pending', 0, :now)
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    ), new_job AS (
        INSERT INTO jobs (kind, payload, key, status, attempts, max_attempts, run_at, created_at)
        SELECT :kind, :job_payload, :key, 'queued', 0, :max_attempts, :now, :now FROM new_event
        ON CONFLICT (key) DO UPDATE SET
            payload = excluded.payload, status = excluded.status, attempts = 0,
            max_attempts = excluded.max_attempts, run_at = excluded.run_at,
            created_at = excluded.created_at, finished_at = NULL, last_error = NULL,
            traceback = NULL
        WHERE jobs.status IN ('done', 'dead')
        RETURNING id
    )
    SELECT EXISTS (SELECT 1 FROM new_event)
    """
).bindparams(*_STORE_COLUMNS)


def _store_values(body: dict[str, Any], source: str, now: datetime) -> dict[str, Any]:
    event_id, event_type, created = check_envelope(body)
    return {
        "id": event_id,
        "type": event_type,
        "created": created,
        "livemode": bool(body.get("livemode")),
        "payload": body,
        "source": source,
        "now": now,
        "kind": APPLY_EVENT,
        "job_payload": {"event_id": event_id, "type": event_type},
        "key": job_key(event_id),
        "max_attempts": MAX_ATTEMPTS,
    }


async def _store_in(session: AsyncSession, values: dict[str, Any]) -> bool:
    """The event and its job, in `session`'s transaction; True when the event was new."""
    if session.get_bind().dialect.name == "postgresql":
        return bool((await session.execute(_STORE_POSTGRESQL, values)).scalar())
    inserted = await insert_ignoring_conflict(
        session,
        WebhookEvent.__table__,  # type: ignore[arg-type]
        {
            "id": values["id"],
            "type": values["type"],
            "stripe_created": values["created"],
            "livemode": values["livemode"],
            "payload": values["payload"],
            "source": values["source"],
            "status": InboxStatus.PENDING.value,
            "attempts": 0,
            "received_at": values["now"],
        },
        ["id"],
    )
    if inserted:
        await _enqueue_apply(
            session, values["id"], values["type"], FrozenClock(values["now"]), requeue_finished=True
        )
    return inserted


def _stored(values: dict[str, Any], inserted: bool) -> StoredEvent:
    return StoredEvent(
        id=values["id"],
        type=values["type"],
        inserted=inserted,
        event=StripeEvent(
            id=values["id"],
            type=values["type"],
            created=values["created"],
            payload=values["payload"],
        ),
    )


async def store_event(
    session: AsyncSession, body: dict[str, Any], *, source: str, clock: Clock | None = None
) -> StoredEvent:
    """Insert an event into the inbox unless its id is there already, and with it (same
    statement on PostgreSQL, same transaction) the job that applies it."""
    values = _store_values(body, source, (clock or SystemClock()).now())
    return _stored(values, await _store_in(session, values))


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
    db: Database,
    settings: Settings,
    payload: bytes,
    signature_header: str | None,
    *,
    clock: Clock | None = None,
) -> StoredEvent:
    """Verify a delivery and store it once with the job that applies it: one statement on one
    checkout, a unit of work of its own (`Database.execute_alone`). Raises ValidationFailed
    (400) for a forged, stale or unsigned request, which stores nothing, and
    ConfigurationError when no webhook secret is configured. `apply_due` then applies it (or
    any worker does)."""
    body = verify_signature(settings, payload, signature_header)
    values = _store_values(body, "webhook", (clock or SystemClock()).now())
    if db.dialect == "postgresql":
        rows = await db.execute_alone(_STORE_POSTGRESQL, values)
        inserted = bool(rows and rows[0][0])
    else:
        async with db.transaction() as session:
            inserted = await _store_in(session, values)
    EVENTS_RECEIVED.labels("new" if inserted else "duplicate").inc()
    return _stored(values, inserted)


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


@jobs.batch_kind(
    APPLY_EVENT, size=BATCH_SIZE, max_attempts=MAX_ATTEMPTS, on_failure=_mirror_failure
)
async def apply_events(batch: JobBatch) -> None:
    """The job kind that applies stored events, a batch at a time (see the module's doc)."""
    container = batch.container
    handlers = handlers_of(container)
    runs = {str(run.payload["event_id"]): run for run in batch.runs}
    events = await _read_and_note(container, handlers, list(runs))
    await _prepare(container, handlers, events)
    try:
        # Most batches fail nowhere: no savepoints (two round trips an event less).
        applied = await _apply(batch, handlers, events, runs, isolated=False)
    except _Isolate as failed:
        # A handler failed: the whole transaction rolled back. Again, that event's failure
        # recorded as it was (not tried a second time), the others each in a savepoint of its
        # own, so that one's failure is recorded without losing the others.
        applied = await _apply(batch, handlers, events, runs, isolated=True, failed=failed)
    for event in applied:
        EVENTS_APPLIED.labels(event.type, InboxStatus.PROCESSED.value).inc()


class _Isolate(Exception):
    """A handler of event `event_id` failed (`error`) in a batch applied without savepoints."""

    def __init__(self, event_id: str, error: Exception) -> None:
        super().__init__(event_id)
        self.event_id = event_id
        self.error = error


async def _apply(
    batch: JobBatch,
    handlers: WebhookHandlers,
    events: list[StripeEvent],
    runs: dict[str, JobRun],
    *,
    isolated: bool,
    failed: _Isolate | None = None,
) -> list[StripeEvent]:
    """The batch's transaction: its unapplied events locked, applied in Stripe's order, marked
    processed together (and their jobs done, by the runner, as it commits)."""
    container = batch.container
    async with batch.transaction() as session:
        # Locked until this commits: an event applied meanwhile (by a concurrent `process_event`
        # or `sync`) is left alone, and one applied after waits for this and then sees it done.
        lock = select(WebhookEvent.id).where(
            WebhookEvent.id.in_([event.id for event in events]),
            WebhookEvent.status != InboxStatus.PROCESSED.value,
        )
        if not container.db.is_sqlite:
            lock = lock.with_for_update()
        unapplied = set((await session.execute(lock)).scalars()) if events else set()
        applied: list[StripeEvent] = []
        for event in events:  # in Stripe's order
            if event.id not in unapplied:
                continue  # applied already: its job is done
            if not isolated:
                try:
                    for handler in handlers.handlers_for(event.type):
                        await handler(session, container, event)
                except Exception as exc:
                    raise _Isolate(event.id, exc) from exc
                applied.append(event)
                continue
            if failed is not None and event.id == failed.event_id:
                await batch.fail(session, runs[event.id], failed.error)
                continue
            try:
                async with session.begin_nested():
                    for handler in handlers.handlers_for(event.type):
                        await handler(session, container, event)
            except Exception as exc:
                await batch.fail(session, runs[event.id], exc)
                continue
            applied.append(event)
        if applied:
            attempts = {event.id: runs[event.id].attempt for event in applied}
            await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id.in_(list(attempts)))
                .values(
                    status=InboxStatus.PROCESSED.value,
                    attempts=case(attempts, value=WebhookEvent.id),
                    processed_at=container.clock.now(),
                    last_error=None,
                    last_traceback=None,
                    next_attempt_at=None,
                )
                .execution_options(synchronize_session=False)
            )
    return applied


async def _read_and_note(
    container: Container, handlers: WebhookHandlers, event_ids: list[str]
) -> list[StripeEvent]:
    """The batch's events not applied yet, in Stripe's order (`created`, so each object's in
    order), read with the notes of their handlers in one read unit of work."""
    async with container.db.read() as session:
        rows = (
            await session.execute(
                select(
                    WebhookEvent.id,
                    WebhookEvent.type,
                    WebhookEvent.stripe_created,
                    WebhookEvent.payload,
                ).where(
                    WebhookEvent.id.in_(event_ids),
                    WebhookEvent.status != InboxStatus.PROCESSED.value,
                )
            )
        ).all()
        events = sorted(
            (StripeEvent(id=row[0], type=row[1], created=row[2], payload=row[3]) for row in rows),
            key=lambda event: (event.created, event.id),
        )
        noted: dict[Note, list[StripeEvent]] = {}
        for event in events:
            for note in handlers.notes_for(event.type):
                noted.setdefault(note, []).append(event)
        for note, about in noted.items():
            # Only a head start for `prepare`: what a note cannot read is left to the handlers.
            try:
                async with session.begin_nested():
                    await note(session, about)
            except Exception:
                log.warning("noting %d events failed", len(about), exc_info=True)
                for event in about:
                    event.prepared.clear()
    return events


async def _prepare(
    container: Container, handlers: WebhookHandlers, events: list[StripeEvent]
) -> None:
    """Every event's `prepare` hooks, `PREPARE_CONCURRENCY` events at a time, no transaction
    open. A hook that fails leaves its event nothing prepared: its handlers ask Stripe
    themselves, under their locks."""
    gate = asyncio.Semaphore(PREPARE_CONCURRENCY)

    async def prepare(event: StripeEvent) -> None:
        preparers = handlers.preparers_for(event.type)
        if not preparers:
            return
        async with gate:
            try:
                for hook in preparers:
                    await hook(container, event)
            except Exception:
                event.prepared.clear()

    await asyncio.gather(*(prepare(event) for event in events))


def _runner(container: Container) -> JobRunner:
    return JobRunner(container, jobs, lease_seconds=container.settings.jobs_lease_seconds)


async def process_event(container: Container, event_id: str | StoredEvent) -> str | None:
    """Run the event's job now, in this process, alone (unless it is done, or a worker holds
    it). Returns the event's status afterwards when it is done (processed, dead) or failed
    here; None when another worker holds it or it does not exist."""
    if isinstance(event_id, StoredEvent):
        event_id = event_id.id
    outcome = await _runner(container).run_now(job_key(event_id))
    if outcome is not None:
        return _OUTCOMES[outcome]
    async with container.db.read() as session:
        found = (
            await session.execute(select(WebhookEvent.status).where(WebhookEvent.id == event_id))
        ).scalar_one_or_none()
    return found if found in _DONE else None


class _Drain:
    """One drain of the inbox's due jobs at a time per database in this process. A caller
    waits for a drain that starts after it asked (so it sees what the caller stored); the
    callers that ask while one runs share the next."""

    def __init__(self) -> None:
        self.wanted: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    async def request(self, container: Container) -> None:
        loop = asyncio.get_running_loop()
        if self.wanted is None or self.wanted.get_loop() is not loop:
            self.wanted = loop.create_future()
        wanted = self.wanted
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._run(container))
        await asyncio.shield(wanted)

    async def _run(self, container: Container) -> None:
        runner = _runner(container)
        while self.wanted is not None:
            wanted, self.wanted = self.wanted, None
            try:
                while claimed := await runner.claim(BATCH_SIZE, kinds=[APPLY_EVENT]):
                    await runner.run_batch(claimed)
                    if len(claimed) < BATCH_SIZE:
                        break  # all that was due; what arrived since has asked for a round
            except Exception:
                log.exception("applying the inbox's due events (a worker will)")
            finally:
                if not wanted.done():
                    wanted.set_result(None)


_drains: weakref.WeakKeyDictionary[Database, _Drain] = weakref.WeakKeyDictionary()


async def apply_due(container: Container) -> None:
    """Apply the inbox's due events here and now, in batches (a webhook route's background
    task): returns once a drain that started after this call has finished. Logs instead of
    raising: whatever is left, any worker applies."""
    drain = _drains.get(container.db)
    if drain is None:
        drain = _drains[container.db] = _Drain()
    await drain.request(container)


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
    runner = _runner(container)
    done = await runner.drain(limit=limit, batch=BATCH_SIZE, kinds=[APPLY_EVENT])
    # A worker may have claimed some of them (a whole batch) before this drain could: wait for
    # it, so that what this returns has been applied (or has failed) either way.
    processed, failed = await _finished_elsewhere(
        container, {event_id for event_id, _ in waiting}, runner.worker_id
    )
    return ProcessReport(
        processed=done.done + processed, failed=done.failed + done.dead + failed, skipped=done.lost
    )


async def _finished_elsewhere(
    container: Container, event_ids: set[str], me: str, *, poll_seconds: float = 0.05
) -> tuple[int, int]:
    """Wait (at most a lease) while other workers run the jobs of any of `event_ids`; how many
    of those events then stand processed, and failed or dead."""
    keys = {job_key(event_id): event_id for event_id in event_ids}
    deadline = time.monotonic() + container.settings.jobs_lease_seconds
    held: set[str] | None = None
    while True:
        async with container.db.read() as session:
            running = {
                str(key)
                for key in (
                    await session.execute(
                        select(Job.key).where(
                            Job.kind == APPLY_EVENT,
                            Job.status == JobStatus.RUNNING.value,
                            Job.locked_by != me,
                        )
                    )
                ).scalars()
                if key in keys
            }
        held = running if held is None else held
        if not running or time.monotonic() > deadline:
            break
        await asyncio.sleep(poll_seconds)
    if not held:
        return 0, 0
    async with container.db.read() as session:
        statuses = list(
            (
                await session.execute(
                    select(WebhookEvent.status).where(
                        WebhookEvent.id.in_([keys[key] for key in held])
                    )
                )
            ).scalars()
        )
    processed = sum(status == InboxStatus.PROCESSED.value for status in statuses)
    failed = sum(
        status in (InboxStatus.FAILED.value, InboxStatus.DEAD.value) for status in statuses
    )
    return processed, failed


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
