"""The customer's pages: the overview, the subscription and its tasks, and the activity (audit
trail and ledger, paged, with CSV export). Each acts on the session's account only and calls
the same services as the API: the Stripe-calling tasks end the request's transaction first
(no lock is held while Stripe answers), exactly as the API's routes do."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from billfold.api.deps import ReadSessionDep, SessionDep, end_transaction, get_container
from billfold.api.ratelimit import RateLimitClass, rate_limit
from billfold.audit.service import list_entries
from billfold.catalog.service import Catalog, load_catalog
from billfold.config import Settings
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.ledger.models import LedgerAccount
from billfold.ledger.service import account_history, history_before
from billfold.money import format_money
from billfold.subscriptions import changes, checkout
from billfold.subscriptions.models import CHANGEABLE_STATUSES, LIVE_STATUSES, Subscription
from billfold.subscriptions.reads import current_subscription, has_premium
from billfold.web.credit_summary import credit_overview, histories_context
from billfold.web.csv_export import CSV_BATCH, csv_response
from billfold.web.money_state import MoneyState, money_state
from billfold.web.payments import PaymentCursor, activity_payments
from billfold.web.rendering import format_day, locale_of, render
from billfold.web.visitors import (
    Customer,
    PanelRoute,
    PostingCustomerDep,
    ReadingCustomerDep,
    panel_audit,
)

router = APIRouter(route_class=PanelRoute, include_in_schema=False)

PAGE_SIZE = 25

STATUS_LABELS = {
    "active": "Active",
    "trialing": "Trial",
    "past_due": "Payment overdue",
    "unpaid": "Unpaid",
    "incomplete": "Payment not completed",
    "incomplete_expired": "Expired before payment",
    "canceled": "Canceled",
    "paused": "Paused",
}


@dataclass(frozen=True, slots=True)
class Attention:
    """Something on the overview the customer should act on."""

    message: str
    action_href: str | None = None
    action_label: str | None = None


def attention_items(sub: Subscription | None, locale_date: str | None) -> list[Attention]:
    """What needs the customer's attention in their subscription's state."""
    if sub is None:
        return []
    found: list[Attention] = []
    if sub.status == "past_due":
        found.append(
            Attention(
                "A payment failed. Update your payment method so your plan continues.",
                "/subscription#portal",
                "Update payment method",
            )
        )
    elif sub.status == "unpaid":
        found.append(
            Attention(
                "Your subscription is unpaid: its invoices could not be collected.",
                "/subscription#portal",
                "Pay in the billing portal",
            )
        )
    elif sub.status == "incomplete":
        found.append(
            Attention(
                "Your first payment is not complete yet.",
                "/subscription#portal",
                "Complete the payment",
            )
        )
    if sub.cancel_at_period_end and sub.status in CHANGEABLE_STATUSES:
        found.append(
            Attention(
                f"Your subscription ends on {locale_date}. Reactivate it to keep your plan.",
                "/subscription#reactivate",
                "Reactivate",
            )
        )
    return found


def money_attention(state: MoneyState, locale: str) -> list[Attention]:
    """What needs the customer's attention in their payments and auto top-up."""
    found: list[Attention] = []
    failed = state.failed_payment
    if failed is not None:
        why = f": {failed.reason.rstrip('.')}" if failed.reason else ""
        found.append(
            Attention(
                f"Your latest payment of {format_money(failed.amount, failed.currency, locale)} "
                f"failed{why}. Pay with another method, or update yours.",
                "/payment-methods#balance",
                "Pay the balance",
            )
        )
    banks = state.unverified_bank_accounts
    if banks:
        found.append(
            Attention(
                "A bank account waits for verification: enter the amounts of its two small "
                "deposits."
                if banks == 1
                else f"{banks} bank accounts wait for verification: enter the amounts of their "
                "two small deposits.",
                "/payment-methods",
                "Verify",
            )
        )
    if state.autopay_stopped_reason:
        found.append(
            Attention(
                f"Autopay is off: {state.autopay_stopped_reason.rstrip('.')}.",
                "/payment-methods#autopay",
                "Turn autopay on",
            )
        )
    if state.auto_topup_stopped_reason:
        found.append(
            Attention(
                f"Auto top-up stopped: {state.auto_topup_stopped_reason.rstrip('.')}.",
                "/credits#auto-topup",
                "Review auto top-up",
            )
        )
    return found


