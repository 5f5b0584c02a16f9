"""When a bank debit (ACH Direct Debit) answers, as in Stripe test mode.

On a test clock: Stripe's settlement time, `ACH_BUSINESS_DAYS` business days (weekends skipped,
in UTC) after submission, so advancing the clock past them settles it. On no test clock: a short
wall-clock delay (`ach_settle_seconds`, 3 s by default; the `billfold-sandbox serve
--ach-settle-seconds` option or the `SANDBOX_ACH_SETTLE_SECONDS` environment variable set it for
a server, `POST /v1/test_helpers/sandbox/payments/settings` for a running one), so a script
waiting for `payment_intent.succeeded` sees it as it would in test mode.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from billfold_sandbox.state import SandboxState, StripeObject

ACH_BUSINESS_DAYS = 4
DAY = 86_400
SETTINGS_ID = "payment_settings"
SETTINGS_TYPE = "sandbox.payment_settings"


def default_ach_settle_seconds() -> int:
    return int(os.environ.get("SANDBOX_ACH_SETTLE_SECONDS", "3"))


def payment_settings(state: SandboxState) -> dict[str, Any]:
    """The current payment settings (defaults merged with what was set)."""
    bucket: dict[str, StripeObject] = dict(state.objects.get(SETTINGS_TYPE) or {})
    stored = bucket.get(SETTINGS_ID) or {}
    return {
        "ach_settle_seconds": int(stored.get("ach_settle_seconds", default_ach_settle_seconds()))
    }


def set_payment_settings(state: SandboxState, changes: dict[str, Any]) -> dict[str, Any]:
    with state.lock:
        stored = state.get(SETTINGS_TYPE, SETTINGS_ID)
        if stored is None:
            stored = {"id": SETTINGS_ID, "object": SETTINGS_TYPE}
            state.insert(stored)
        state.update(stored, changes)
    return payment_settings(state)


def business_days_later(ts: int, days: int) -> int:
    """`ts` moved `days` business days forward (Saturday and Sunday skipped)."""
    moment = dt.datetime.fromtimestamp(ts, dt.UTC)
    left = days
    while left > 0:
        moment += dt.timedelta(days=1)
        if moment.weekday() < 5:
            left -= 1
    return int(moment.timestamp())


def ach_settles_at(state: SandboxState, intent: StripeObject) -> int:
    """When a bank debit submitted now answers, on the intent's clock."""
    now = state.now_for(intent)
    if state.clock_of(intent) is not None:
        return business_days_later(now, ACH_BUSINESS_DAYS)
    return now + int(payment_settings(state)["ach_settle_seconds"])
