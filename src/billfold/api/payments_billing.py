"""`/api/billing/*` routes of document 003 for payment methods, the postpaid balance (dues),
autopay, one-off charges, the ledger and the payments. Thin: each parses its body, calls one
service of `billfold.payments` and returns its shape (snake_case, amounts in minor units with a
currency, ids as Stripe's). `checkout_session` and `subscriptions` live in `billing.py`;
`GET /api/billing/balance` (document 001's) is the credits work's, which adds the dues from
`billfold.payments.dues.dues_of` / `billfold.payments.schemas.DuesRead`.

A route that calls Stripe ends the request's transaction first (`end_transaction`): the
service opens its own short units of work (reserve, call, record).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from billfold.api.account_deps import ActingAccountDep
from billfold.api.audit_deps import AuditContextDep
from billfold.api.auth_deps import PrincipalDep
from billfold.api.deps import ContainerDep, ReadSessionDep, SessionDep, end_transaction
from billfold.api.errors import AUTHENTICATED, error_responses
from billfold.api.ratelimit import RateLimitClass, rate_limit
from billfold.api.session_deps import SessionCheckedAccountDep, SessionCheckedReadingAccountDep
from billfold.auth.principal import Principal
from billfold.db.base import new_id
from billfold.errors import Forbidden, NotFound, ValidationFailed
from billfold.payments import charging, dues, methods
from billfold.payments.schemas import DuesRead, PaymentMethodRead, PaymentRead, SettingsRead
from billfold.stripe.gateway import BankAccount

router = APIRouter(prefix="/api/billing", tags=["billing: payments (document 003)"])

PM_EXAMPLE = "pm_1Q2w3E4r5T6y7U8i"


# --- shapes ------------------------------------------------------------------------------------


class ConfigRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"publishable_key": "pk_test_123", "default_currency": "usd"}]
        }
    )

    publishable_key: str | None = Field(description="Stripe's publishable key (never a secret)")
    default_currency: str


class AutopayUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": True}]})

    enabled: bool


class PaymentMethodList(BaseModel):
    payment_methods: list[PaymentMethodRead]
    default_payment_method_id: str | None


class PriorityUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"payment_method_ids": [PM_EXAMPLE, "pm_9O8i7U6y5T4r3E2w"]}]
        },
    )

    payment_method_ids: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        max_length=100, description="every payment method of the account, in the order to try"
    )


class DefaultUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"payment_method_id": PM_EXAMPLE}]}
    )

    payment_method_id: str = Field(min_length=1, max_length=255)


class CardSetupCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{}, {"payment_method_id": "pm_card_visa"}]}
    )

    payment_method_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="a PaymentMethod Stripe.js created (confirms the setup at once); omit it to "
        "get a client secret for Stripe.js",
    )


class BankSetupCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "account_holder_name": "Ada Lovelace",
                    "routing_number": "110000000",
                    "account_number": "000123456789",
                }
            ]
        },
    )

    payment_method_id: str | None = Field(default=None, min_length=1, max_length=255)
    account_holder_name: str | None = Field(default=None, min_length=1, max_length=255)
    routing_number: str | None = Field(default=None, pattern=r"^\d{9}$")
    account_number: str | None = Field(default=None, pattern=r"^\d{4,17}$")


class SetupIntentRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "setup_intent_id": "seti_1Q2w3E4r",
                    "client_secret": "seti_1Q2w3E4r_secret_x",
                    "status": "requires_action",
                    "payment_method_id": "pm_1Q2w3E4r",
                    "next_action": "verify_with_microdeposits",
                }
            ]
        }
    )

    setup_intent_id: str
    client_secret: str | None
    status: str
    payment_method_id: str | None
    next_action: str | None


class MicrodepositsVerify(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"payment_method_id": PM_EXAMPLE, "amounts": [32, 45]},
                {"payment_method_id": PM_EXAMPLE, "descriptor_code": "SM11AA"},
            ]
        },
    )

    payment_method_id: str = Field(min_length=1, max_length=255)
    amounts: list[Annotated[int, Field(ge=1, le=99)]] | None = Field(
        default=None, min_length=2, max_length=2
    )
    descriptor_code: str | None = Field(default=None, min_length=6, max_length=6)


class PayBalance(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{}, {"currency": "usd"}]}
    )

    currency: str | None = Field(default=None, min_length=3, max_length=3)


class ChargeOnce(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "amount": 1500,
                    "currency": "usd",
                    "description": "Setup fee",
                    "payment_method_id": PM_EXAMPLE,
                }
            ]
        },
    )

    amount: int | float = Field(description="minor units (1500 = 15.00 USD), a whole number")
    currency: str = Field(min_length=1, max_length=8)
    description: str | None = Field(default=None, max_length=500)
    payment_method_id: str | None = Field(default=None, min_length=1, max_length=255)
    return_url: str | None = Field(default=None, max_length=2048)


class ChargeCreate(BaseModel):
    """A charge added to the account's dues (usage billed in money by the host app)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"amount": 420, "currency": "usd", "description": "API usage, May"}]
        },
    )

    amount: int | float = Field(description="minor units, a whole number")
    currency: str = Field(min_length=1, max_length=8)
    description: str | None = Field(default=None, max_length=500)


