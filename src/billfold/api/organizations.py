"""Document 002: organization billing under `/api/v1/organizations/{org_id}/billing/*`.

Only an admin of the organization (or the host app's API key) may start a checkout or open the
portal; members may read the subscription; anyone else gets 403. Errors use billfold's default
shape. The rules live in `billfold.subscriptions` (reads, checkout, changes).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.api.audit_deps import AuditContextDep
from billfold.api.auth_deps import PrincipalDep, ShopHeaderDep
from billfold.api.deps import ContainerDep, ReadSessionDep, SessionDep, end_transaction
from billfold.api.errors import AUTHENTICATED, error_responses
from billfold.api.ratelimit import RateLimitClass, rate_limit
from billfold.auth.principal import Principal
from billfold.auth.tenancy import account_for_organization
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.errors import ValidationFailed
from billfold.subscriptions import checkout, models, reads

router = APIRouter(
    prefix="/api/v1/organizations/{org_id}/billing", tags=["organization billing (document 002)"]
)


class CheckoutSessionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    price_id: str = Field(min_length=1, max_length=255)
    quantity: int | None = Field(default=None, ge=1, le=models.MAX_QUANTITY)
    success_url: str | None = Field(default=None, max_length=2048)
    cancel_url: str | None = Field(default=None, max_length=2048)


class CheckoutSessionResponse(BaseModel):
    session_id: str
    url: str


class SubscriptionStatusRead(BaseModel):
    status: str | None
    plan: str | None
    current_period_end: datetime | None
    cancel_at_period_end: bool


class PortalSessionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    return_url: str | None = Field(default=None, max_length=2048)


class PortalSessionResponse(BaseModel):
    url: str


async def _organization(
    session: AsyncSession,
    container: Container,
    principal: Principal,
    org_id: str,
    shop: str | None,
    *,
    admin: bool,
) -> BillingAccount:
    """The path's organization by the one rule (a shop header names another account: 403)."""
    return await account_for_organization(
        session,
        principal,
        org_id,
        container.settings,
        require_admin=admin,
        header_shop=shop,
        clock=container.clock,
    )


@router.post("/checkout", responses=error_responses(*AUTHENTICATED, 404, 409, 502))
@rate_limit(RateLimitClass.CHECKOUT)
async def create_checkout(
    org_id: str,
    body: CheckoutSessionRequest,
    request: Request,
    session: SessionDep,
    container: ContainerDep,
    principal: PrincipalDep,
    audit: AuditContextDep,
    shop: ShopHeaderDep = None,
) -> CheckoutSessionResponse:
    """Start a subscription checkout for the organization (admins only)."""
    account = await _organization(session, container, principal, org_id, shop, admin=True)
    await end_transaction(session)
    started = await checkout.start_checkout(
        container,
        account,
        audit=audit,
        price_id=body.price_id,
        quantity=body.quantity or 1,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    return CheckoutSessionResponse(session_id=started.id, url=started.url)


@router.get("/subscription", responses=error_responses(*AUTHENTICATED, 404))
async def get_subscription(
    org_id: str,
    session: ReadSessionDep,
    container: ContainerDep,
    principal: PrincipalDep,
    shop: ShopHeaderDep = None,
) -> SubscriptionStatusRead:
    """The organization's subscription status (any member)."""
    account = await _organization(session, container, principal, org_id, shop, admin=False)
    found = await reads.premium_status(session, container, account)
    return SubscriptionStatusRead(
        status=found.status,
        plan=found.plan,
        current_period_end=found.current_period_end,
        cancel_at_period_end=found.cancel_at_period_end,
    )


@router.post("/portal", responses=error_responses(*AUTHENTICATED, 404, 409, 502))
@rate_limit(RateLimitClass.CHECKOUT)
async def create_portal(
    org_id: str,
    request: Request,
    session: SessionDep,
    container: ContainerDep,
    principal: PrincipalDep,
    audit: AuditContextDep,
    shop: ShopHeaderDep = None,
) -> PortalSessionResponse:
    """A Stripe billing portal session for the organization (admins only)."""
    raw = await request.body()
    try:
        body = (
            PortalSessionRequest.model_validate_json(raw) if raw.strip() else PortalSessionRequest()
        )
    except ValueError as exc:
        raise ValidationFailed("return_url must be a string", field="return_url") from exc
    account = await _organization(session, container, principal, org_id, shop, admin=True)
    await end_transaction(session)  # no lock while Stripe answers
    url = await checkout.open_portal(container, account, audit=audit, return_url=body.return_url)
    return PortalSessionResponse(url=url)
