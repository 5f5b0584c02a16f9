"""The customer's payment methods page: saved cards and US bank accounts in priority order,
added through Stripe.js (the real one when billfold talks to Stripe, the sandbox's stand-in
otherwise) on the setup intents of `billfold.payments.methods`; microdeposits, the default,
the priority, removal, autopay and paying the balance now. Like the other pages it acts on the
session's account only and calls the same services as document 003's `/api/billing` routes.

Every form works without JavaScript except adding a method (Stripe.js collects the card or
the bank account): those three routes answer JSON to `static/payment_methods.js`. A refusal
(a 409 for the last usable method, wrong microdeposits, nothing owed) shows the page again
with the reason, and its status."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from billfold.api.deps import ReadSessionDep, SessionDep, end_transaction, get_container
from billfold.api.errors import status_for
from billfold.api.ratelimit import RateLimitClass, rate_limit
from billfold.audit.context import AuditContext
from billfold.config import Settings
from billfold.container import Container
from billfold.errors import BillfoldError, ValidationFailed
from billfold.payments import charging, methods
from billfold.payments.dues import dues_of, ledger_page
from billfold.payments.models import FAILED, PROCESSING, REQUIRES_ACTION, SUCCEEDED, PaymentMethod
from billfold.stripe.gateway import SetupMethod
from billfold.web.csv_export import CSV_BATCH, csv_response
from billfold.web.rendering import render, stripe_js
from billfold.web.visitors import (
    Customer,
    PanelRoute,
    PostingCustomerDep,
    ReadingCustomerDep,
    panel_audit,
)

router = APIRouter(route_class=PanelRoute, include_in_schema=False)

PAGE = "/payment-methods"

NOTICES = {
    "card-added": "Your card is saved.",
    "bank-added": "Your bank account is saved. Stripe sends two small deposits to it in one or two "
    "business days: enter their amounts below to verify it.",
    "verified": "Your bank account is verified.",
    "bank-verified": "Your bank account is saved and verified.",
    "confirmed": "Thank you: your payment is confirmed. It shows as paid once Stripe reports it.",
    "default": "Your default payment method is changed.",
    "reordered": "The order of your payment methods is changed.",
    "removed": "The payment method is removed.",
    "autopay-on": "Autopay is on: what you owe is paid automatically.",
    "autopay-off": "Autopay is off.",
    "paid": "Thank you: your balance is paid.",
    "processing": "Your payment is on its way: a bank debit takes a few business days.",
    "action": "Your bank asks you to confirm this payment.",
}

MethodId = Annotated[str, Form(min_length=1, max_length=255)]


def publishable_key(settings: Settings) -> str | None:
    """The key Stripe.js is given: a publishable one only (`pk_...`), never a secret. None when
    billfold talks to Stripe without STRIPE_PUBLISHABLE_KEY (methods cannot be added then)."""
    real = settings.stripe_api_base is None
    key = settings.stripe_publishable_key if real else settings.publishable_key
    return key if key and key.startswith("pk_") else None


async def page_context(
    session: AsyncSession, container: Container, customer: Customer
) -> dict[str, object]:
    """What the page shows: three reads (methods, settings, dues), whatever the count."""
    account = customer.account
    found = await methods.list_methods(session, account.id)
    settings = await methods.read_settings(session, account.id)
    owed = await dues_of(session, account.id)
    js = stripe_js(container.settings)
    return {
        "title": "Payment methods",
        "visitor": customer,
        "methods": found,
        "default_id": settings.default_payment_method_id if settings else None,
        "autopay": bool(settings and settings.autopay),
        "autopay_stopped": settings.autopay_stopped_reason if settings else None,
        "dues": owed,
        "payable": [d for d in owed if d.settled > 0],
        "stripe_js_url": js.url,
        "publishable_key": publishable_key(container.settings),
        "currency": account.currency or container.settings.stripe_default_currency,
        "error": None,
        "error_field": None,
        "action_secret": None,
    }


@router.get(PAGE)
async def payment_methods_page(
    request: Request,
    session: ReadSessionDep,
    customer: ReadingCustomerDep,
    done: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """The account's payment methods, autopay and what is owed."""
    context = await page_context(session, get_container(request), customer)
    return render(request, "payment_methods.html", {**context, "notice": NOTICES.get(done or "")})


