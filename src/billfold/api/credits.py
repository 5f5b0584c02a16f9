"""Document 001's credit routes under `/api/billing/*`, in the document's shapes (camelCase,
money in major units such as 9.99, credits as integers), and billfold's usage and hold routes
beside them.

- `GET  balance` -> `{credits, balance, currency}` (`X-Balance-Version` header: the version)
- `GET  packages?currency=` -> `{packages, currency, subscriptionRequired}`
- `GET  topup/calculate?credits=&currency=` -> `{credits, price, currency}`
- `POST topup` `{credits, successUrl, cancelUrl, currency?}` -> `{sessionUrl, checkoutUrl}`
- `POST purchase` `{packageId, successUrl, cancelUrl, currency?}` -> the same; 402 without an
  active subscription
- `GET  history?page&pageSize`, `GET billing-history?page&pageSize` -> `{transactions|items,
  pagination}`
Usage and holds take an API key naming the account (the host app's backend); a user's token
is refused with 403.

- `POST usage` `{credits, idempotencyKey, description?, metadata?}` -> `{credits, balance,
  version, replayed}`; 402 `{error: {code: payment_required, details: {shortfall}}}`
- `POST usage/batch` `{events: [...]}` (1 to 100) -> `{results: [...]}`, each its own outcome
- `POST usage/check` `{credits}` -> `{allowed, credits, available, shortfall, version}`
- `POST holds` `{credits, idempotencyKey, expiresIn?, description?}`, `GET holds?state=`,
  `POST holds/{id}/capture` `{credits?}`, `POST holds/{id}/release`

Currency: the query (or body), then the account's `currency` setting, then the catalog's
default (EUR). Bad amounts, currencies, packages, page sizes and redirect hosts are 400 naming
the field, before anything is written.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from billfold.api.account_deps import (
    SHOP_HEADER_DOC,
    ReadingAccountDep,
    ReadingCallerDep,
    account_of_request,
    read_opening_account,
)
from billfold.api.audit_deps import AuditContextDep
from billfold.api.auth_deps import PrincipalDep, ShopHeaderDep
from billfold.api.deps import ContainerDep, ReadSessionDep, SessionDep, end_transaction
from billfold.api.errors import AUTHENTICATED, error_responses
from billfold.api.params import credit_currency, credit_currency_of, int_param
from billfold.api.ratelimit import RateLimitClass, rate_limit
from billfold.auth.principal import AccountRef, Principal
from billfold.catalog.credits import read_credit_catalog
from billfold.container import Container
from billfold.credits import autotopup, history, purchases, service
from billfold.credits.models import PurchaseKind
from billfold.credits.reads import AccountBalance, balance_by_ref
from billfold.customers.models import BillingAccount
from billfold.customers.service import get_or_create_account
from billfold.errors import BillfoldError, Forbidden, ValidationFailed
from billfold.money import to_major
from billfold.payments.dues import DUES, DUES_PENDING, dues_from_balances
from billfold.payments.schemas import DuesRead
from billfold.subscriptions.reads import has_active_subscription

router = APIRouter(prefix="/api/billing", tags=["credits (document 001)"])

VERSION_HEADER = "X-Balance-Version"


class CamelModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, extra="ignore"
    )


async def _credit_account(
    principal: PrincipalDep,
    read: ReadSessionDep,
    container: ContainerDep,
    shop: ShopHeaderDep = None,
) -> BillingAccount:
    """The account a credit movement acts on (an organization's needs an admin), resolved in a
    read unit of work: on first use it is created in a short writer of its own, so a refused
    movement (400, 402) still leaves the account the caller named, and the request's own
    transaction holds only the movement. The caller is authenticated first: an API key's
    lookup takes a short unit of work of its own, released before the read one opens (a
    request holding one connection while it waits for another exhausts the pool under load)."""
    account = await account_of_request(read, container, principal, shop, require_admin=True)
    # Its connection goes back to the pool before the request's writer takes one: a request
    # never holds two while it waits for the second.
    await end_transaction(read)
    return account


# Declared before the route's SessionDep, so the account is resolved (and, the first time,
# created and committed) before the request's write transaction begins.
CreditAccountDep = Annotated[BillingAccount, Depends(_credit_account)]

BACKEND_ONLY = (
    "usage and holds take an API key naming the account (X-Billfold-Account): the host app's "
    "backend spends credits, not a user's token"
)


def _backend(principal: PrincipalDep) -> Principal:
    """Usage and holds are the host app's backend's (document 001): an API key, else 403
    before any account is resolved or created."""
    if not principal.is_api_key:
        raise Forbidden(BACKEND_ONLY)
    return principal


BackendDep = Annotated[Principal, Depends(_backend)]


async def _backend_account(
    principal: BackendDep, read: ReadSessionDep, container: ContainerDep, shop: ShopHeaderDep = None
) -> BillingAccount:
    """CreditAccountDep for an API key only."""
    return await _credit_account(principal, read, container, shop)


async def _backend_reading_account(
    principal: BackendDep,
    session: ReadSessionDep,
    container: ContainerDep,
    shop: ShopHeaderDep = None,
) -> BillingAccount:
    """ReadingAccountDep for an API key only."""
    return await account_of_request(session, container, principal, shop, require_admin=False)


BackendAccountDep = Annotated[BillingAccount, Depends(_backend_account)]
BackendReadingAccountDep = Annotated[BillingAccount, Depends(_backend_reading_account)]


def _major(minor: int, currency: str) -> float:
    return float(to_major(minor, currency))


def _versioned(response: Response, version: int) -> None:
    response.headers[VERSION_HEADER] = str(version)


# --- balance, packages, pricing ------------------------------------------------------------


class BalanceRead(BaseModel):
    """Document 001's `{credits, balance, currency}` exactly, and document 003's dues beside
    them (the same path serves both documents' clients)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "credits": 150,
                    "balance": 150,
                    "currency": "EUR",
                    "dues": [{"currency": "usd", "settled": 1250, "pending": 0, "total": 1250}],
                }
            ]
        }
    )

    credits: int
    balance: int = Field(description="an alias of credits")
    currency: str
    dues: list[DuesRead] = Field(
        default_factory=list,
        description="document 003: money owed per currency (minor units), settled and pending",
    )


