"""The operator's console: find an account (by id, email, user, shop or organization), see its
balance, lots, holds, auto top-up, subscription, payment methods, payments and dues, ledger and
audit trail; failed webhook events and dead jobs with their errors,
retried from here; the ledger and audit checks. Operators sign in with an API key or an
operator's link (`admin` claim); every action they take is in the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from billfold.api.deps import ReadSessionDep, SessionDep, end_transaction, get_container
from billfold.audit.verify import verify_chain
from billfold.container import Container
from billfold.credits import autotopup
from billfold.credits import service as credit_service
from billfold.credits.summary import open_lots
from billfold.customers.models import AccountKind, BillingAccount
from billfold.db.base import new_id
from billfold.errors import NotFound, ValidationFailed
from billfold.jobs import JobStatus
from billfold.jobs import retry as retry_jobs
from billfold.jobs.models import Job
from billfold.ledger.verify import verify_ledger
from billfold.payments import methods as payment_methods
from billfold.stripe.inbox import job_key, process_event
from billfold.stripe.models import InboxStatus, WebhookEvent
from billfold.subscriptions.reads import list_subscriptions
from billfold.web.credit_summary import count_format
from billfold.web.credits import SOURCE_LABELS
from billfold.web.csv_export import csv_response
from billfold.web.customer import (
    PAGE_SIZE,
    STATUS_LABELS,
    Cursor,
    PageNumber,
    activity_context,
    audit_rows,
    ledger_csv_of,
    money_attention,
)
from billfold.web.money_state import money_state
from billfold.web.payments import (
    PaymentCursor,
    activity_payments,
    dues_rows,
    method_label,
    payment_rows,
)
from billfold.web.rendering import locale_of, render
from billfold.web.visitors import PanelRoute, PostingOperatorDep, ReadingOperatorDep, panel_audit

router = APIRouter(prefix="/operator", route_class=PanelRoute, include_in_schema=False)

SEARCH_LIMIT = 50
LIST_LIMIT = 100
FAILED_EVENT_STATUSES = (InboxStatus.FAILED.value, InboxStatus.DEAD.value)
FAILED_JOB_STATUSES = (JobStatus.FAILED.value, JobStatus.DEAD.value)
T = TypeVar("T")


async def _newest(session: AsyncSession, stmt: Select[T]) -> Sequence[T]:
    """The first LIST_LIMIT rows of a listing."""
    return (await session.execute(stmt.limit(LIST_LIMIT))).scalars().all()


@router.get("")
async def accounts(
    request: Request,
    session: ReadSessionDep,
    operator: ReadingOperatorDep,
    q: Annotated[str, Query(max_length=320)] = "",
    kind: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    """Find an account by its id, email, or its user, organization or shop id."""
    query = q.strip()
    found: list[BillingAccount] = []
    if query:
        stmt = (
            select(BillingAccount)
            .where(
                or_(
                    BillingAccount.id == query,
                    BillingAccount.external_id == query,
                    BillingAccount.external_id == query.lower(),
                    func.lower(BillingAccount.email) == query.lower(),
                    BillingAccount.stripe_customer_id == query,
                )
            )
            .order_by(BillingAccount.kind, BillingAccount.external_id)
            .limit(SEARCH_LIMIT)
        )
        if kind in {k.value for k in AccountKind}:
            stmt = stmt.where(BillingAccount.kind == kind)
        found = list((await session.execute(stmt)).scalars())
    return render(
        request,
        "operator/accounts.html",
        {
            "title": "Accounts",
            "visitor": operator,
            "q": query,
            "kind": kind,
            "kinds": [k.value for k in AccountKind],
            "found": found,
            "searched": bool(query),
        },
    )


@router.get("/accounts/{account_id}")
async def account(
    request: Request,
    session: ReadSessionDep,
    operator: ReadingOperatorDep,
    account_id: str,
    ledger: Cursor = None,
    page: PageNumber = 1,
    before: Cursor = None,
    payments_before: PaymentCursor = None,
    dues_before: Cursor = None,
    done: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    """One account: its subscriptions, credits (lots, holds, auto top-up; promotional grants
    given and revoked here), payment methods, payments and dues, ledger and audit trail: a
    fixed number of queries, each list bounded."""
    found = await _account_of(session, account_id)
    subscriptions = await list_subscriptions(session, found)
    credits = await credit_service.get_balance(session, found.id)
    grants = await credit_service.promotional_grants(session, found.id)
    money = await _money_context(
        request, session, found, payments_before=payments_before, dues_before=dues_before
    )
    context = await activity_context(session, found, ledger=ledger, page=page, before=before)
    partial = request.headers.get("hx-request") == "true"
    return render(
        request,
        "_activity_customer.html" if partial else "operator/account.html",
        {
            **context,
            "title": f"Account {found.kind} {found.external_id}",
            "visitor": operator,
            "account": found,
            "subscriptions": subscriptions,
            "status_labels": STATUS_LABELS,
            "base": f"/operator/accounts/{found.id}",
            "credits": credits,
            "grants": grants,
            "grant_key": new_id("opg"),
            "notice": done,
            **money,
        },
    )


async def _account_of(session: AsyncSession, account_id: str) -> BillingAccount:
    found = await session.get(BillingAccount, account_id)
    if found is None:
        raise NotFound("no such billing account")
    return found


@router.get("/accounts/{account_id}/ledger.csv")
async def account_ledger_csv(
    request: Request,
    session: ReadSessionDep,
    operator: ReadingOperatorDep,
    account_id: str,
    ledger: Cursor = None,
) -> Response:
    """One of the account's ledgers, as CSV (the customer's activity's file)."""
    found = await _account_of(session, account_id)
    return await ledger_csv_of(request, session, found.id, ledger)


