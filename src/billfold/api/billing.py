"""`/api/billing/*`: the billing routes of documents 003 (the Stripe billing panel) and 001 (the
Shopify app's credits), which share the prefix.

Served here so far (document 003):

- `POST /api/billing/checkout_session` `{price_id? | plan?, interval?, currency?, quantity?,
  success_url?, cancel_url?}` -> `{id, url}`: a subscription-mode Stripe Checkout session
  (redirects default to STRIPE_SUCCESS_URL / STRIPE_CANCEL_URL, else FRONTEND_URL; 409 while a
  subscription is live; 400 for a redirect to a host that is not allowed). An `Idempotency-Key`
  header replays the same session for the same key.
- `GET /api/billing/subscriptions` -> `{subscriptions: [...]}`, newest first.

Document 003 names its fields in snake_case, so these shapes do too; document 001's routes under
the same prefix (balance, packages, top-up, purchase, history) use camelCase and are added by the
credits work. Every route takes `Authorization: Bearer` and acts on the account
`billfold.api.account_deps` resolves, in the panel session `X-SESSION-ID` names
(`billfold.api.session_deps`: checked when sent, required with BILLFOLD_REQUIRE_SESSION_ID).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from billfold.api.audit_deps import AuditContextDep
from billfold.api.deps import ContainerDep, ReadSessionDep, SessionDep, end_transaction
from billfold.api.errors import AUTHENTICATED, error_responses
from billfold.api.ratelimit import RateLimitClass, rate_limit
from billfold.api.session_deps import SessionCheckedAccountDep, SessionCheckedReadingAccountDep
from billfold.errors import ValidationFailed
from billfold.payments import checkout as payment_checkout
from billfold.subscriptions import checkout, models, reads

router = APIRouter(prefix="/api/billing", tags=["billing (documents 001 and 003)"])


# --- document 003: checkout and subscriptions --------------------------------------------------


class CheckoutSessionCreate(BaseModel):
    """A catalog price: `price_id` (a Stripe price id or lookup key) or `plan` with `interval`;
    or, in payment mode, an `amount` (minor units) of `currency` with a `description`."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"price_id": "billfold_premium_monthly_usd"},
                {"amount": 2500, "currency": "usd", "description": "Balance top-up"},
            ]
        },
    )

    price_id: str | None = Field(default=None, min_length=1, max_length=255)
    plan: str | None = Field(default=None, min_length=1, max_length=100)
    interval: Literal["monthly", "yearly"] | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    quantity: int = Field(default=1, ge=1, le=models.MAX_QUANTITY)
    success_url: str | None = Field(default=None, max_length=2048)
    cancel_url: str | None = Field(default=None, max_length=2048)
    amount: int | float | None = Field(
        default=None, description="payment mode: minor units (2500 = 25.00), a whole number"
    )
    description: str | None = Field(default=None, max_length=500)


class CheckoutSessionRead(BaseModel):
    id: str
    url: str


class SubscriptionRead(BaseModel):
    """A subscription as billfold keeps it (read from the `Subscription` row)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    stripe_subscription_id: str
    stripe_customer_id: str
    plan: str | None = Field(validation_alias="plan_code")
    price_id: str | None
    status: str
    interval: str | None
    unit_amount: int | None = Field(description="price per period in minor units (699 = 6.99)")
    currency: str | None
    quantity: int
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    trial_end: datetime | None
    created_at: datetime
    updated_at: datetime


class SubscriptionList(BaseModel):
    subscriptions: list[SubscriptionRead]


@router.post(
    "/checkout_session",
    response_model=CheckoutSessionRead,
    responses=error_responses(*AUTHENTICATED, 404, 409, 502),
)
@rate_limit(RateLimitClass.CHECKOUT)
async def create_checkout_session(
    body: CheckoutSessionCreate,
    request: Request,
    session: SessionDep,
    container: ContainerDep,
    account: SessionCheckedAccountDep,
    audit: AuditContextDep,
) -> CheckoutSessionRead:
    """Start a Stripe Checkout (subscription mode for a catalog price, payment mode for an
    `amount`); redirect the customer to `url`."""
    if body.amount is not None:
        if body.price_id is not None or body.plan is not None:
            raise ValidationFailed("send amount, or price_id / plan, not both", field="amount")
        await end_transaction(session)
        paying = await payment_checkout.start_payment_checkout(
            container,
            account,
            amount=body.amount,
            currency=body.currency,
            description=body.description,
            success_url=body.success_url,
            cancel_url=body.cancel_url,
            audit=audit,
            idempotency_key=request.headers.get("idempotency-key"),
        )
        return CheckoutSessionRead(id=paying.id, url=paying.url)
    if body.price_id is None and body.plan is None:
        raise ValidationFailed("send price_id or plan", field="price_id")
    await end_transaction(session)
    started = await checkout.start_checkout(
        container,
        account,
        audit=audit,
        price_id=body.price_id,
        plan=body.plan,
        interval=body.interval,
        currency=body.currency,
        quantity=body.quantity,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    return CheckoutSessionRead(id=started.id, url=started.url)


@router.get(
    "/subscriptions",
    response_model=SubscriptionList,
    responses=error_responses(*AUTHENTICATED, 404),
)
async def list_subscriptions(
    session: ReadSessionDep, account: SessionCheckedReadingAccountDep
) -> SubscriptionList:
    """Every subscription of the account, newest first (ended ones included)."""
    found = await reads.list_subscriptions(session, account)
    return SubscriptionList(subscriptions=[SubscriptionRead.model_validate(sub) for sub in found])