@router.get(
    "/balance",
    response_model=BalanceRead,
    responses=error_responses(*AUTHENTICATED),
    openapi_extra=SHOP_HEADER_DOC,
)
@rate_limit(RateLimitClass.API)
async def get_balance(caller: ReadingCallerDep, currency: str | None = None) -> Response:
    """The account's spendable credits (negative after a clawback of credits already spent)."""
    container = caller.container
    catalog = read_credit_catalog(container.settings)
    found = await read_opening_account(caller, _balance_and_dues)
    code = credit_currency_of(catalog, found.settings, currency)
    owed = [DuesRead.of(d) for d in dues_from_balances(found.others)]
    credits = found.balance.credits
    body = BalanceRead(credits=credits, balance=credits, currency=code.upper(), dues=owed)
    # Serialized once, by the model (`response_model` still documents it): FastAPI would
    # validate the model again, dump it to Python and encode that.
    return Response(
        body.model_dump_json(),
        media_type="application/json",
        headers={VERSION_HEADER: str(found.balance.version)},
    )


async def _balance_and_dues(container: Container, ref: AccountRef) -> AccountBalance | None:
    # One hot read: the credits, and document 003's dues ledger accounts beside them.
    return await balance_by_ref(container.db, ref, others=(DUES, DUES_PENDING))


class PackageRead(BaseModel):
    id: str
    name: str
    credits: int
    price: float
    currency: str
    description: str | None = None


class PackagesRead(CamelModel):
    packages: list[PackageRead]
    currency: str
    subscription_required: bool