async def _refused(request: Request, customer: Customer, exc: BillfoldError) -> Response:
    """The page again, saying why the task was refused (with the refusal's status)."""
    container = get_container(request)
    async with container.db.read() as session:
        context = await page_context(session, container, customer)
    return render(
        request,
        "payment_methods.html",
        {**context, "error": exc.message, "error_field": exc.field},
        status_code=status_for(exc),
    )


def _done(what: str) -> Response:
    return RedirectResponse(f"{PAGE}?done={what}", status_code=303)


# --- adding a method (Stripe.js) -------------------------------------------------------------


def _json_error(exc: BillfoldError) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": exc.message, "field": exc.field}}, status_code=status_for(exc)
    )


def _setup_json(started: methods.StartedSetup) -> JSONResponse:
    return JSONResponse(
        {
            "setup_intent_id": started.setup_intent_id,
            "client_secret": started.client_secret,
            "status": started.status,
            "payment_method_id": started.payment_method_id,
            "next_action": started.next_action,
        }
    )


@router.post(f"{PAGE}/setup/finish")
@rate_limit(RateLimitClass.CHECKOUT)
async def finish_setup(
    request: Request,
    session: SessionDep,
    customer: PostingCustomerDep,
    setup_intent_id: Annotated[str, Form(min_length=1, max_length=255, pattern=r"^seti_\w+$")],
) -> Response:
    """After Stripe.js confirmed the setup intent: the method is saved now (not only when
    Stripe's webhook arrives)."""
    await end_transaction(session)
    try:
        started = await methods.finish_setup(
            get_container(request),
            customer.account,
            setup_intent_id,
            audit=panel_audit(request, customer.session),
        )
    except BillfoldError as exc:
        return _json_error(exc)
    return _setup_json(started)


SETUP_METHODS: dict[str, SetupMethod] = {"card": "card", "us-bank": "us_bank_account"}


# After `setup/finish`: the path parameter would take "finish" as a kind.
@router.post(f"{PAGE}/setup/{{kind}}")
@rate_limit(RateLimitClass.CHECKOUT)
async def start_setup(
    request: Request,
    session: SessionDep,
    customer: PostingCustomerDep,
    kind: Literal["card", "us-bank"],
    payment_method_id: Annotated[str | None, Form(min_length=1, max_length=255)] = None,
) -> Response:
    """A setup intent for a card or a US bank account. A card Stripe.js made
    (`payment_method_id`) is saved at once (when the bank asks for 3-D Secure, the client secret
    lets Stripe.js finish it); without one, Stripe.js collects the method with the client
    secret and confirms it (a bank account then waits for its microdeposits)."""
    await end_transaction(session)
    try:
        started = await methods.start_setup(
            get_container(request),
            customer.account,
            method=SETUP_METHODS[kind],
            audit=panel_audit(request, customer.session),
            payment_method_id=payment_method_id,
        )
    except BillfoldError as exc:
        return _json_error(exc)
    return _setup_json(started)


# --- the tasks (plain forms) -----------------------------------------------------------------

Amount = Annotated[int | None, Form(ge=1, le=99)]


@router.post(f"{PAGE}/verify")
@rate_limit(RateLimitClass.CHECKOUT)
async def verify(
    request: Request,
    session: SessionDep,
    customer: PostingCustomerDep,
    payment_method_id: MethodId,
    amount_1: Amount = None,
    amount_2: Amount = None,
    descriptor_code: Annotated[str | None, Form(max_length=6)] = None,
) -> Response:
    """The two microdeposit amounts (cents) or the descriptor code of a pending bank account."""
    await end_transaction(session)
    try:
        amounts = None
        if amount_1 is not None or amount_2 is not None:
            if amount_1 is None or amount_2 is None:
                raise ValidationFailed("enter both amounts, in cents", field="amounts")
            amounts = [amount_1, amount_2]
        await methods.verify_microdeposits(
            get_container(request),
            customer.account,
            payment_method_id=payment_method_id,
            amounts=amounts,
            descriptor_code=(descriptor_code or "").strip().upper() or None,
            audit=panel_audit(request, customer.session),
        )
    except BillfoldError as exc:
        return await _refused(request, customer, exc)
    return _done("verified")


OrderingTask = Callable[[AsyncSession, AuditContext, datetime], Awaitable[object]]