class ChargeRead(BaseModel):
    id: str
    amount: int
    currency: str
    description: str | None
    dues: list[DuesRead]


class LedgerLineRead(BaseModel):
    entry_id: int
    account: str = Field(
        description="dues (owed now), dues_pending (payment in flight) or refunded"
    )
    kind: str
    description: str | None
    amount: int = Field(description="what the entry added to the account (minor units)")
    currency: str
    balance_after: int = Field(description="the account's running balance after the entry")
    payment_id: str | None
    created_at: datetime


class LedgerPage(BaseModel):
    entries: list[LedgerLineRead]
    next_cursor: int | None = Field(description="pass as `cursor` for older entries")
    dues: list[DuesRead]


class PaymentList(BaseModel):
    payments: list[PaymentRead]
    next_cursor: str | None


# --- routes ------------------------------------------------------------------------------------


@router.get("/config", response_model=ConfigRead, responses=error_responses(*AUTHENTICATED, 404))
async def billing_config(
    container: ContainerDep, session: ReadSessionDep, account: SessionCheckedReadingAccountDep
) -> ConfigRead:
    """Stripe's publishable key and the default currency (the account's), for the frontend."""
    settings = container.settings
    return ConfigRead(
        publishable_key=settings.stripe_publishable_key,
        default_currency=account.currency or settings.stripe_default_currency,
    )


async def _settings_read(session: ReadSessionDep | SessionDep, account_id: str) -> SettingsRead:
    return SettingsRead.of(
        await methods.read_settings(session, account_id),
        await methods.list_methods(session, account_id),
    )


@router.get(
    "/settings", response_model=SettingsRead, responses=error_responses(*AUTHENTICATED, 404)
)
async def billing_settings(
    session: ReadSessionDep, account: SessionCheckedReadingAccountDep
) -> SettingsRead:
    """Autopay, the default payment method and the priority order."""
    return await _settings_read(session, account.id)


@router.post(
    "/autopay", response_model=SettingsRead, responses=error_responses(*AUTHENTICATED, 404)
)
async def set_autopay(
    body: AutopayUpdate,
    session: SessionDep,
    container: ContainerDep,
    account: SessionCheckedAccountDep,
    audit: AuditContextDep,
) -> SettingsRead:
    """Turn autopay on or off (turning it on clears an earlier stop and its back-off)."""
    await methods.set_autopay(
        session, account.id, body.enabled, audit=audit, now=container.clock.now()
    )
    return await _settings_read(session, account.id)