@router.get("/packages", response_model=PackagesRead, responses=error_responses(*AUTHENTICATED))
@rate_limit(RateLimitClass.API)
async def list_packages(
    session: ReadSessionDep,
    container: ContainerDep,
    account: ReadingAccountDep,
    currency: str | None = None,
) -> PackagesRead:
    """The credit packages in the currency; none (and `subscriptionRequired`) without an active
    subscription."""
    catalog = read_credit_catalog(container.settings)
    code = credit_currency(catalog, account, currency)
    active = await has_active_subscription(session, account)
    packages = (
        [
            PackageRead(
                id=p.id,
                name=p.name,
                credits=p.credits,
                price=_major(amount, code),
                currency=code.upper(),
                description=p.description,
            )
            for p, amount in catalog.packages_in(code)
        ]
        if active
        else []
    )
    return PackagesRead(packages=packages, currency=code.upper(), subscription_required=not active)


class TopupPriceRead(BaseModel):
    credits: int
    price: float
    currency: str


@router.get(
    "/topup/calculate", response_model=TopupPriceRead, responses=error_responses(*AUTHENTICATED)
)
@rate_limit(RateLimitClass.API)
async def calculate_topup(
    container: ContainerDep,
    account: ReadingAccountDep,
    credits: str | None = None,
    currency: str | None = None,
) -> TopupPriceRead:
    """The price of a top-up of `credits` (volume tiers of the catalog)."""
    catalog = read_credit_catalog(container.settings)
    code = credit_currency(catalog, account, currency)
    count = int_param(credits, "credits")
    price = catalog.topup_price(count, code)
    return TopupPriceRead(credits=count, price=_major(price, code), currency=code.upper())


# --- buying --------------------------------------------------------------------------------


class TopupCreate(CamelModel):
    credits: Any = None
    success_url: Any = None
    cancel_url: Any = None
    currency: Any = None


class PurchaseCreate(CamelModel):
    package_id: Any = None
    success_url: Any = None
    cancel_url: Any = None
    currency: Any = None


class CheckoutRead(CamelModel):
    session_url: str
    checkout_url: str


