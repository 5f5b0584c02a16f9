"""Document 004: subscription payments under `/api/v1/payments/*`.

Every response, errors included, is the `{success, message, data}` envelope; validation errors
are 400 and server-side failures 500, the status codes the document lists (a live subscription
blocking a second checkout stays 409 Conflict). Routes only translate: the rules are in
`billfold.subscriptions` (reads, checkout, changes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from billfold.api.account_deps import (
    SHOP_HEADER_DOC,
    ActingAccountDep,
    ReadingAccountDep,
    ReadingCallerDep,
    read_opening_account,
)
from billfold.api.audit_deps import AuditContextDep
from billfold.api.deps import ContainerDep, ReadSessionDep, SessionDep, end_transaction
from billfold.api.errors import ErrorBody, error_responses, register_error_shape
from billfold.api.ratelimit import RateLimitClass, rate_limit
from billfold.api.webhooks import accept_stripe_webhook
from billfold.catalog.service import Catalog, PlanPrice, load_catalog
from billfold.errors import NotFound, ValidationFailed
from billfold.money import format_money, to_major
from billfold.subscriptions import changes, checkout, reads
from billfold.subscriptions.models import Subscription

PREFIX = "/api/v1/payments"
router = APIRouter(prefix=PREFIX, tags=["payments v1 (document 004)"])


def envelope(message: str, data: Any, *, status_code: int = 200) -> JSONResponse:
    return JSONResponse(
        {"success": status_code < 400, "message": message, "data": data},
        status_code=status_code,
    )


def _error_shape(body: ErrorBody, request: Request) -> JSONResponse:
    status = body.status
    message = body.message
    if status == 422:  # the document's validation errors are 400
        status = 400
    if status >= 500:
        status = 500
        if request.url.path == f"{PREFIX}/create-checkout-session":
            message = f"Failed to create checkout session: {message}"
    return envelope(message, None, status_code=status)


register_error_shape(PREFIX, _error_shape)


class V1Error(BaseModel):
    """Document 004's error envelope (`_error_shape`)."""

    success: bool
    message: str
    data: None = None


def v1_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    # Document 004 answers validation errors as 400, and every server error as 500.
    return error_responses(400, 413, 429, *statuses, model=V1Error)


USER = (401, 403)


def _major(amount: int, currency: str) -> float:
    # The document's `price` is a JSON number; the conversion itself is exact (Decimal).
    return float(to_major(amount, currency))


def format_price(amount: int | None, currency: str) -> str | None:
    """699 usd -> "$6.99" (the document's display strings, in English)."""
    if amount is None:
        return None
    return format_money(amount, currency, "en")


def _timestamp(value: datetime | None) -> str | None:
    """The document's timestamps: UTC, seconds, no offset ("2024-03-01T00:00:00")."""
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat()


def _plan_entries(catalog: Catalog, currency: str | None) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for plan, price in catalog.prices():
        if currency and price.currency != currency:
            continue
        if price.stripe_price_id is None and price.amount is None:
            continue
        entries.append(
            {
                "id": price.lookup_key,
                "name": price.name or plan.name,
                "plan_code": f"{plan.code}_{price.interval}",
                "duration": price.interval,
                "price": _major(price.amount, price.currency) if price.amount is not None else None,
                "currency": price.currency.upper(),
                "stripe_price_id": price.stripe_price_id,
                "plan_details": [*plan.features, *price.features],
                "description": price.description or plan.description,
                "is_active": "true" if plan.active else "false",
                "display_order": str(len(entries) + 1),
            }
        )
    return entries


@router.get("/plans", responses=v1_errors())
async def get_plans(
    session: ReadSessionDep,
    container: ContainerDep,
    currency: str | None = Query(default=None, description="usd, eur, ... (default: the default)"),
) -> JSONResponse:
    """Every plan price on sale, in the default currency unless `currency` names another."""
    wanted = (currency or container.settings.stripe_default_currency).lower()
    catalog = await load_catalog(session, container.settings)
    plans = _plan_entries(catalog, wanted)
    return envelope(
        "Subscription plans retrieved successfully", {"plans": plans, "total": len(plans)}
    )


def _premium_price(catalog: Catalog, interval: str, currency: str) -> PlanPrice | None:
    for _plan, price in catalog.prices():
        if price.interval == interval and price.currency == currency:
            return price
    return None


@router.get("/config", responses=v1_errors())
async def get_config(session: ReadSessionDep, container: ContainerDep) -> JSONResponse:
    """The publishable key and the first plan's monthly and yearly prices."""
    settings = container.settings
    catalog = await load_catalog(session, settings)
    currency = settings.stripe_default_currency
    monthly = _premium_price(catalog, "monthly", currency)
    yearly = _premium_price(catalog, "yearly", currency)
    return envelope(
        "Stripe configuration retrieved successfully",
        {
            "publishable_key": settings.publishable_key,
            "monthly_price_id": monthly.stripe_price_id if monthly else None,
            "yearly_price_id": yearly.stripe_price_id if yearly else None,
            "monthly_price": format_price(monthly.amount, currency) if monthly else None,
            "yearly_price": format_price(yearly.amount, currency) if yearly else None,
        },
    )


class CheckoutCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    price_id: str = Field(min_length=1, max_length=255)
    interval: str = Field(pattern="^(monthly|yearly)$")
    success_url: str | None = Field(default=None, max_length=2048)
    cancel_url: str | None = Field(default=None, max_length=2048)


@router.post("/create-checkout-session", responses=v1_errors(*USER, 404, 409, 500))
@rate_limit(RateLimitClass.CHECKOUT)
async def create_checkout_session(
    body: CheckoutCreate,
    request: Request,
    session: SessionDep,
    container: ContainerDep,
    account: ActingAccountDep,
    audit: AuditContextDep,
) -> JSONResponse:
    await end_transaction(session)
    started = await checkout.start_checkout(
        container,
        account,
        audit=audit,
        price_id=body.price_id,
        interval=body.interval,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    return envelope(
        "Checkout session created successfully",
        {
            "session_id": started.id,
            "url": started.url,
            "publishable_key": container.settings.publishable_key,
        },
    )


@router.get("/subscription/status", responses=v1_errors(*USER), openapi_extra=SHOP_HEADER_DOC)
async def get_subscription_status(caller: ReadingCallerDep) -> JSONResponse:
    found = await read_opening_account(caller, reads.premium_status_of)
    return envelope(
        "Subscription status retrieved successfully",
        {
            "has_premium": found.has_premium,
            "plan": found.plan,
            "status": found.status,
            "interval": found.interval,
            "current_period_end": _timestamp(found.current_period_end),
            "cancel_at_period_end": found.cancel_at_period_end,
        },
    )


def _details(sub: Subscription, user_id: str) -> dict[str, Any]:
    return {
        "id": sub.id,
        "user_id": user_id,
        "plan": sub.plan_code,
        "interval": sub.interval,
        "status": sub.status,
        "stripe_customer_id": sub.stripe_customer_id,
        "stripe_subscription_id": sub.stripe_subscription_id,
        "current_period_start": _timestamp(sub.current_period_start),
        "current_period_end": _timestamp(sub.current_period_end),
        "cancel_at_period_end": sub.cancel_at_period_end,
        "canceled_at": _timestamp(sub.canceled_at),
        "created_at": _timestamp(sub.created_at),
        "updated_at": _timestamp(sub.updated_at),
    }


@router.get("/subscription", responses=v1_errors(*USER, 404))
async def get_subscription(
    session: ReadSessionDep, container: ContainerDep, account: ReadingAccountDep
) -> JSONResponse:
    sub = await reads.current_subscription(session, account)
    if sub is None:
        raise NotFound("Subscription not found")
    return envelope("Subscription retrieved successfully", _details(sub, account.external_id))


def _ending(sub: Subscription, *, ended: bool) -> dict[str, Any]:
    """The answer of cancel and reactivate: whether the subscription ends with its period, and
    when it ended (`ended`, canceled now) or when the period ends."""
    data: dict[str, Any] = {
        "id": sub.id,
        "status": sub.status,
        "cancel_at_period_end": sub.cancel_at_period_end,
    }
    if ended:
        data["canceled_at"] = _timestamp(sub.canceled_at)
    else:
        data["current_period_end"] = _timestamp(sub.current_period_end)
    return data


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    cancel_immediately: bool = False


async def _cancel_body(request: Request) -> CancelRequest:
    """The body is optional (the document's default is to cancel at the period end)."""
    raw = await request.body()
    if not raw.strip():
        return CancelRequest()
    try:
        return CancelRequest.model_validate_json(raw)
    except ValueError as exc:
        raise ValidationFailed(
            "cancel_immediately must be true or false", field="cancel_immediately"
        ) from exc


@router.post("/subscription/cancel", responses=v1_errors(*USER, 404, 409, 500))
async def cancel_subscription(
    request: Request,
    session: SessionDep,
    container: ContainerDep,
    account: ActingAccountDep,
    audit: AuditContextDep,
) -> JSONResponse:
    body = await _cancel_body(request)
    await end_transaction(session)  # no lock while Stripe answers
    sub = await changes.cancel(container, account, audit=audit, immediately=body.cancel_immediately)
    if body.cancel_immediately:
        return envelope("Subscription canceled immediately", _ending(sub, ended=True))
    return envelope("Subscription will cancel at end of billing period", _ending(sub, ended=False))


@router.post("/subscription/reactivate", responses=v1_errors(*USER, 404, 409, 500))
async def reactivate_subscription(
    session: SessionDep,
    container: ContainerDep,
    account: ActingAccountDep,
    audit: AuditContextDep,
) -> JSONResponse:
    await end_transaction(session)  # no lock while Stripe answers
    sub = await changes.reactivate(container, account, audit=audit)
    return envelope("Subscription reactivated successfully", _ending(sub, ended=False))


@router.post("/webhook", responses=v1_errors())
@rate_limit(RateLimitClass.WEBHOOK)
async def stripe_webhook(
    request: Request, container: ContainerDep, background: BackgroundTasks
) -> JSONResponse:
    """Stripe's events: verified, stored once, applied after the response."""
    stored = await accept_stripe_webhook(request, container, background)
    return envelope(
        "Webhook received",
        {"event_id": stored.id, "type": stored.type, "duplicate": not stored.inserted},
    )