@router.post(
    "/setup-intent/card",
    response_model=SetupIntentRead,
    responses=error_responses(*AUTHENTICATED, 404, 502),
)
@rate_limit(RateLimitClass.CHECKOUT)
async def setup_card(
    body: CardSetupCreate,
    request: Request,
    session: SessionDep,
    container: ContainerDep,
    account: SessionCheckedAccountDep,
    audit: AuditContextDep,
) -> SetupIntentRead:
    """A SetupIntent to save a card for off-session charges."""
    await end_transaction(session)
    started = await methods.start_setup(
        container,
        account,
        method="card",
        audit=audit,
        payment_method_id=body.payment_method_id,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    return _setup(started)


def _setup(started: methods.StartedSetup) -> SetupIntentRead:
    return SetupIntentRead(
        setup_intent_id=started.setup_intent_id,
        client_secret=started.client_secret,
        status=started.status,
        payment_method_id=started.payment_method_id,
        next_action=started.next_action,
    )


@router.post(
    "/setup-intent/us-bank",
    response_model=SetupIntentRead,
    responses=error_responses(*AUTHENTICATED, 404, 502),
)
@rate_limit(RateLimitClass.CHECKOUT)
async def setup_us_bank(
    body: BankSetupCreate,
    request: Request,
    session: SessionDep,
    container: ContainerDep,
    account: SessionCheckedAccountDep,
    audit: AuditContextDep,
) -> SetupIntentRead:
    """A SetupIntent for a US bank account (ACH), verified by microdeposits: with the account's
    numbers it waits for them (`next_action` = `verify_with_microdeposits`)."""
    typed = (body.account_holder_name, body.routing_number, body.account_number)
    bank: BankAccount | None = None
    if any(v is not None for v in typed):
        if body.payment_method_id is not None or any(v is None for v in typed):
            raise ValidationFailed(
                "send account_holder_name, routing_number and account_number together "
                "(or a payment_method_id)",
                field="account_number",
            )
        bank = BankAccount(
            holder_name=typed[0] or "", routing_number=typed[1] or "", account_number=typed[2] or ""
        )
    await end_transaction(session)
    started = await methods.start_setup(
        container,
        account,
        method="us_bank_account",
        audit=audit,
        payment_method_id=body.payment_method_id,
        bank_account=bank,
        idempotency_key=request.headers.get("idempotency-key"),
    )
    return _setup(started)


@router.post(
    "/us-bank/verify-microdeposits",
    response_model=PaymentMethodRead,
    responses=error_responses(*AUTHENTICATED, 404, 409, 502),
)
@rate_limit(RateLimitClass.CHECKOUT)
async def verify_microdeposits(
    body: MicrodepositsVerify,
    session: SessionDep,
    container: ContainerDep,
    account: SessionCheckedAccountDep,
    audit: AuditContextDep,
) -> PaymentMethodRead:
    """The two microdeposit amounts (cents) or the descriptor code from the statement. Wrong
    ones: 400 naming the attempts left; too many: the method is `verification_failed`."""
    await end_transaction(session)
    method = await methods.verify_microdeposits(
        container,
        account,
        payment_method_id=body.payment_method_id,
        amounts=body.amounts,
        descriptor_code=body.descriptor_code,
        audit=audit,
    )
    async with container.db.read() as read:
        found = await methods.read_settings(read, account.id)
    return PaymentMethodRead.of(method, found.default_payment_method_id if found else None)


async def _method_list(session: ReadSessionDep | SessionDep, account_id: str) -> PaymentMethodList:
    found = await methods.read_settings(session, account_id)
    default = found.default_payment_method_id if found else None
    return PaymentMethodList(
        payment_methods=[
            PaymentMethodRead.of(m, default)
            for m in await methods.list_methods(session, account_id)
        ],
        default_payment_method_id=default,
    )


@router.get(
    "/payment-methods",
    response_model=PaymentMethodList,
    responses=error_responses(*AUTHENTICATED, 404),
)
async def list_payment_methods(
    session: ReadSessionDep, account: SessionCheckedReadingAccountDep
) -> PaymentMethodList:
    """The account's payment methods in priority order."""
    return await _method_list(session, account.id)


@router.post(
    "/payment-methods/priority",
    response_model=PaymentMethodList,
    responses=error_responses(*AUTHENTICATED, 404, 502),
)
async def set_priority(
    body: PriorityUpdate,
    session: SessionDep,
    container: ContainerDep,
    account: SessionCheckedAccountDep,
    audit: AuditContextDep,
) -> PaymentMethodList:
    """A full order of the account's methods (400 unless a permutation of them); its first
    usable method becomes the default, at Stripe too."""
    await end_transaction(session)
    async with container.db.transaction() as own:
        await methods.set_priority(
            own, account.id, body.payment_method_ids, audit=audit, now=container.clock.now()
        )
    await methods.sync_default_to_stripe(container, account.id, audit=audit)
    async with container.db.read() as read:
        return await _method_list(read, account.id)


@router.post(
    "/payment-methods/default",
    response_model=PaymentMethodList,
    responses=error_responses(*AUTHENTICATED, 404, 409, 502),
)
async def set_default(
    body: DefaultUpdate,
    session: SessionDep,
    container: ContainerDep,
    account: SessionCheckedAccountDep,
    audit: AuditContextDep,
) -> PaymentMethodList:
    """Make a usable method the default: it moves to the front of the priority order, and is
    the Stripe customer's default (`invoice_settings.default_payment_method`) for Stripe's
    own invoices."""
    # The account (created on first use) is committed even when the method is refused.
    await end_transaction(session)
    await methods.make_default(container, account, body.payment_method_id, audit=audit)
    async with container.db.read() as read:
        return await _method_list(read, account.id)


@router.delete(
    "/payment-methods/{payment_method_id}",
    response_model=PaymentMethodList,
    responses=error_responses(*AUTHENTICATED, 404, 409, 502),
)
async def remove_payment_method(
    payment_method_id: Annotated[str, Field(min_length=1, max_length=255)],
    session: SessionDep,
    container: ContainerDep,
    account: SessionCheckedAccountDep,
    audit: AuditContextDep,
) -> PaymentMethodList:
    """Detach a method; the next by priority is promoted. 409 for the last usable method while
    autopay is on and money is owed."""
    await end_transaction(session)
    await methods.remove_method(container, account, payment_method_id, audit=audit)
    async with container.db.read() as read:
        return await _method_list(read, account.id)


@router.post(
    "/pay-balance",
    response_model=PaymentRead,
    responses=error_responses(*AUTHENTICATED, 402, 404, 409, 502),
)
@rate_limit(RateLimitClass.CHECKOUT)
async def pay_balance(
    session: SessionDep,
    container: ContainerDep,
    account: SessionCheckedAccountDep,
    audit: AuditContextDep,
    body: PayBalance | None = None,
) -> PaymentRead:
    """Charge the settled dues off session, by priority with fallback: every attempt is in the
    answer. 409 when nothing is owed (or a payment of it is in flight), 402 without a usable
    method; a payment every method declined answers 200 with `status: failed`."""
    await end_transaction(session)
    outcome = await charging.pay_balance(
        container, account, currency=body.currency if body else None, audit=audit
    )
    return PaymentRead.of(outcome.payment, outcome.attempts, outcome.client_secret)


@router.post(
    "/charge-once",
    response_model=PaymentRead,
    responses=error_responses(*AUTHENTICATED, 402, 404, 409, 502),
)
@rate_limit(RateLimitClass.CHECKOUT)
async def charge_once(
    body: ChargeOnce,
    request: Request,
    session: SessionDep,
    container: ContainerDep,
    account: SessionCheckedAccountDep,
    audit: AuditContextDep,
) -> PaymentRead:
    """Charge an amount once (on `payment_method_id`, or by priority with fallback). When the
    card asks for 3-D Secure: `status: requires_action` and the `client_secret` for Stripe.js."""
    await end_transaction(session)
    outcome = await charging.charge_once(
        container,
        account,
        amount=body.amount,
        currency=body.currency,
        description=body.description,
        payment_method_id=body.payment_method_id,
        audit=audit,
        idempotency_key=request.headers.get("idempotency-key"),
        return_url=body.return_url,
    )
    return PaymentRead.of(outcome.payment, outcome.attempts, outcome.client_secret)


@router.get("/ledger", response_model=LedgerPage, responses=error_responses(*AUTHENTICATED, 404))
async def ledger(
    session: ReadSessionDep,
    account: SessionCheckedReadingAccountDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        int | None,
        Query(ge=1, le=2**63 - 1, description="next_cursor of the previous page"),
    ] = None,
) -> LedgerPage:
    """The account's money movements, newest first, with running balances."""
    lines = await dues.ledger_page(session, account.id, limit=limit + 1, before=cursor)
    page = lines[:limit]
    return LedgerPage(
        entries=[LedgerLineRead.model_validate(_line(line)) for line in page],
        next_cursor=page[-1].entry_id if len(lines) > limit else None,
        dues=[DuesRead.of(d) for d in await dues.dues_of(session, account.id)],
    )


