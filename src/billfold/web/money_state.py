"""The overview's money state: what is owed (settled and pending, per currency), autopay on or
off, and what needs the customer's attention there: the latest payment failed, a bank account
waits for its microdeposits, autopay or auto top-up stopped (with the reason).

Two reads whatever the account holds: `payments.dues.dues_of` (the dues' ledger accounts), and
one query over the account's row that joins its payment and auto top-up settings and its latest
payment, and counts its unverified bank accounts. It spans two sibling domains (payments and
credits), so it lives in the panel, above both."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from billfold.credits.models import AutoTopupStatus, CreditAutoTopup
from billfold.customers.models import BillingAccount
from billfold.payments.dues import CurrencyDues, dues_of
from billfold.payments.models import (
    FAILED,
    PENDING_VERIFICATION,
    Payment,
    PaymentMethod,
    PaymentSettings,
)


@dataclass(frozen=True, slots=True)
class FailedPayment:
    amount: int
    currency: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class MoneyState:
    dues: list[CurrencyDues]
    autopay: bool
    autopay_stopped_reason: str | None
    unverified_bank_accounts: int
    failed_payment: FailedPayment | None  # the latest payment, when it failed
    auto_topup_stopped_reason: str | None  # set when the auto top-up is stopped


async def money_state(session: AsyncSession, account_id: str) -> MoneyState:
    """The account's money state, in two queries."""
    recent = aliased(Payment)
    latest = (
        select(recent.id)
        .where(recent.account_id == BillingAccount.id)
        .order_by(recent.created_at.desc(), recent.id.desc())
        .limit(1)
        .correlate(BillingAccount)
        .scalar_subquery()
    )
    unverified = (
        select(func.count())
        .select_from(PaymentMethod)
        .where(
            PaymentMethod.account_id == BillingAccount.id,
            PaymentMethod.status == PENDING_VERIFICATION,
        )
        .correlate(BillingAccount)
        .scalar_subquery()
    )
    row = (
        await session.execute(
            select(
                PaymentSettings.autopay,
                PaymentSettings.autopay_stopped_reason,
                CreditAutoTopup.status,
                CreditAutoTopup.stopped_reason,
                unverified.label("unverified"),
                Payment.status,
                Payment.amount,
                Payment.currency,
                Payment.failure_message,
            )
            .select_from(BillingAccount)
            .outerjoin(PaymentSettings, PaymentSettings.account_id == BillingAccount.id)
            .outerjoin(CreditAutoTopup, CreditAutoTopup.account_id == BillingAccount.id)
            .outerjoin(Payment, Payment.id == latest)
            .where(BillingAccount.id == account_id)
        )
    ).one_or_none()
    dues = await dues_of(session, account_id)
    if row is None:
        return MoneyState(dues, False, None, 0, None, None)
    (autopay, autopay_stopped, topup_status, topup_stopped, banks, status, amount, currency,
     failure) = row  # fmt: skip
    return MoneyState(
        dues=dues,
        autopay=bool(autopay),
        autopay_stopped_reason=autopay_stopped,
        unverified_bank_accounts=int(banks or 0),
        failed_payment=FailedPayment(int(amount), currency, failure) if status == FAILED else None,
        auto_topup_stopped_reason=(
            topup_stopped or "it stopped" if topup_status == AutoTopupStatus.STOPPED else None
        ),
    )