AccountRows = Callable[[Container, str], AsyncIterator[list[str]]]
ACCOUNT_CSVS: dict[str, AccountRows] = {
    "audit": audit_rows,
    "payments": payment_rows,
    "dues": dues_rows,
}


@router.get("/accounts/{account_id}/{name}.csv")
async def account_csv(
    request: Request,
    session: ReadSessionDep,
    operator: ReadingOperatorDep,
    account_id: str,
    name: Literal["audit", "payments", "dues"],
) -> Response:
    """The account's audit trail, payments or dues ledger, as CSV."""
    found = await _account_of(session, account_id)
    rows = ACCOUNT_CSVS[name](get_container(request), found.id)
    return csv_response(rows, f"{name}-{found.id}.csv")


async def _money_context(
    request: Request,
    session: AsyncSession,
    found: BillingAccount,
    *,
    payments_before: str | None,
    dues_before: int | None,
) -> dict[str, object]:
    """The account's lots, holds, auto top-up, payment methods, payments and dues ledger (a
    page each, as the customer's activity) and what needs attention: bounded lists, a fixed
    number of queries."""
    now = get_container(request).clock.now()
    state = await money_state(session, found.id)
    settings = await payment_methods.read_settings(session, found.id)
    return {
        "lots": await open_lots(session, found.id, now=now, limit=LIST_LIMIT),
        "holds": await credit_service.list_holds(session, found.id, limit=PAGE_SIZE),
        "auto_topup": await autotopup.read_settings(session, found.id),
        "sources": SOURCE_LABELS,
        "count": count_format(request),
        "money_state": state,
        "money_attention": money_attention(state, locale_of(request)),
        "methods": [
            (m, method_label(m, None))
            for m in await payment_methods.list_methods(session, found.id, limit=LIST_LIMIT)
        ],
        "default_id": settings.default_payment_method_id if settings else None,
        **await activity_payments(
            session, found.id, payments_before=payments_before, dues_before=dues_before
        ),
    }


def _form_expiry(value: str | None, now: datetime) -> datetime | None:
    """A date from the form (YYYY-MM-DD): the grant expires at the start of that day, UTC,
    which must be in the future."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            "expires_on must be a date (YYYY-MM-DD)", field="expires_on"
        ) from None
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return credit_service.check_expiry(start, now, field="expires_on")


def _form_credits(value: str | None) -> int:
    if value is None or not value.strip().isascii() or not value.strip().isdigit():
        raise ValidationFailed("credits must be a whole number", field="credits")
    return credit_service.check_credits(int(value.strip()))


FormText = Annotated[str | None, Form(max_length=500)]


@router.post("/accounts/{account_id}/credits/grant")
async def grant_credits(
    request: Request,
    session: SessionDep,
    operator: PostingOperatorDep,
    account_id: str,
    credits: Annotated[str | None, Form(max_length=20)] = None,
    reason: FormText = None,
    expires_on: Annotated[str | None, Form(max_length=20)] = None,
    grant_key: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """Grant promotional credits with a reason (the form's key grants once however often it
    is sent)."""
    container = get_container(request)
    found = await _account_of(session, account_id)
    granted = await credit_service.grant_promotion(
        session,
        account_id=found.id,
        credits=_form_credits(credits),
        reason=reason or "",
        idempotency_key=grant_key or "",
        expires_at=_form_expiry(expires_on, container.clock.now()),
        clock=container.clock,
        audit=panel_audit(request, operator.session),
    )
    return RedirectResponse(
        f"/operator/accounts/{found.id}?done=Granted+{granted.credits}+credits", status_code=303
    )


@router.post("/accounts/{account_id}/credits/grants/{grant_id}/revoke")
async def revoke_credits(
    request: Request,
    session: SessionDep,
    operator: PostingOperatorDep,
    account_id: str,
    grant_id: int,
    reason: FormText = None,
) -> Response:
    """Take back the unspent remainder of one of the account's promotional grants."""
    container = get_container(request)
    revoked = await credit_service.revoke_grant(
        session,
        lot_id=grant_id,
        account_id=account_id,
        reason=reason or "",
        clock=container.clock,
        audit=panel_audit(request, operator.session),
    )
    return RedirectResponse(
        f"/operator/accounts/{account_id}?done=Took+back+{revoked.credits}+credits",
        status_code=303,
    )