def _url(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise ValidationFailed(f"{field} is required (an https URL)", field=field)
    return value


@router.post(
    "/topup", response_model=CheckoutRead, responses=error_responses(*AUTHENTICATED, 409, 502)
)
@rate_limit(RateLimitClass.CHECKOUT)
async def create_topup(
    body: TopupCreate,
    request: Request,
    account: CreditAccountDep,
    session: SessionDep,
    container: ContainerDep,
    audit: AuditContextDep,
) -> CheckoutRead:
    """A payment-mode Checkout for `credits`; granted when Stripe reports the payment."""
    catalog = read_credit_catalog(container.settings)
    code = credit_currency(catalog, account, body.currency)
    count = service.check_credits(body.credits, maximum=catalog.max_topup_credits)
    catalog.topup_price(count, code)  # 400 before anything is written
    success = _url(body.success_url, "successUrl")
    cancel = _url(body.cancel_url, "cancelUrl")
    await end_transaction(session)
    started = await purchases.start_purchase(
        container,
        account,
        catalog,
        kind=PurchaseKind.TOPUP,
        currency=code,
        credits=count,
        success_url=success,
        cancel_url=cancel,
        audit=audit,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    return CheckoutRead(session_url=started.url, checkout_url=started.url)


@router.post(
    "/purchase",
    response_model=CheckoutRead,
    responses=error_responses(*AUTHENTICATED, 402, 409, 502),
)
@rate_limit(RateLimitClass.CHECKOUT)
async def create_purchase(
    body: PurchaseCreate,
    request: Request,
    account: CreditAccountDep,
    session: SessionDep,
    container: ContainerDep,
    audit: AuditContextDep,
) -> CheckoutRead:
    """A payment-mode Checkout for a credit package (402 without an active subscription)."""
    catalog = read_credit_catalog(container.settings)
    code = credit_currency(catalog, account, body.currency)
    if not isinstance(body.package_id, str) or catalog.package(body.package_id) is None:
        raise ValidationFailed(f"unknown package {body.package_id!r}", field="packageId")
    success = _url(body.success_url, "successUrl")
    cancel = _url(body.cancel_url, "cancelUrl")
    active = await has_active_subscription(session, account)
    await end_transaction(session)
    started = await purchases.start_purchase(
        container,
        account,
        catalog,
        kind=PurchaseKind.PACKAGE,
        currency=code,
        package_id=body.package_id,
        success_url=success,
        cancel_url=cancel,
        audit=audit,
        subscription_active=active,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    return CheckoutRead(session_url=started.url, checkout_url=started.url)


# --- histories -----------------------------------------------------------------------------


class Pagination(CamelModel):
    page: int
    page_size: int
    total: int
    total_pages: int
    has_next_page: bool
    has_prev_page: bool


class TransactionRead(CamelModel):
    id: str
    type: str
    amount: float
    currency: str
    credits: int | None = None
    status: str
    created_at: str
    description: str | None = None


class HistoryRead(CamelModel):
    transactions: list[TransactionRead]
    pagination: Pagination


class BillingItemRead(CamelModel):
    id: str
    type: str
    amount: float
    currency: str
    status: str
    created_at: str
    description: str | None = None


class BillingHistoryRead(CamelModel):
    items: list[BillingItemRead]
    pagination: Pagination


def _pagination(page: history.Page) -> Pagination:
    pages = (page.total + page.page_size - 1) // page.page_size
    return Pagination(
        page=page.page,
        page_size=page.page_size,
        total=page.total,
        total_pages=pages,
        has_next_page=page.page < pages,
        has_prev_page=page.page > 1,
    )


def _cache(request: Request, container: Container) -> history.PageCache:
    found = getattr(request.app.state, "credits_cache", None)
    if found is None:
        settings = container.settings
        if settings.redis_url:
            from redis.asyncio import Redis

            found = history.RedisPageCache(
                Redis.from_url(settings.redis_url), settings.redis_prefix
            )
        else:
            found = history.LocalPageCache()
        request.app.state.credits_cache = found
    return found


async def _page(
    kind: str,
    request: Request,
    session: Any,
    container: Container,
    account: BillingAccount,
    page: str | None,
    page_size: str | None,
    response: Response,
) -> history.Page:
    number, size = history.check_page(
        int_param(page, "page", default=1), int_param(page_size, "pageSize", default=20)
    )
    version = await service.wallet_version(session, account.id)
    _versioned(response, version)
    cache = _cache(request, container)
    key = history.cache_key(kind, account.id, version, number, size)
    found = await cache.get(key)
    if found is None:
        read = history.credit_history if kind == "credits" else history.billing_history
        found = await read(session, account.id, number, size)
        await cache.put(key, found)
    return found


@router.get("/history", response_model=HistoryRead, responses=error_responses(*AUTHENTICATED))
@rate_limit(RateLimitClass.API)
async def get_history(
    request: Request,
    response: Response,
    session: ReadSessionDep,
    container: ContainerDep,
    account: ReadingAccountDep,
    page: str | None = None,
    pageSize: str | None = None,
) -> HistoryRead:
    """Purchases, top-ups, refunds and subscription invoices, newest first."""
    found = await _page("credits", request, session, container, account, page, pageSize, response)
    return HistoryRead(
        transactions=[
            TransactionRead(
                id=r.id,
                type=r.type,
                amount=_major(r.amount, r.currency),
                currency=r.currency.upper(),
                credits=r.credits,
                status=r.status,
                created_at=r.created_at,
                description=r.description,
            )
            for r in found.rows
        ],
        pagination=_pagination(found),
    )


@router.get(
    "/billing-history", response_model=BillingHistoryRead, responses=error_responses(*AUTHENTICATED)
)
@rate_limit(RateLimitClass.API)
async def get_billing_history(
    request: Request,
    response: Response,
    session: ReadSessionDep,
    container: ContainerDep,
    account: ReadingAccountDep,
    page: str | None = None,
    pageSize: str | None = None,
) -> BillingHistoryRead:
    """Stripe's invoices, charges and refunds of the account, mirrored from webhooks."""
    found = await _page("billing", request, session, container, account, page, pageSize, response)
    return BillingHistoryRead(
        items=[
            BillingItemRead(
                id=r.id,
                type=r.type,
                amount=_major(r.amount, r.currency),
                currency=r.currency.upper(),
                status=r.status,
                created_at=r.created_at,
                description=r.description,
            )
            for r in found.rows
        ],
        pagination=_pagination(found),
    )


# --- usage ---------------------------------------------------------------------------------


class UsageCreate(CamelModel):
    credits: Any = None
    idempotency_key: Any = None
    description: Any = None
    metadata: Any = None


class UsageRead(CamelModel):
    credits: int
    balance: int
    version: int
    replayed: bool


def _description(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 500:
        raise ValidationFailed(
            "description must be text of at most 500 characters", field="description"
        )
    return value


def _metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 20:
        raise ValidationFailed("metadata must be an object of at most 20 keys", field="metadata")
    return value


async def _spend(
    session: Any, container: Container, account: BillingAccount, body: UsageCreate, audit: Any
) -> service.Movement:
    return await service.spend(
        session,
        account_id=account.id,
        credits=service.check_credits(body.credits),
        idempotency_key=body.idempotency_key,
        clock=container.clock,
        audit=audit,
        description=_description(body.description),
        metadata=_metadata(body.metadata),
    )


@router.post(
    "/usage", response_model=UsageRead, responses=error_responses(*AUTHENTICATED, 402, 409)
)
@rate_limit(RateLimitClass.API)
async def record_usage(
    body: UsageCreate,
    response: Response,
    account: BackendAccountDep,
    session: SessionDep,
    container: ContainerDep,
    audit: AuditContextDep,
) -> UsageRead:
    """Spend credits now, once per idempotency key; 402 with the shortfall, nothing spent."""
    moved = await _spend(session, container, account, body, audit)
    _versioned(response, moved.version)
    return UsageRead(
        credits=moved.balance, balance=moved.balance, version=moved.version, replayed=moved.replayed
    )


class UsageBatchCreate(CamelModel):
    events: Any = None


class UsageResult(CamelModel):
    idempotency_key: str | None
    status: str  # ok | payment_required | error
    balance: int | None = None
    version: int | None = None
    replayed: bool = False
    shortfall: int | None = None
    error: dict[str, Any] | None = None


class UsageBatchRead(CamelModel):
    results: list[UsageResult]


@router.post(
    "/usage/batch", response_model=UsageBatchRead, responses=error_responses(*AUTHENTICATED)
)
@rate_limit(RateLimitClass.API)
async def record_usage_batch(
    body: UsageBatchCreate,
    account: BackendAccountDep,
    session: SessionDep,
    container: ContainerDep,
    audit: AuditContextDep,
) -> UsageBatchRead:
    """Up to 100 usage events, in order, each with its own key and outcome (a refused one
    spends nothing and does not stop the others)."""
    events = body.events
    if not isinstance(events, list) or not 1 <= len(events) <= service.MAX_BATCH:
        raise ValidationFailed(
            f"events must be a list of 1 to {service.MAX_BATCH} usage events", field="events"
        )
    results: list[UsageResult] = []
    for index, raw in enumerate(events):
        key = raw.get("idempotencyKey") if isinstance(raw, dict) else None
        try:
            event = UsageCreate.model_validate(raw if isinstance(raw, dict) else {})
            async with session.begin_nested():
                moved = await _spend(session, container, account, event, audit)
            results.append(
                UsageResult(
                    idempotency_key=key,
                    status="ok",
                    balance=moved.balance,
                    version=moved.version,
                    replayed=moved.replayed,
                )
            )
        except BillfoldError as exc:
            results.append(
                UsageResult(
                    idempotency_key=key if isinstance(key, str) else None,
                    status="insufficient_credits"
                    if exc.code == "insufficient_credits"
                    else "error",
                    shortfall=exc.details.get("shortfall"),
                    error={
                        "code": exc.code,
                        "message": exc.message,
                        "field": f"events[{index}].{exc.field}" if exc.field else None,
                    },
                )
            )
    return UsageBatchRead(results=results)


class UsageCheckCreate(CamelModel):
    credits: Any = None


class UsageCheckRead(CamelModel):
    allowed: bool
    credits: int
    available: int
    shortfall: int
    version: int


@router.post(
    "/usage/check", response_model=UsageCheckRead, responses=error_responses(*AUTHENTICATED)
)
@rate_limit(RateLimitClass.API)
async def check_usage(
    body: UsageCheckCreate,
    response: Response,
    session: ReadSessionDep,
    container: ContainerDep,
    account: BackendReadingAccountDep,
) -> UsageCheckRead:
    """Could `credits` be spent now? Spends nothing."""
    found = await service.check_spend(
        session, account.id, service.check_credits(body.credits), container.clock.now()
    )
    _versioned(response, found.version)
    return UsageCheckRead(
        allowed=found.allowed,
        credits=found.credits,
        available=found.available,
        shortfall=found.shortfall,
        version=found.version,
    )


# --- holds ---------------------------------------------------------------------------------


class HoldCreate(CamelModel):
    credits: Any = None
    idempotency_key: Any = None
    expires_in: Any = None
    description: Any = None


class HoldCapture(CamelModel):
    credits: Any = None


class HoldRead(CamelModel):
    id: str
    credits: int
    captured: int
    state: str
    description: str | None
    expires_at: str
    created_at: str


class HoldEnvelope(CamelModel):
    hold: HoldRead
    balance: int
    version: int
    replayed: bool = False


class HoldList(CamelModel):
    holds: list[HoldRead]


def _hold(view: service.HoldView) -> HoldRead:
    return HoldRead(
        id=view.id,
        credits=view.amount,
        captured=view.captured,
        state=view.state,
        description=view.description,
        expires_at=view.expires_at.isoformat().replace("+00:00", "Z"),
        created_at=view.created_at.isoformat().replace("+00:00", "Z"),
    )


def _envelope(found: tuple[service.HoldView, service.Movement], response: Response) -> HoldEnvelope:
    view, moved = found
    _versioned(response, moved.version)
    return HoldEnvelope(
        hold=_hold(view), balance=moved.balance, version=moved.version, replayed=moved.replayed
    )


@router.post(
    "/holds", response_model=HoldEnvelope, responses=error_responses(*AUTHENTICATED, 402, 409)
)
@rate_limit(RateLimitClass.API)
async def create_hold(
    body: HoldCreate,
    response: Response,
    account: BackendAccountDep,
    session: SessionDep,
    container: ContainerDep,
    audit: AuditContextDep,
) -> HoldEnvelope:
    """Reserve credits (402 with the shortfall when there are not enough)."""
    expires_in = int_param(body.expires_in, "expiresIn", default=service.DEFAULT_HOLD_SECONDS)
    return _envelope(
        await service.create_hold(
            session,
            account_id=account.id,
            credits=service.check_credits(body.credits),
            idempotency_key=body.idempotency_key,
            clock=container.clock,
            audit=audit,
            expires_in=expires_in,
            description=_description(body.description),
        ),
        response,
    )


@router.get("/holds", response_model=HoldList, responses=error_responses(*AUTHENTICATED))
@rate_limit(RateLimitClass.API)
async def list_holds(
    session: ReadSessionDep, account: BackendReadingAccountDep, state: str | None = None
) -> HoldList:
    if state is not None and state not in ("active", "captured", "released", "expired"):
        raise ValidationFailed("state must be active, captured, released or expired", field="state")
    return HoldList(
        holds=[_hold(h) for h in await service.list_holds(session, account.id, state=state)]
    )


@router.post(
    "/holds/{hold_id}/capture",
    response_model=HoldEnvelope,
    responses=error_responses(*AUTHENTICATED, 404, 409),
)
@rate_limit(RateLimitClass.API)
async def capture_hold(
    hold_id: str,
    response: Response,
    account: BackendAccountDep,
    session: SessionDep,
    container: ContainerDep,
    audit: AuditContextDep,
    body: HoldCapture | None = None,
) -> HoldEnvelope:
    """Spend all or part of a hold; the rest goes back. 409 when no longer active."""
    credits = body.credits if body is not None else None
    return _envelope(
        await service.capture_hold(
            session,
            account_id=account.id,
            hold_id=hold_id,
            clock=container.clock,
            audit=audit,
            credits=None if credits is None else service.check_credits(credits),
        ),
        response,
    )


@router.post(
    "/holds/{hold_id}/release",
    response_model=HoldEnvelope,
    responses=error_responses(*AUTHENTICATED, 404, 409),
)
@rate_limit(RateLimitClass.API)
async def release_hold(
    hold_id: str,
    response: Response,
    account: BackendAccountDep,
    session: SessionDep,
    container: ContainerDep,
    audit: AuditContextDep,
) -> HoldEnvelope:
    """Give a hold's credits back. 409 when no longer active."""
    return _envelope(
        await service.release_hold(
            session, account_id=account.id, hold_id=hold_id, clock=container.clock, audit=audit
        ),
        response,
    )


# --- auto top-up ---------------------------------------------------------------------------


_AUTO_TOPUP_EXAMPLE: dict[str, Any] = {
    "enabled": True,
    "threshold": 100,
    "credits": 500,
    "currency": "usd",
    "max_per_day": 3,
    "monthly_limit": 20000,
    "status": "active",
    "stopped_reason": None,
    "failures_in_row": 0,
    "last_attempt_at": "2026-01-15T12:00:00Z",
}


class AutoTopupRead(BaseModel):
    """The account's auto top-up: below `threshold` credits, buy `credits` on the default saved
    payment method, at most `max_per_day` times a day and `monthly_limit` (minor units of
    `currency`) a calendar month. `status`: disabled, active, or stopped (after 3 failed charges
    in a row, with `stopped_reason`, until a payment method is saved or it is turned on again)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_AUTO_TOPUP_EXAMPLE]})

    enabled: bool
    threshold: int | None
    credits: int | None
    currency: str | None
    max_per_day: int | None
    monthly_limit: int | None = Field(description="minor units of currency, per calendar month")
    status: str
    stopped_reason: str | None
    failures_in_row: int
    last_attempt_at: str | None


class AutoTopupUpdate(BaseModel):
    """Any of the settings (the others keep their values); turning it on needs them all."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "enabled": True,
                    "threshold": 100,
                    "credits": 500,
                    "currency": "usd",
                    "max_per_day": 3,
                    "monthly_limit": 20000,
                }
            ]
        },
    )

    enabled: Any = None
    threshold: Any = None
    credits: Any = None
    currency: Any = None
    max_per_day: Any = None
    monthly_limit: Any = None