async def _reorder(
    request: Request, session: AsyncSession, customer: Customer, task: OrderingTask, done: str
) -> Response:
    """Run a change of the priority order in a unit of work of its own (nothing of it is kept
    when refused), then back to the page, or the page with the refusal."""
    container = get_container(request)
    audit = panel_audit(request, customer.session)
    await end_transaction(session)
    try:
        async with container.db.transaction() as own:
            await task(own, audit, container.clock.now())
        # The default may have changed: Stripe's own invoices charge the new one.
        await methods.sync_default_to_stripe(container, customer.account.id, audit=audit)
    except BillfoldError as exc:
        return await _refused(request, customer, exc)
    return _done(done)


@router.post(f"{PAGE}/default")
async def set_default(
    request: Request, session: SessionDep, customer: PostingCustomerDep, payment_method_id: MethodId
) -> Response:
    """Make a usable method the default: it moves to the front of the priority order."""

    async def task(own: AsyncSession, audit: AuditContext, now: datetime) -> object:
        return await methods.set_default(
            own, customer.account.id, payment_method_id, audit=audit, now=now
        )

    return await _reorder(request, session, customer, task, "default")


@router.post(f"{PAGE}/move")
async def move(
    request: Request,
    session: SessionDep,
    customer: PostingCustomerDep,
    payment_method_id: MethodId,
    direction: Annotated[Literal["up", "down"], Form()],
) -> Response:
    """One step up or down the priority order (the buttons beside each method)."""

    async def task(own: AsyncSession, audit: AuditContext, now: datetime) -> object:
        return await methods.move_method(
            own,
            customer.account.id,
            payment_method_id,
            step=-1 if direction == "up" else 1,
            audit=audit,
            now=now,
        )

    return await _reorder(request, session, customer, task, "reordered")


@router.post(f"{PAGE}/remove")
async def remove(
    request: Request, session: SessionDep, customer: PostingCustomerDep, payment_method_id: MethodId
) -> Response:
    """Detach a method at Stripe and forget it (refused, 409, for the last usable method while
    autopay is on and money is owed)."""
    await end_transaction(session)
    try:
        await methods.remove_method(
            get_container(request),
            customer.account,
            payment_method_id,
            audit=panel_audit(request, customer.session),
        )
    except BillfoldError as exc:
        return await _refused(request, customer, exc)
    return _done("removed")


@router.post(f"{PAGE}/autopay")
async def autopay(
    request: Request,
    session: SessionDep,
    customer: PostingCustomerDep,
    enabled: Annotated[Literal["on", "off"], Form()],
) -> Response:
    """Turn autopay on or off."""
    container = get_container(request)
    await methods.set_autopay(
        session,
        customer.account.id,
        enabled == "on",
        audit=panel_audit(request, customer.session),
        now=container.clock.now(),
    )
    return _done(f"autopay-{enabled}")


@router.post(f"{PAGE}/pay-balance")
@rate_limit(RateLimitClass.CHECKOUT)
async def pay_balance(
    request: Request,
    session: SessionDep,
    customer: PostingCustomerDep,
    currency: Annotated[str | None, Form(min_length=3, max_length=3)] = None,
) -> Response:
    """Pay the settled dues now, on the methods by priority (with fallback)."""
    container = get_container(request)
    await end_transaction(session)
    try:
        outcome = await charging.pay_balance(
            container,
            customer.account,
            currency=currency,
            audit=panel_audit(request, customer.session),
        )
    except BillfoldError as exc:
        return await _refused(request, customer, exc)
    payment = outcome.payment
    if payment.status == SUCCEEDED:
        return _done("paid")
    if payment.status == PROCESSING:
        return _done("processing")
    async with container.db.read() as read:
        context = await page_context(read, container, customer)
    if payment.status == REQUIRES_ACTION and outcome.client_secret:
        # Stripe.js finishes 3-D Secure on the page (static/payment_methods.js).
        return render(
            request,
            "payment_methods.html",
            {**context, "notice": NOTICES["action"], "action_secret": outcome.client_secret},
        )
    reason = payment.failure_message or "every payment method was declined"
    message = (
        f"The payment failed: {reason}." if payment.status == FAILED else "The payment is pending."
    )
    return render(request, "payment_methods.html", {**context, "error": message})


# --- the activity page's payments and dues ledger --------------------------------------------

ACTIVITY_PAGE_SIZE = 25
PaymentCursor = Annotated[str | None, Query(max_length=64, pattern=r"^pay_\w+$")]

KIND_LABELS = {"balance": "Balance paid", "autopay": "Autopay", "one_off": "One-off charge"}
LEDGER_ACCOUNT_LABELS = {
    "dues": "Owed",
    "dues_pending": "Payment on its way",
    "refunded": "Refunded",
}


