"""Document 001's subscription routes, `/api/subscriptions/*` (the Shopify app's dialect).

The document lists the paths only; the shapes are billfold's, in the document's style (camelCase,
`{subscription: ...}`, Checkout answered as `{sessionUrl, checkoutUrl}`):

- `GET  current`   -> `{subscription: Subscription | null, hasPremium}`
- `POST subscribe` `{planId? | priceId?, interval?, currency?, successUrl?, cancelUrl?}`
                   -> `{sessionId, sessionUrl, checkoutUrl}` (409 while a subscription is live;
                   an `Idempotency-Key` header replays the same session)
- `PUT  update`    `{planId? | priceId?, interval?, currency?, quantity?, prorationBehavior?}`
                   -> `{subscription}`; prorates by default (`create_prorations`)
- `POST cancel`    `{cancelImmediately?}` (body optional) -> `{subscription}`; at period end
                   unless `cancelImmediately`
- `GET  portal?returnUrl=` -> `{url}`; 404 when the account has no Stripe customer yet

`Subscription` is `{id, stripeSubscriptionId, plan, status, interval, amount (minor units),
currency (upper case), quantity, currentPeriodStart, currentPeriodEnd, cancelAtPeriodEnd,
cancelAt, canceledAt, trialEnd, createdAt}`, timestamps in ISO 8601 UTC. The account is the
shop of the token (`shop` claim) or of `X-Shopify-Shop-Domain` when the token is entitled to it,
otherwise the user's own (see `billfold.api.account_deps`). Errors use billfold's default shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from billfold.api.account_deps import ActingAccountDep, ReadingAccountDep
from billfold.api.audit_deps import AuditContextDep
from billfold.api.deps import ContainerDep, ReadSessionDep, SessionDep, end_transaction
from billfold.api.errors import AUTHENTICATED, error_responses
from billfold.api.ratelimit import RateLimitClass, rate_limit
from billfold.errors import ValidationFailed
from billfold.subscriptions import changes, checkout, models, reads

router = APIRouter(prefix="/api/subscriptions", tags=["subscriptions (document 001)"])


class CamelModel(BaseModel):
    """camelCase on the wire (the document's style), snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, extra="ignore"
    )


class SubscriptionRead(BaseModel):
    """A subscription in the document's style (read from the `Subscription` row)."""

    model_config = ConfigDict(
        from_attributes=True,
        alias_generator=AliasGenerator(serialization_alias=to_camel),
        serialize_by_alias=True,
    )

    id: str
    stripe_subscription_id: str
    plan: str | None = Field(validation_alias="plan_code")
    status: str
    interval: str | None
    amount: int | None = Field(
        validation_alias="unit_amount", description="price per period in minor units (699 = 6.99)"
    )
    currency: str | None
    quantity: int
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    cancel_at: datetime | None
    canceled_at: datetime | None
    trial_end: datetime | None
    created_at: datetime

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else value


class CurrentSubscriptionRead(CamelModel):
    subscription: SubscriptionRead | None
    has_premium: bool


class SubscriptionEnvelope(CamelModel):
    subscription: SubscriptionRead


Interval = Literal["monthly", "yearly"]


class PlanChoice(CamelModel):
    """A catalog price: `priceId` (a Stripe price id or lookup key), or `planId` (a plan code)
    with `interval` and `currency`."""

    plan_id: str | None = Field(default=None, min_length=1, max_length=100)
    price_id: str | None = Field(default=None, min_length=1, max_length=255)
    interval: Interval | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)


class SubscribeCreate(PlanChoice):
    success_url: str | None = Field(default=None, max_length=2048)
    cancel_url: str | None = Field(default=None, max_length=2048)


class CheckoutRead(CamelModel):
    session_id: str
    session_url: str
    checkout_url: str


class SubscriptionUpdate(PlanChoice):
    quantity: int | None = Field(default=None, ge=1, le=models.MAX_QUANTITY)
    proration_behavior: Literal["create_prorations", "always_invoice", "none"] = "create_prorations"


class CancelRequest(CamelModel):
    cancel_immediately: bool = False


class PortalRead(CamelModel):
    url: str