def _auto_topup(found: autotopup.AutoTopupSettings) -> AutoTopupRead:
    return AutoTopupRead(
        enabled=found.enabled,
        threshold=found.threshold,
        credits=found.credits,
        currency=found.currency,
        max_per_day=found.max_per_day,
        monthly_limit=found.monthly_limit,
        status=found.status,
        stopped_reason=found.stopped_reason,
        failures_in_row=found.failures_in_row,
        last_attempt_at=(
            found.last_attempt_at.isoformat().replace("+00:00", "Z")
            if found.last_attempt_at
            else None
        ),
    )


@router.get("/auto-topup", response_model=AutoTopupRead, responses=error_responses(*AUTHENTICATED))
@rate_limit(RateLimitClass.API)
async def get_auto_topup(session: ReadSessionDep, account: ReadingAccountDep) -> AutoTopupRead:
    """The account's auto top-up settings and state."""
    return _auto_topup(await autotopup.read_settings(session, account.id))


@router.put("/auto-topup", response_model=AutoTopupRead, responses=error_responses(*AUTHENTICATED))
@rate_limit(RateLimitClass.API)
async def put_auto_topup(
    body: AutoTopupUpdate,
    account: CreditAccountDep,
    session: SessionDep,
    container: ContainerDep,
    audit: AuditContextDep,
) -> AutoTopupRead:
    """Set the auto top-up (a customer's token, or an API key naming the account). 400 naming
    the field on bad input, nothing written."""
    catalog = read_credit_catalog(container.settings)
    return _auto_topup(
        await autotopup.save_settings(
            session,
            account.id,
            body.model_dump(exclude_unset=True),
            catalog=catalog,
            default_currency=credit_currency(catalog, account, None),
            clock=container.clock,
            audit=audit,
        )
    )