@router.get("/events")
async def events(
    request: Request,
    session: ReadSessionDep,
    operator: ReadingOperatorDep,
    done: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    """Webhook events whose processing failed (retried later) or was given up (dead)."""
    rows = await _newest(
        session,
        select(WebhookEvent)
        .where(WebhookEvent.status.in_(FAILED_EVENT_STATUSES))
        .order_by(WebhookEvent.received_at.desc()),
    )
    return render(
        request,
        "operator/events.html",
        {"title": "Webhook events", "visitor": operator, "events": rows, "notice": done},
    )


@router.post("/events/{event_id}/retry")
async def retry_event(
    request: Request, session: SessionDep, operator: PostingOperatorDep, event_id: str
) -> Response:
    """Apply a failed or dead event again, now (with a fresh set of attempts)."""
    container = get_container(request)
    event = await session.get(WebhookEvent, event_id)
    if event is None:
        raise NotFound("no such webhook event")
    await retry_jobs(session, key=job_key(event_id), clock=container.clock)
    await panel_audit(request, operator.session).record(
        session, "operator.event_retried", account_id=None, target=event_id
    )
    await end_transaction(session)
    status = await process_event(container, event_id)
    outcome = {
        InboxStatus.PROCESSED.value: "applied",
        InboxStatus.FAILED.value: "failed again",
        InboxStatus.DEAD.value: "failed again",
    }.get(status or "", "queued for a worker")
    return RedirectResponse(
        f"/operator/events?done=Event+{event_id}+{outcome.replace(' ', '+')}", status_code=303
    )


@router.get("/jobs")
async def jobs(
    request: Request,
    session: ReadSessionDep,
    operator: ReadingOperatorDep,
    done: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    """Jobs that failed (retried later) or were given up (dead), with their last error."""
    rows = await _newest(
        session, select(Job).where(Job.status.in_(FAILED_JOB_STATUSES)).order_by(Job.id.desc())
    )
    return render(
        request,
        "operator/jobs.html",
        {"title": "Jobs", "visitor": operator, "jobs": rows, "notice": done},
    )


@router.post("/jobs/{job_id}/retry")
async def retry_job(
    request: Request, session: SessionDep, operator: PostingOperatorDep, job_id: int
) -> Response:
    """Make a failed or dead job due now with fresh attempts; a worker runs it."""
    container = get_container(request)
    count = await retry_jobs(session, job_id=job_id, clock=container.clock)
    if count == 0:
        raise NotFound("no failed or dead job with that id")
    await panel_audit(request, operator.session).record(
        session, "operator.job_retried", account_id=None, target=str(job_id)
    )
    return RedirectResponse(f"/operator/jobs?done=Job+{job_id}+queued+again", status_code=303)


@router.get("/checks")
async def checks(request: Request, operator: ReadingOperatorDep) -> Response:
    return render(
        request, "operator/checks.html", {"title": "Checks", "visitor": operator, "ran": False}
    )


@router.post("/checks")
async def run_checks(
    request: Request,
    session: SessionDep,
    operator: PostingOperatorDep,
) -> Response:
    """Recompute the ledger's balances and sums and the audit log's hash chain."""
    container = get_container(request)
    await panel_audit(request, operator.session).record(
        session, "operator.checks_run", account_id=None
    )
    await end_transaction(session)  # the checks read in a read unit of work of their own
    async with container.db.read() as reader:
        ledger_problems = await verify_ledger(reader)
        chain = await verify_chain(reader)
    return render(
        request,
        "operator/checks.html",
        {
            "title": "Checks",
            "visitor": operator,
            "ran": True,
            "ledger_problems": ledger_problems,
            "chain": chain,
        },
    )
