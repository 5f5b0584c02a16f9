"""The customer's credits in the panel: the Credits page (balance and version, the packages,
a top-up priced as its amount is typed, the lots and holds), the overview's balance and its
chart of the last 30 days, and the credit and billing histories on the Activity page (paged,
with CSV export).

Thin, like the other pages: the same services as `api/credits.py` (`credits.service`,
`credits.history`, `credits.purchases.start_purchase`, the catalog's `topup_price`,
`subscriptions.reads.has_active_subscription`) and parameters (`api/params.py`), on the
session's account only. Buying ends the request's transaction first (no lock is held while
Stripe answers) and sends the customer to Checkout in payment mode, back to this page after.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from billfold.api.deps import ReadSessionDep, SessionDep, end_transaction, get_container
from billfold.api.errors import status_for
from billfold.api.params import credit_currency, int_param
from billfold.api.ratelimit import RateLimitClass, rate_limit
from billfold.catalog.credits import CreditCatalog, read_credit_catalog
from billfold.container import Container
from billfold.credits import autotopup, history, purchases, service
from billfold.credits.models import PurchaseKind
from billfold.credits.summary import open_lots
from billfold.errors import ValidationFailed
from billfold.money import InexactAmount, to_major, to_minor
from billfold.redirects import default_cancel_url, default_success_url
from billfold.subscriptions.reads import has_active_subscription
from billfold.web.credit_summary import count_format, histories_context
from billfold.web.csv_export import CSV_BATCH, csv_response
from billfold.web.customer import PAGE_SIZE, PageNumber, _panel_url
from billfold.web.rendering import render
from billfold.web.visitors import (
    Customer,
    PanelRoute,
    PostingCustomerDep,
    ReadingCustomerDep,
    panel_audit,
)

router = APIRouter(route_class=PanelRoute, include_in_schema=False)

DEFAULT_TOPUP = 100

NOTICES = {
    "topup-success": "Thank you: your payment went through. Your credits show here as soon as "
    "Stripe confirms it.",
    "purchase-success": "Thank you: your package is paid. Its credits show here as soon as "
    "Stripe confirms it.",
    "cancelled": "Checkout was cancelled; nothing was charged.",
    "auto-topup": "Your auto top-up settings are saved.",
}

SOURCE_LABELS = {
    "credit_purchase": "Credit package",
    "topup": "Top-up",
    "allowance": "Plan allowance",
    "grant": "Grant",
    "promotion": "Promotion",
}


# --- the Credits page ------------------------------------------------------------------------


def _topup_range(catalog: CreditCatalog, currency: str) -> tuple[int, int] | None:
    pricing = catalog.topup.get(currency)
    if pricing is None:
        return None
    return pricing.min_credits, min(pricing.max_credits, catalog.max_topup_credits)


async def credits_context(
    request: Request, session: AsyncSession, customer: Customer
) -> dict[str, Any]:
    """What the Credits page shows, in a fixed number of reads."""
    container = get_container(request)
    account = customer.account
    catalog = read_credit_catalog(container.settings)
    currency = credit_currency(catalog, account, None)
    balance = await service.get_balance(session, account.id)
    active = await has_active_subscription(session, account)
    limits = _topup_range(catalog, currency)
    default = max(DEFAULT_TOPUP, limits[0]) if limits else DEFAULT_TOPUP
    auto = await autotopup.read_settings(session, account.id)
    return {
        "title": "Credits",
        "visitor": customer,
        "balance": balance,
        "currency": currency,
        "packages": catalog.packages_in(currency),
        "subscription_active": active,
        "topup_limits": limits,
        "topup_default": default,
        "topup_price": catalog.topup_price(default, currency) if limits else None,
        "lots": await open_lots(session, account.id, now=container.clock.now()),
        "holds": await service.list_holds(session, account.id, limit=PAGE_SIZE),
        "sources": SOURCE_LABELS,
        # A new key each time the page is shown: a double click starts one Checkout.
        "purchase_key": secrets.token_urlsafe(18),
        "count": count_format(request),
        **_auto_topup_form(catalog, auto, currency, default),
    }


@router.get("/credits")
async def credits_page(
    request: Request,
    session: ReadSessionDep,
    customer: ReadingCustomerDep,
    done: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """Balance and version, packages (with an active subscription), a top-up, the auto
    top-up, lots and holds."""
    context = await credits_context(request, session, customer)
    return render(request, "credits.html", {**context, "notice": NOTICES.get(done or "")})


@router.get("/credits/topup/price")
async def topup_price(
    request: Request,
    customer: ReadingCustomerDep,
    credits: Annotated[str | None, Query(max_length=32)] = None,
    currency: Annotated[str | None, Query(max_length=8)] = None,
) -> Response:
    """The price of a top-up of `credits`, as the page shows it while the amount is typed (the
    catalog's `topup_price`, as `GET /api/billing/topup/calculate`): a fragment for htmx; a bad
    amount is said in it (200, so htmx shows it). `currency`: the auto top-up's, when chosen."""
    catalog = read_credit_catalog(get_container(request).settings)
    try:
        currency = credit_currency(catalog, customer.account, currency or None)
    except ValidationFailed:
        currency = credit_currency(catalog, customer.account, None)
    try:
        count = int_param(credits or None, "credits")
        price: int | None = catalog.topup_price(count, currency)
        problem = None
    except ValidationFailed as exc:
        count, price, problem = 0, None, exc.message
    return render(
        request,
        "_topup_price.html",
        {
            "credits": count,
            "price": price,
            "currency": currency,
            "problem": problem,
            "count": count_format(request),
        },
    )


async def _checkout(
    request: Request,
    customer: Customer,
    catalog: CreditCatalog,
    *,
    kind: PurchaseKind,
    currency: str,
    purchase_key: str | None,
    subscription_active: bool = False,
    credits: int | None = None,
    package_id: str | None = None,
) -> Response:
    """Start the purchase's Checkout (the request's transaction already ended) and send the
    customer there; Checkout sends them back to this page when BILLFOLD_PUBLIC_URL is known,
    else to the configured defaults. The form's key makes a double click one purchase."""
    container = get_container(request)
    settings = container.settings
    done = "topup-success" if kind == PurchaseKind.TOPUP else "purchase-success"
    started = await purchases.start_purchase(
        container,
        customer.account,
        catalog,
        kind=kind,
        currency=currency,
        credits=credits,
        package_id=package_id,
        success_url=_panel_url(settings, f"/credits?done={done}") or default_success_url(settings),
        cancel_url=_panel_url(settings, "/credits?done=cancelled") or default_cancel_url(settings),
        audit=panel_audit(request, customer.session),
        subscription_active=subscription_active,
        idempotency_key=f"panel:{purchase_key}" if purchase_key else None,
    )
    return RedirectResponse(started.url, status_code=303)


PurchaseKey = Annotated[str | None, Form(max_length=100)]


@router.post("/credits/topup")
@rate_limit(RateLimitClass.CHECKOUT)
async def topup(
    request: Request,
    session: SessionDep,
    customer: PostingCustomerDep,
    credits: Annotated[str, Form(max_length=32)],
    purchase_key: PurchaseKey = None,
) -> Response:
    """A payment-mode Checkout for `credits` credits; granted when Stripe reports the payment."""
    catalog = read_credit_catalog(get_container(request).settings)
    currency = credit_currency(catalog, customer.account, None)
    count = service.check_credits(int_param(credits, "credits"), maximum=catalog.max_topup_credits)
    catalog.topup_price(count, currency)  # 400 before anything is written
    await end_transaction(session)  # no lock while Stripe answers
    return await _checkout(
        request,
        customer,
        catalog,
        kind=PurchaseKind.TOPUP,
        currency=currency,
        # Another amount sent from the same page (edited after going back) is another purchase.
        purchase_key=f"{purchase_key}:{count}" if purchase_key else None,
        credits=count,
    )


@router.post("/credits/purchase")
@rate_limit(RateLimitClass.CHECKOUT)
async def buy_package(
    request: Request,
    session: SessionDep,
    customer: PostingCustomerDep,
    package: Annotated[str, Form(min_length=1, max_length=64)],
    purchase_key: PurchaseKey = None,
) -> Response:
    """A payment-mode Checkout for a credit package (402, as a page, without an active
    subscription)."""
    catalog = read_credit_catalog(get_container(request).settings)
    currency = credit_currency(catalog, customer.account, None)
    if catalog.package(package) is None:
        raise ValidationFailed(f"unknown package {package!r}", field="package")
    active = await has_active_subscription(session, customer.account)
    await end_transaction(session)
    return await _checkout(
        request,
        customer,
        catalog,
        kind=PurchaseKind.PACKAGE,
        currency=currency,
        purchase_key=purchase_key,
        subscription_active=active,
        package_id=package,
    )


# --- auto top-up ----------------------------------------------------------------------------

AUTO_TOPUP_LABELS = {
    "enabled": "Top up automatically",
    "threshold": "Threshold",
    "credits": "Credits to buy",
    "max_per_day": "Daily limit",
    "monthly_limit": "Monthly limit",
    "currency": "Currency",
}
AUTO_TOPUP_FIELDS = ("threshold", "credits", "max_per_day", "monthly_limit")
_MAJOR_AMOUNT = re.compile(r"[0-9]{1,12}(?:[.][0-9]{1,3})?")


def _auto_topup_form(
    catalog: CreditCatalog,
    auto: autotopup.AutoTopupSettings,
    account_currency: str,
    default_credits: int,
    *,
    sent: dict[str, str] | None = None,
    error: ValidationFailed | None = None,
) -> dict[str, Any]:
    """The auto top-up's form: the saved settings (suggestions when never set), or what was
    sent with the refusal naming its field; the price of the credits to buy."""
    offered = [c for c in catalog.currencies if c in catalog.topup]
    currency = (sent or {}).get("currency") or auto.currency or account_currency
    if currency not in offered:
        currency = account_currency
    if sent is not None:
        values: dict[str, Any] = {**sent, "enabled": sent.get("enabled") == "on"}
    else:
        credits = auto.credits or default_credits
        values = {
            "enabled": auto.enabled,
            "threshold": str(auto.threshold or DEFAULT_TOPUP),
            "credits": str(credits),
            "max_per_day": str(auto.max_per_day or 3),
            "monthly_limit": (
                str(to_major(auto.monthly_limit, currency)) if auto.monthly_limit else ""
            ),
        }
    count, price, problem = 0, None, None
    try:
        count = int_param(values["credits"] or None, "credits")
        price = catalog.topup_price(count, currency)
    except ValidationFailed as exc:
        problem = exc.message
    return {
        "auto": auto,
        "auto_values": values,
        "auto_currency": currency,
        "auto_currencies": offered,
        "auto_credits": count,
        "auto_price": price,
        "auto_price_problem": problem,
        "auto_error": error.message if error else None,
        "auto_error_field": error.field if error else None,
        "auto_labels": AUTO_TOPUP_LABELS,
    }


def _whole_or_none(value: str, field: str) -> int | None:
    return int_param(value, field) if value.strip() else None


def _minor_or_none(value: str, currency: str, field: str) -> int | None:
    """A money amount typed in major units (`200`, `200.50`) as minor units of `currency`."""
    text = value.strip()
    if not text:
        return None
    if not _MAJOR_AMOUNT.fullmatch(text):
        raise ValidationFailed(f"{field} must be an amount such as 200 or 200.50", field=field)
    try:
        return to_minor(text, currency)
    except InexactAmount as exc:
        raise ValidationFailed(
            f"{field} has more decimals than {currency.upper()} has", field=field
        ) from exc


def _auto_topup_changes(
    catalog: CreditCatalog, sent: dict[str, str], default_currency: str
) -> dict[str, Any]:
    """The form's strings as `autotopup.save_settings` takes them (an empty field keeps its
    value); ValidationFailed naming the field for one that is not a number."""
    currency = catalog.check_currency(sent["currency"]) if sent["currency"] else default_currency
    return {
        "enabled": sent["enabled"] == "on",
        "currency": currency,
        "threshold": _whole_or_none(sent["threshold"], "threshold"),
        "credits": _whole_or_none(sent["credits"], "credits"),
        "max_per_day": _whole_or_none(sent["max_per_day"], "max_per_day"),
        "monthly_limit": _minor_or_none(sent["monthly_limit"], currency, "monthly_limit"),
    }


Field = Annotated[str, Form(max_length=32)]


@router.post("/credits/auto-topup")
async def save_auto_topup(
    request: Request,
    session: SessionDep,
    customer: PostingCustomerDep,
    enabled: Annotated[str, Form(max_length=3)] = "",
    threshold: Field = "",
    credits: Field = "",
    max_per_day: Field = "",
    monthly_limit: Field = "",
    currency: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Save the auto top-up (`autotopup.save_settings`, as `PUT /api/billing/auto-topup`), in
    a unit of work of its own: a refusal writes nothing and shows the page again, 400, naming
    the field."""
    container = get_container(request)
    catalog = read_credit_catalog(container.settings)
    account = customer.account
    default_currency = credit_currency(catalog, account, None)
    sent = {
        "enabled": enabled,
        "threshold": threshold,
        "credits": credits,
        "max_per_day": max_per_day,
        "monthly_limit": monthly_limit,
        "currency": currency.strip().lower(),
    }
    await end_transaction(session)
    try:
        changes = _auto_topup_changes(catalog, sent, default_currency)
        async with container.db.transaction() as own:
            await autotopup.save_settings(
                own,
                account.id,
                changes,
                catalog=catalog,
                default_currency=default_currency,
                clock=container.clock,
                audit=panel_audit(request, customer.session),
            )
    except ValidationFailed as exc:
        async with container.db.read() as read:
            context = await credits_context(request, read, customer)
        form = _auto_topup_form(
            catalog,
            context["auto"],
            default_currency,
            context["topup_default"],
            sent=sent,
            error=exc,
        )
        return render(request, "credits.html", {**context, **form}, status_code=status_for(exc))
    return RedirectResponse("/credits?done=auto-topup#auto-topup", status_code=303)


# --- the histories on the Activity page --------------------------------------------------------


@router.get("/activity/histories")
async def histories(
    request: Request,
    session: ReadSessionDep,
    customer: ReadingCustomerDep,
    credit_page: PageNumber = 1,
    billing_page: PageNumber = 1,
) -> Response:
    """The credit and billing histories alone (what htmx swaps when paging them)."""
    context = await histories_context(
        request,
        session,
        customer.account,
        credit_page=credit_page,
        billing_page=billing_page,
        page_size=PAGE_SIZE,
    )
    return render(request, "_credit_histories.html", {**context, "visitor": customer})


HISTORY_CSV_HEADER = [
    "id",
    "created_at",
    "type",
    "description",
    "credits",
    "amount",
    "currency",
    "status",
]

Read = Callable[[AsyncSession, str, int, int], Any]


async def history_rows(
    container: Container, read: Read, account_id: str
) -> AsyncIterator[list[str]]:
    """Every row of one history, newest first, in one read unit of work (one snapshot),
    CSV_BATCH rows a query; amounts in major units (exact) beside their currency."""
    yield HISTORY_CSV_HEADER
    async with container.db.read() as session:
        page = 1
        while True:
            found: history.Page = await read(session, account_id, page, CSV_BATCH)
            for row in found.rows:
                yield [
                    row.id,
                    row.created_at,
                    row.type,
                    row.description or "",
                    "" if row.credits is None else str(row.credits),
                    str(to_major(row.amount, row.currency)),
                    row.currency.upper(),
                    row.status,
                ]
            if len(found.rows) < CSV_BATCH:
                return
            page += 1


@router.get("/activity/credits.csv")
async def credit_history_csv(request: Request, customer: ReadingCustomerDep) -> Response:
    """The credit history (purchases, top-ups, refunds, subscription invoices), as CSV."""
    rows = history_rows(get_container(request), history.credit_history, customer.account.id)
    return csv_response(rows, "credit-history.csv")


@router.get("/activity/billing.csv")
async def billing_history_csv(request: Request, customer: ReadingCustomerDep) -> Response:
    """Stripe's invoices, charges and refunds of the account, as CSV."""
    rows = history_rows(get_container(request), history.billing_history, customer.account.id)
    return csv_response(rows, "billing-history.csv")