# --- promotional grants --------------------------------------------------------------------


class GrantCreate(BaseModel):
    """A promotional grant to the account `account` names (`user:ID`, `organization:ID`,
    `shop:DOMAIN`); the same `idempotency_key` grants once."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "account": "user:alice",
                    "credits": 250,
                    "reason": "apology for the outage of 3 May",
                    "expires_at": "2026-12-31T23:59:59Z",
                    "idempotency_key": "outage-2026-05-03-alice",
                }
            ]
        },
    )

    account: Any = None
    credits: Any = None
    reason: Any = None
    expires_at: Any = Field(
        default=None,
        description="optional: when the grant's unspent credits expire (ISO 8601 with its "
        "offset, in the future); the CLI's --expires-at",
    )
    idempotency_key: Any = None


class GrantRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "grant_id": 42,
                    "account_id": "acct_01JB3X",
                    "credits": 250,
                    "balance": 400,
                    "version": 7,
                    "replayed": False,
                }
            ]
        }
    )

    grant_id: int
    account_id: str
    credits: int
    balance: int
    version: int
    replayed: bool


class GrantRevoke(BaseModel):
    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"reason": "granted by mistake"}]}
    )

    reason: Any = None


class RevokedRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"grant_id": 42, "revoked": 180, "balance": 220, "version": 8}]
        }
    )

    grant_id: int
    revoked: int = Field(description="the unspent credits taken back now (0: none were left)")
    balance: int
    version: int


def _api_key_only(principal: Principal, what: str) -> None:
    if not principal.is_api_key:
        raise Forbidden(f"{what} take an API key (the host app's backend), not a user's token")


@router.post(
    "/credits/grants",
    response_model=GrantRead,
    responses=error_responses(*AUTHENTICATED, 409),
)
@rate_limit(RateLimitClass.API)
async def create_grant(
    body: GrantCreate,
    response: Response,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
    audit: AuditContextDep,
) -> GrantRead:
    """Grant promotional credits with a reason (an API key only), optionally expiring."""
    _api_key_only(principal, "promotional grants")
    if not isinstance(body.account, str):
        raise ValidationFailed("account must look like user:ID", field="account")
    ref = AccountRef.parse(body.account, field="account")
    credits = service.check_credits(body.credits)
    reason = service.check_reason(body.reason)
    expires_at = service.check_expiry(body.expires_at, container.clock.now())
    account = await get_or_create_account(
        session,
        ref.kind,
        ref.external_id,
        currency=container.settings.stripe_default_currency,
        clock=container.clock,
    )
    granted = await service.grant_promotion(
        session,
        account_id=account.id,
        credits=credits,
        reason=reason,
        idempotency_key=body.idempotency_key,
        expires_at=expires_at,
        clock=container.clock,
        audit=audit,
    )
    _versioned(response, granted.version)
    return GrantRead(
        grant_id=granted.lot_id,
        account_id=account.id,
        credits=granted.credits,
        balance=granted.balance,
        version=granted.version,
        replayed=granted.replayed,
    )


@router.post(
    "/credits/grants/{grant_id}/revoke",
    response_model=RevokedRead,
    responses=error_responses(*AUTHENTICATED, 404, 409),
)
@rate_limit(RateLimitClass.API)
async def revoke_grant(
    grant_id: str,
    body: GrantRevoke,
    response: Response,
    principal: PrincipalDep,
    session: SessionDep,
    container: ContainerDep,
    audit: AuditContextDep,
) -> RevokedRead:
    """Take back the unspent remainder of a promotional grant, with a reason (an API key)."""
    _api_key_only(principal, "promotional grants")
    lot_id = int_param(grant_id, "grant_id")
    revoked = await service.revoke_grant(
        session, lot_id=lot_id, reason=body.reason, clock=container.clock, audit=audit
    )
    _versioned(response, revoked.version)
    return RevokedRead(
        grant_id=lot_id, revoked=revoked.credits, balance=revoked.balance, version=revoked.version
    )
