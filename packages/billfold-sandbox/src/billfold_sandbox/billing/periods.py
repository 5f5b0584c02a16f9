"""Billing periods the way Stripe counts them, and prorations by the second."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

DAY = 86_400


def _add_months(start: datetime, months: int, anchor_day: int) -> datetime:
    total = start.month - 1 + months
    year, month = start.year + total // 12, total % 12 + 1
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def add_intervals(anchor: int, interval: str, interval_count: int, cycles: int) -> int:
    """The timestamp `cycles` billing intervals after `anchor`.

    Months and years keep the anchor's day of month and time of day; a day that a month lacks
    becomes that month's last day (an anchor on the 31st bills on Feb 28th, then Mar 31st).
    """
    start = datetime.fromtimestamp(anchor, UTC)
    n = interval_count * cycles
    if interval == "day":
        end = start + timedelta(days=n)
    elif interval == "week":
        end = start + timedelta(weeks=n)
    elif interval == "month":
        end = _add_months(start, n, start.day)
    elif interval == "year":
        end = _add_months(start, 12 * n, start.day)
    else:
        raise ValueError(f"unknown interval {interval!r}")
    return int(end.timestamp())


def period_containing(anchor: int, interval: str, interval_count: int, at: int) -> tuple[int, int]:
    """The billing period [start, end) counted from `anchor` that contains `at` (at >= anchor)."""
    cycles = 0
    while add_intervals(anchor, interval, interval_count, cycles + 1) <= at:
        cycles += 1
    return (
        add_intervals(anchor, interval, interval_count, cycles),
        add_intervals(anchor, interval, interval_count, cycles + 1),
    )


def prorate(amount: int, period_start: int, period_end: int, at: int) -> int:
    """The share of `amount` for the time left in the period from `at`, in whole minor units.

    Stripe prorates to the second and rounds each proration line to the nearest unit.
    """
    length = period_end - period_start
    if length <= 0:
        return 0
    left = min(max(period_end - at, 0), length)
    sign = -1 if amount < 0 else 1
    return sign * ((abs(amount) * left * 2 + length) // (2 * length))