def _plan_name(catalog: Catalog, sub: Subscription | None) -> str | None:
    if sub is None or sub.plan_code is None:
        return None
    plan = catalog.plan(sub.plan_code)
    return plan.name if plan else sub.plan_code


async def _subscription_context(
    session: AsyncSession, container: Container, customer: Customer
) -> dict[str, object]:
    sub = await current_subscription(session, customer.account)
    catalog = await load_catalog(session, container.settings)
    return {
        "sub": sub,
        "live": sub is not None and sub.status in LIVE_STATUSES,
        "changeable": sub is not None and sub.status in CHANGEABLE_STATUSES,
        "plan_name": _plan_name(catalog, sub),
        "status_label": STATUS_LABELS.get(sub.status, sub.status) if sub else None,
        "premium": has_premium(sub, container.clock.now(), container.settings.past_due_grace_days),
        "catalog": catalog,
    }


def _account_name(account: BillingAccount) -> str:
    return account.name or f"{account.kind} {account.external_id}"


@router.get("/")
async def overview(
    request: Request, session: ReadSessionDep, customer: ReadingCustomerDep
) -> Response:
    """The overview: plan, status, next renewal, what is owed, autopay, and what needs
    attention."""
    container = get_container(request)
    context = await _subscription_context(session, container, customer)
    sub = context["sub"]
    assert sub is None or isinstance(sub, Subscription)
    locale = locale_of(request)
    state = await money_state(session, customer.account.id)
    return render(
        request,
        "overview.html",
        {
            **context,
            "title": "Overview",
            "visitor": customer,
            "account_name": _account_name(customer.account),
            "attention": attention_items(
                sub, format_day(sub.current_period_end, locale) if sub else None
            )
            + money_attention(state, locale),
            "money_state": state,
            "notice": None,
            **await credit_overview(request, session, customer.account),
        },
    )


NOTICES = {
    "checkout-success": "Thank you: your payment went through. Your plan shows here as soon as "
    "Stripe confirms it.",
    "checkout-cancelled": "Checkout was cancelled; nothing was charged.",
    "canceled": "Your subscription is canceled.",
    "cancel-scheduled": "Your subscription will end with the current period.",
    "reactivated": "Your subscription continues.",
    "changed": "Your plan was changed.",
}


