"""Document 000's `billing.*` procedures.

- `billing.createCheckoutSession` `{productId, successUrl, cancelUrl, token}` -> `{id, url}`: a
  subscription-mode Stripe Checkout session with promotion codes allowed. `productId` may be a
  Stripe product id (`billfold_premium`), a price id, a catalog lookup key or a plan code.
- `billing.createCustomerPortalSession` `{returnUrl, token}` -> `{url}`: a Stripe billing portal
  session; an account that never started a checkout has no Stripe customer and gets NOT_FOUND
  ("no billing record for this account yet").

Both are mutations. The token is the input's `token` or the `Authorization: Bearer` header; a
token naming a shop (or `X-Shopify-Shop-Domain`) bills that shop's account.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from billfold.api.audit_deps import audit_context_for
from billfold.api.deps import end_transaction
from billfold.api.ratelimit import RateLimitClass
from billfold.api.trpc.procedures import ProcedureContext, ProcedureRouter
from billfold.audit.context import AuditContext
from billfold.auth.principal import SHOP_HEADER
from billfold.auth.tenancy import account_for_principal
from billfold.customers.models import BillingAccount
from billfold.subscriptions import checkout

procedures = ProcedureRouter()


class _Input(BaseModel):
    # zod's default: unknown keys are dropped, not refused.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    token: str | None = Field(default=None, max_length=8192)


class CheckoutSessionCreate(_Input):
    product_id: str = Field(min_length=1, max_length=255)
    success_url: str = Field(min_length=1, max_length=2048)
    cancel_url: str = Field(min_length=1, max_length=2048)


class CheckoutSessionRead(BaseModel):
    id: str
    url: str


class PortalSessionCreate(_Input):
    return_url: str = Field(min_length=1, max_length=2048)


class PortalSessionRead(BaseModel):
    url: str


async def _caller(ctx: ProcedureContext, token: str | None) -> tuple[BillingAccount, AuditContext]:
    """The account the call acts on, and an audit context naming the caller."""
    principal = await ctx.principal(token)
    account = await account_for_principal(
        ctx.session,
        principal,
        ctx.container.settings,
        header_shop=ctx.request.headers.get(SHOP_HEADER),
        clock=ctx.container.clock,
    )
    return account, audit_context_for(ctx.request, principal)


@procedures.mutation(
    "createCheckoutSession", CheckoutSessionCreate, rate_limit=RateLimitClass.CHECKOUT
)
async def create_checkout_session(
    ctx: ProcedureContext, data: CheckoutSessionCreate
) -> CheckoutSessionRead:
    account, audit = await _caller(ctx, data.token)
    await end_transaction(ctx.session)
    started = await checkout.start_checkout(
        ctx.container,
        account,
        audit=audit,
        price_id=data.product_id,
        success_url=data.success_url,
        cancel_url=data.cancel_url,
        allow_promotion_codes=True,
        idempotency_key=ctx.request.headers.get("idempotency-key"),
    )
    return CheckoutSessionRead(id=started.id, url=started.url)


@procedures.mutation(
    "createCustomerPortalSession", PortalSessionCreate, rate_limit=RateLimitClass.CHECKOUT
)
async def create_customer_portal_session(
    ctx: ProcedureContext, data: PortalSessionCreate
) -> PortalSessionRead:
    account, audit = await _caller(ctx, data.token)
    await end_transaction(ctx.session)  # no lock while Stripe answers
    url = await checkout.open_portal(
        ctx.container,
        account,
        audit=audit,
        return_url=data.return_url,
    )
    return PortalSessionRead(url=url)