def method_label(method: PaymentMethod | None, fallback: str | None) -> str:
    """`Visa ending in 4242`, `STRIPE TEST BANK ending in 6789` (a removed one: its id)."""
    if method is None:
        return fallback or "—"
    if method.type == "card":
        return f"{(method.brand or 'card').title()} ending in {method.last4 or '····'}"
    return f"{method.bank_name or 'Bank account'} ending in {method.last4 or '····'}"


async def activity_payments(
    session: AsyncSession,
    account_id: str,
    *,
    payments_before: str | None,
    dues_before: int | None,
) -> dict[str, object]:
    """The payments (a page by cursor) and the dues ledger (a page by cursor) of the activity
    page: a fixed number of queries, whatever the page holds."""
    found, _attempts = await charging.list_payments(
        session, account_id, limit=ACTIVITY_PAGE_SIZE + 1, before=payments_before
    )
    payments = found[:ACTIVITY_PAGE_SIZE]
    lines = await ledger_page(session, account_id, limit=ACTIVITY_PAGE_SIZE + 1, before=dues_before)
    by_id = {m.id: m for m in await methods.list_methods(session, account_id)}
    return {
        "payments": [
            (p, method_label(by_id.get(p.payment_method_id or ""), p.payment_method_id))
            for p in payments
        ],
        "payments_next": payments[-1].id if len(found) > ACTIVITY_PAGE_SIZE else None,
        "payments_before": payments_before,
        "dues_lines": lines[:ACTIVITY_PAGE_SIZE],
        "dues_next": lines[ACTIVITY_PAGE_SIZE - 1].entry_id
        if len(lines) > ACTIVITY_PAGE_SIZE
        else None,
        "dues_before": dues_before,
        "kind_labels": KIND_LABELS,
        "ledger_labels": LEDGER_ACCOUNT_LABELS,
    }


PAYMENTS_CSV_HEADER = [
    "payment_id",
    "created_at",
    "kind",
    "description",
    "amount",
    "currency",
    "status",
    "payment_method_id",
    "refunded_amount",
    "failure_code",
    "dispute_status",
]


async def payment_rows(container: Container, account_id: str) -> AsyncIterator[list[str]]:
    """Every payment of the account, newest first, CSV_BATCH per query by cursor, in one read
    unit of work."""
    yield PAYMENTS_CSV_HEADER
    before: str | None = None
    async with container.db.read() as session:
        while True:
            batch, _attempts = await charging.list_payments(
                session, account_id, limit=CSV_BATCH, before=before
            )
            for p in batch:
                yield [
                    p.id,
                    p.created_at.isoformat(),
                    p.kind,
                    p.description or "",
                    str(p.amount),
                    p.currency,
                    p.status,
                    p.payment_method_id or "",
                    str(p.refunded_amount),
                    p.failure_code or "",
                    p.dispute_status or "",
                ]
            if len(batch) < CSV_BATCH:
                return
            before = batch[-1].id


async def dues_rows(container: Container, account_id: str) -> AsyncIterator[list[str]]:
    """Every movement of the account's money accounts (dues, pending, refunded), newest first."""
    yield ["entry_id", "created_at", "account", "kind", "description", "amount", "currency",
           "balance_after", "payment_id"]  # fmt: skip
    before: int | None = None
    async with container.db.read() as session:
        while True:
            batch = await ledger_page(session, account_id, limit=CSV_BATCH, before=before)
            for line in batch:
                yield [
                    str(line.entry_id),
                    line.created_at.isoformat(),
                    line.account,
                    line.kind,
                    line.description or "",
                    str(line.amount),
                    line.currency,
                    str(line.balance_after),
                    line.payment_id or "",
                ]
            if len(batch) < CSV_BATCH:
                return
            before = batch[-1].entry_id


@router.get("/activity/payments.csv")
async def payments_csv(request: Request, customer: ReadingCustomerDep) -> Response:
    """The account's payments, as CSV."""
    return csv_response(payment_rows(get_container(request), customer.account.id), "payments.csv")


@router.get("/activity/dues.csv")
async def dues_csv(request: Request, customer: ReadingCustomerDep) -> Response:
    """The account's dues ledger (what was owed, paid, refunded), as CSV."""
    return csv_response(dues_rows(get_container(request), customer.account.id), "dues.csv")