def _require_plan(choice: PlanChoice) -> None:
    if choice.plan_id is None and choice.price_id is None:
        raise ValidationFailed("send planId or priceId", field="planId")


@router.get(
    "/current",
    response_model=CurrentSubscriptionRead,
    responses=error_responses(*AUTHENTICATED, 404),
)
async def get_current_subscription(
    session: ReadSessionDep, container: ContainerDep, account: ReadingAccountDep
) -> CurrentSubscriptionRead:
    """The account's subscription (the live one, else the last ended one) and its premium flag."""
    found = await reads.status(session, container, account)
    return CurrentSubscriptionRead(
        subscription=SubscriptionRead.model_validate(found.subscription)
        if found.subscription
        else None,
        has_premium=found.has_premium,
    )


@router.post(
    "/subscribe",
    response_model=CheckoutRead,
    responses=error_responses(*AUTHENTICATED, 404, 409, 502),
)
@rate_limit(RateLimitClass.CHECKOUT)
async def subscribe(
    body: SubscribeCreate,
    request: Request,
    session: SessionDep,
    container: ContainerDep,
    account: ActingAccountDep,
    audit: AuditContextDep,
) -> CheckoutRead:
    """Start a Stripe Checkout for a plan; redirect the customer to `sessionUrl`."""
    _require_plan(body)
    await end_transaction(session)
    started = await checkout.start_checkout(
        container,
        account,
        audit=audit,
        price_id=body.price_id,
        plan=body.plan_id,
        interval=body.interval,
        currency=body.currency,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    return CheckoutRead(session_id=started.id, session_url=started.url, checkout_url=started.url)


@router.put(
    "/update",
    response_model=SubscriptionEnvelope,
    responses=error_responses(*AUTHENTICATED, 404, 409, 502),
)
@rate_limit(RateLimitClass.CHECKOUT)
async def update_subscription(
    body: SubscriptionUpdate,
    session: SessionDep,
    container: ContainerDep,
    account: ActingAccountDep,
    audit: AuditContextDep,
) -> SubscriptionEnvelope:
    """Move the subscription to another plan, interval or quantity, prorated by default."""
    if body.plan_id is None and body.price_id is None and body.quantity is None:
        raise ValidationFailed("send planId, priceId or quantity", field="planId")
    await end_transaction(session)  # no lock while Stripe answers
    sub = await changes.change_plan(
        container,
        account,
        audit=audit,
        price_id=body.price_id,
        plan=body.plan_id,
        interval=body.interval,
        currency=body.currency,
        quantity=body.quantity,
        proration=body.proration_behavior,
    )
    return SubscriptionEnvelope(subscription=SubscriptionRead.model_validate(sub))


@router.post(
    "/cancel",
    response_model=SubscriptionEnvelope,
    responses=error_responses(*AUTHENTICATED, 404, 409, 502),
)
async def cancel_subscription(
    session: SessionDep,
    container: ContainerDep,
    account: ActingAccountDep,
    audit: AuditContextDep,
    body: CancelRequest | None = None,
) -> SubscriptionEnvelope:
    """Cancel at the end of the paid period (access stays until then), or now. The body is
    optional: without one the subscription ends with the period."""
    immediately = body.cancel_immediately if body is not None else False
    await end_transaction(session)  # no lock while Stripe answers
    sub = await changes.cancel(container, account, audit=audit, immediately=immediately)
    return SubscriptionEnvelope(subscription=SubscriptionRead.model_validate(sub))


@router.get(
    "/portal", response_model=PortalRead, responses=error_responses(*AUTHENTICATED, 404, 502)
)
@rate_limit(RateLimitClass.CHECKOUT)
async def get_portal(
    session: SessionDep,
    container: ContainerDep,
    account: ActingAccountDep,
    audit: AuditContextDep,
    return_url: str | None = Query(default=None, alias="returnUrl", max_length=2048),
) -> PortalRead:
    """A Stripe customer portal URL (return to `returnUrl`, default FRONTEND_URL)."""
    await end_transaction(session)  # no lock while Stripe answers
    url = await checkout.open_portal(container, account, audit=audit, return_url=return_url)
    return PortalRead(url=url)