def _line(line: dues.LedgerLine) -> dict[str, object]:
    return {name: getattr(line, name) for name in LedgerLineRead.model_fields}


@router.get("/payments", response_model=PaymentList, responses=error_responses(*AUTHENTICATED, 404))
async def list_payments(
    session: ReadSessionDep,
    account: SessionCheckedReadingAccountDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> PaymentList:
    """The account's payments newest first, each with its attempts, refunds and dispute."""
    payments, attempts = await charging.list_payments(
        session, account.id, limit=limit + 1, before=cursor
    )
    page = payments[:limit]
    return PaymentList(
        payments=[PaymentRead.of(p, attempts[p.id]) for p in page],
        next_cursor=page[-1].id if len(payments) > limit else None,
    )


async def _add_charge(
    session: SessionDep,
    container: ContainerDep,
    account_id: str,
    body: ChargeCreate,
    charge_id: str,
    audit: AuditContextDep,
) -> ChargeRead:
    amount, currency = dues.check_amount(body.amount, body.currency)
    await dues.add_charge(
        session,
        account_id,
        amount=amount,
        currency=currency,
        charge_id=charge_id,
        description=body.description,
        clock=container.clock,
    )
    await audit.record(
        session,
        "dues.charged",
        account_id=account_id,
        target=charge_id,
        details={"amount": amount, "currency": currency},
    )
    return ChargeRead(
        id=charge_id,
        amount=amount,
        currency=currency,
        description=body.description,
        dues=[DuesRead.of(d) for d in await dues.dues_of(session, account_id)],
    )


def _charge_id(account_id: str, key: str | None) -> str:
    if key:
        return "due_" + hashlib.sha256(f"{account_id}:{key}".encode()).hexdigest()[:32]
    return new_id("due")


def _api_key(principal: PrincipalDep) -> Principal:
    if not principal.is_api_key:
        raise Forbidden("charges are added by the host app's backend with an API key")
    return principal


@router.post("/charges", response_model=ChargeRead, responses=error_responses(*AUTHENTICATED, 404))
async def add_charge(
    body: ChargeCreate,
    request: Request,
    session: SessionDep,
    container: ContainerDep,
    account: ActingAccountDep,
    audit: AuditContextDep,
    principal: Annotated[Principal, Depends(_api_key)],
) -> ChargeRead:
    """API key only (the host app's backend): add usage billed in money to the account's dues
    (`X-Billfold-Account` names it). An `Idempotency-Key` header makes a retry one charge."""
    charge_id = _charge_id(account.id, request.headers.get("idempotency-key"))
    return await _add_charge(session, container, account.id, body, charge_id, audit)


async def _development_only(container: ContainerDep) -> None:
    if container.settings.environment != "development":
        raise NotFound("not found")


# The mode is checked before the caller is: outside development the route does not exist.
@router.post(
    "/_dev/add-charge",
    response_model=ChargeRead,
    responses=error_responses(*AUTHENTICATED, 404),
    dependencies=[Depends(_development_only)],
)
async def dev_add_charge(
    body: ChargeCreate,
    request: Request,
    session: SessionDep,
    container: ContainerDep,
    account: SessionCheckedAccountDep,
    audit: AuditContextDep,
) -> ChargeRead:
    """Development mode only (404 otherwise): a synthetic charge on the caller's dues."""
    charge_id = _charge_id(account.id, request.headers.get("idempotency-key"))
    return await _add_charge(session, container, account.id, body, charge_id, audit)
