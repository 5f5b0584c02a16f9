"""The customer's credits as the overview and the Activity page show them: the balance and a
chart of the last 30 days (server-rendered SVG bars, with a table of the same numbers), and a
page of each of document 001's histories. Used by `customer.py` (the overview, the activity)
and `credits.py` (the Credits page and its routes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from babel.dates import format_date
from babel.numbers import format_decimal
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.api.deps import get_container
from billfold.credits import history, service
from billfold.credits.summary import DayMovements, daily_movements
from billfold.customers.models import BillingAccount
from billfold.web.rendering import locale_of

CHART_DAYS = 30

TYPE_LABELS = {
    "topup": "Top-up",
    "credit_purchase": "Credit package",
    "refund": "Refund",
    "subscription": "Subscription invoice",
    "invoice": "Invoice",
    "charge": "Charge",
}


def count_format(request: Request) -> Callable[[int], str]:
    """Whole numbers (credits) in the customer's locale: `1,000`, `1.000`."""
    locale = locale_of(request)
    return lambda n: format_decimal(n, locale=locale)


# --- the overview's credits: balance and the chart of the last 30 days ----------------------


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    height: float
    series: str


@dataclass(frozen=True, slots=True)
class ChartDay:
    movements: DayMovements
    label: str
    bars: tuple[Bar, ...]
    x: float


# The chart's drawing area (SVG user units): a slot per day, three bars in each.
CHART_WIDTH = 630
CHART_TOP = 8
CHART_BASE = 150
SLOT = CHART_WIDTH / CHART_DAYS
BAR = 5.5
SERIES = ("granted", "spent", "expired")


def chart_days(days: list[DayMovements], locale: str) -> list[ChartDay]:
    """Each day's bars, scaled so the day with the largest movement reaches the top."""
    peak = max((max(d.granted, d.spent, d.expired) for d in days), default=0) or 1
    span = CHART_BASE - CHART_TOP
    out = []
    for index, day in enumerate(days):
        left = index * SLOT + (SLOT - 3 * BAR) / 2
        bars = []
        for n, series in enumerate(SERIES):
            value = getattr(day, series)
            if value:
                height = max(1.0, round(value / peak * span, 1))
                bars.append(Bar(round(left + n * BAR, 1), CHART_BASE - height, height, series))
        label = format_date(day.day, format="d MMM", locale=locale)
        out.append(ChartDay(day, label, tuple(bars), round(index * SLOT + SLOT / 2, 1)))
    return out


async def credit_overview(
    request: Request, session: AsyncSession, account: BillingAccount
) -> dict[str, object]:
    """What the overview shows of the account's credits: the balance (one statement) and the
    chart of the last 30 days (one grouped query)."""
    container = get_container(request)
    balance = await service.get_balance(session, account.id)
    days = await daily_movements(session, account.id, days=CHART_DAYS, now=container.clock.now())
    totals = {s: sum(getattr(d, s) for d in days) for s in (*SERIES, "clawed_back")}
    return {
        "credit_balance": balance,
        "chart": chart_days(days, locale_of(request)),
        "chart_totals": totals,
        "chart_quiet": not any(totals.values()),
        "chart_width": CHART_WIDTH,
        "chart_base": CHART_BASE,
        "count": count_format(request),
    }


# --- the histories ---------------------------------------------------------------------------


def _pages(found: history.Page) -> int:
    return (found.total + found.page_size - 1) // found.page_size


async def histories_context(
    request: Request,
    session: AsyncSession,
    account: BillingAccount,
    *,
    credit_page: int,
    billing_page: int,
    page_size: int,
) -> dict[str, object]:
    """A page of each of document 001's histories (the same reads as `/api/billing/history`
    and `/api/billing/billing-history`)."""
    credit = await history.credit_history(session, account.id, credit_page, page_size)
    billing = await history.billing_history(session, account.id, billing_page, page_size)
    return {
        "credit_history": credit,
        "credit_pages": _pages(credit),
        "billing_history": billing,
        "billing_pages": _pages(billing),
        "type_labels": TYPE_LABELS,
        "when": datetime.fromisoformat,
        "count": count_format(request),
    }