@router.get("/subscription")
async def subscription_page(
    request: Request,
    session: ReadSessionDep,
    customer: ReadingCustomerDep,
    done: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """The subscription and its tasks: subscribe, change plan, cancel, reactivate, portal."""
    container = get_container(request)
    context = await _subscription_context(session, container, customer)
    catalog = context["catalog"]
    assert isinstance(catalog, Catalog)
    sub = context["sub"]
    prices = [
        (plan, price)
        for plan, price in catalog.prices()
        if price.stripe_price_id or price.lookup_key
    ]
    return render(
        request,
        "subscription.html",
        {
            **context,
            "title": "Subscription",
            "visitor": customer,
            "prices": prices,
            "current_price": sub.price_id if isinstance(sub, Subscription) else None,
            # Stripe's portal needs a Stripe customer (made by the first Checkout).
            "has_customer": customer.account.stripe_customer_id is not None,
            "notice": NOTICES.get(done or ""),
        },
    )


def _panel_url(settings: Settings, path: str) -> str | None:
    """An absolute URL of the panel for Stripe to send the customer back to, when billfold knows
    its public address (BILLFOLD_PUBLIC_URL); else None: the configured defaults."""
    return settings.public_url.rstrip("/") + path if settings.public_url else None


@router.post("/subscription/checkout")
@rate_limit(RateLimitClass.CHECKOUT)
async def subscribe(
    request: Request,
    session: SessionDep,
    customer: PostingCustomerDep,
    price: Annotated[str, Form(min_length=1, max_length=255)],
) -> Response:
    """Start Stripe Checkout for a catalog price and send the customer there."""
    container = get_container(request)
    await end_transaction(session)  # no lock while Stripe answers
    started = await checkout.start_checkout(
        container,
        customer.account,
        audit=panel_audit(request, customer.session),
        price_id=price,
        success_url=_panel_url(container.settings, "/subscription?done=checkout-success"),
        cancel_url=_panel_url(container.settings, "/subscription?done=checkout-cancelled"),
    )
    return RedirectResponse(started.url, status_code=303)


@router.post("/subscription/change")
@rate_limit(RateLimitClass.CHECKOUT)
async def change_plan(
    request: Request,
    session: SessionDep,
    customer: PostingCustomerDep,
    price: Annotated[str, Form(min_length=1, max_length=255)],
) -> Response:
    """Move the subscription to another price (prorated)."""
    container = get_container(request)
    await end_transaction(session)
    await changes.change_plan(
        container, customer.account, audit=panel_audit(request, customer.session), price_id=price
    )
    return RedirectResponse("/subscription?done=changed", status_code=303)


@router.get("/subscription/cancel-now")
async def confirm_cancel_now(
    request: Request, session: ReadSessionDep, customer: ReadingCustomerDep
) -> Response:
    """The confirmation step of cancelling now (a page: it needs no JavaScript)."""
    context = await _subscription_context(session, get_container(request), customer)
    if not context["changeable"]:
        return RedirectResponse("/subscription", status_code=303)
    return render(
        request,
        "cancel_now.html",
        {**context, "title": "Cancel now?", "visitor": customer, "notice": None},
    )


@router.post("/subscription/cancel")
async def cancel(
    request: Request,
    session: SessionDep,
    customer: PostingCustomerDep,
    when: Annotated[Literal["period_end", "now"], Form()] = "period_end",
    confirm: Annotated[Literal["yes"] | None, Form()] = None,
) -> Response:
    """Cancel at the end of the period (one click), or now (once confirmed: without the
    confirmation, the confirmation step is shown)."""
    if when == "now" and confirm != "yes":
        return RedirectResponse("/subscription/cancel-now", status_code=303)
    container = get_container(request)
    await end_transaction(session)
    await changes.cancel(
        container,
        customer.account,
        audit=panel_audit(request, customer.session),
        immediately=when == "now",
    )
    done = "canceled" if when == "now" else "cancel-scheduled"
    return RedirectResponse(f"/subscription?done={done}", status_code=303)


@router.post("/subscription/reactivate")
async def reactivate(
    request: Request, session: SessionDep, customer: PostingCustomerDep
) -> Response:
    """Undo a cancellation scheduled for the period end."""
    container = get_container(request)
    await end_transaction(session)
    await changes.reactivate(
        container, customer.account, audit=panel_audit(request, customer.session)
    )
    return RedirectResponse("/subscription?done=reactivated", status_code=303)


@router.post("/subscription/portal")
@rate_limit(RateLimitClass.CHECKOUT)
async def portal(request: Request, session: SessionDep, customer: PostingCustomerDep) -> Response:
    """Open Stripe's billing portal."""
    container = get_container(request)
    await end_transaction(session)
    url = await checkout.open_portal(
        container,
        customer.account,
        audit=panel_audit(request, customer.session),
        return_url=_panel_url(container.settings, "/subscription"),
    )
    return RedirectResponse(url, status_code=303)


# --- activity ---------------------------------------------------------------------------------


async def ledger_accounts_of(session: AsyncSession, account_id: str) -> Sequence[LedgerAccount]:
    """The billing account's ledger accounts (its balances), in a stable order."""
    return (
        (
            await session.execute(
                select(LedgerAccount)
                .where(LedgerAccount.billing_account_id == account_id)
                .order_by(LedgerAccount.unit, LedgerAccount.name, LedgerAccount.id)
            )
        )
        .scalars()
        .all()
    )


def _pick_ledger(accounts: Sequence[LedgerAccount], wanted: int | None) -> LedgerAccount | None:
    for ledger in accounts:
        if ledger.id == wanted:
            return ledger
    return accounts[0] if accounts else None


async def activity_context(
    session: AsyncSession,
    account: BillingAccount,
    *,
    ledger: int | None,
    page: int,
    before: int | None,
) -> dict[str, object]:
    """The account's ledger (one of its balances, a page) and audit trail (a page by cursor)."""
    accounts = await ledger_accounts_of(session, account.id)
    chosen = _pick_ledger(accounts, ledger)
    history = (
        await account_history(session, chosen.id, page=page, page_size=PAGE_SIZE)
        if chosen is not None
        else None
    )
    entries, more = await list_entries(
        session, account_id=account.id, limit=PAGE_SIZE, before_seq=before
    )
    return {
        "ledger_accounts": accounts,
        "ledger": chosen,
        "history": history,
        "pages": (history.total + PAGE_SIZE - 1) // PAGE_SIZE if history else 0,
        "audit_entries": entries,
        "audit_next": entries[-1].seq if more and entries else None,
        "before": before,
    }


PageNumber = Annotated[int, Query(ge=1, le=1_000_000)]
Cursor = Annotated[int | None, Query(ge=1, le=2**63 - 1)]


@router.get("/activity")
async def activity(
    request: Request,
    session: ReadSessionDep,
    customer: ReadingCustomerDep,
    ledger: Cursor = None,
    page: PageNumber = 1,
    before: Cursor = None,
    credit_page: PageNumber = 1,
    billing_page: PageNumber = 1,
    payments_before: PaymentCursor = None,
    dues_before: Cursor = None,
) -> Response:
    """The ledger, the audit trail, the payments and the dues ledger of the account, paged (and
    the credit and billing histories, which page on their own)."""
    context = await activity_context(
        session, customer.account, ledger=ledger, page=page, before=before
    )
    context |= await activity_payments(
        session, customer.account.id, payments_before=payments_before, dues_before=dues_before
    )
    partial = request.headers.get("hx-request") == "true"
    if not partial:
        context |= await histories_context(
            request,
            session,
            customer.account,
            credit_page=credit_page,
            billing_page=billing_page,
            page_size=PAGE_SIZE,
        )
    template = "_activity_customer.html" if partial else "activity.html"
    return render(
        request,
        template,
        {**context, "title": "Activity", "visitor": customer, "notice": None, "base": "/activity"},
    )


LEDGER_CSV_HEADER = [
    "entry_id",
    "created_at",
    "kind",
    "description",
    "amount",
    "unit",
    "balance_after",
]


async def ledger_rows(
    container: Container, ledger_id: int, account_id: str
) -> AsyncIterator[list[str]]:
    """Every movement of one of the account's ledger accounts, newest first: one read unit of
    work (one snapshot), CSV_BATCH rows per query by keyset (no counting, no offsets)."""
    yield LEDGER_CSV_HEADER
    async with container.db.read() as session:
        owned = await session.get(LedgerAccount, ledger_id)
        if owned is None or owned.billing_account_id != account_id:
            return
        before: int | None = None
        while True:
            batch = await history_before(
                session, ledger_id, before_entry_id=before, limit=CSV_BATCH
            )
            for item in batch:
                yield [
                    str(item.entry_id),
                    item.created_at.isoformat(),
                    item.kind,
                    item.description or "",
                    str(item.amount),
                    item.unit,
                    str(item.balance_after),
                ]
            if len(batch) < CSV_BATCH:
                return
            before = batch[-1].entry_id


async def audit_rows(container: Container, account_id: str) -> AsyncIterator[list[str]]:
    """Every audit entry of the account, newest first, by cursor in batches, in one read unit
    of work."""
    yield ["seq", "occurred_at", "action", "actor", "target", "details"]
    before: int | None = None
    async with container.db.read() as session:
        while True:
            entries, more = await list_entries(
                session, account_id=account_id, limit=CSV_BATCH, before_seq=before
            )
            for entry in entries:
                yield [
                    str(entry.seq),
                    entry.occurred_at.isoformat(),
                    entry.action,
                    entry.actor,
                    entry.target or "",
                    entry.details_json,
                ]
            if not more or not entries:
                return
            before = entries[-1].seq


@router.get("/activity/ledger.csv")
async def ledger_csv(
    request: Request, session: ReadSessionDep, customer: ReadingCustomerDep, ledger: Cursor = None
) -> Response:
    """The ledger of one of the account's balances, as CSV."""
    return await ledger_csv_of(request, session, customer.account.id, ledger)


async def ledger_csv_of(
    request: Request, session: AsyncSession, account_id: str, ledger: int | None
) -> Response:
    """One of the account's ledgers (`ledger`, else its first) as CSV (the console's too)."""
    accounts = await ledger_accounts_of(session, account_id)
    chosen = _pick_ledger(accounts, ledger)
    container = get_container(request)
    if chosen is None:
        return csv_response(_only(LEDGER_CSV_HEADER), "ledger.csv")
    rows = ledger_rows(container, chosen.id, account_id)
    return csv_response(rows, f"ledger-{chosen.name}-{chosen.unit}.csv")


async def _only(row: list[str]) -> AsyncIterator[list[str]]:
    yield row


@router.get("/activity/audit.csv")
async def audit_csv(request: Request, customer: ReadingCustomerDep) -> Response:
    """The account's audit trail, as CSV."""
    return csv_response(audit_rows(get_container(request), customer.account.id), "audit.csv")
