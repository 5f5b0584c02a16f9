"""How the sandbox's Billing behaves where Stripe lets an account choose (Dashboard settings).

Stored as one private object in the state so it persists with the world; changed through
`POST /v1/test_helpers/billing/settings` (see FRAMEWORK.md) or `set_billing_settings`.
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.state import SandboxState, StripeObject

SETTINGS_ID = "billing_settings"
SETTINGS_TYPE = "sandbox.billing_settings"

DEFAULTS: dict[str, Any] = {
    # Failed subscription payments are retried this many days after the first failure
    # (a simplified Smart Retries: three retries within a week).
    "retry_days": [3, 5, 7],
    # What happens to the subscription when the last retry fails: Stripe's default is to
    # cancel it; "unpaid" and "past_due" (leave it) are the other Dashboard choices.
    "after_final_failure": "canceled",
    # Stripe finalizes (and charges) a renewal invoice about an hour after creating it.
    "renewal_finalize_delay": 3600,
    # An incomplete subscription whose first invoice is not paid expires after 23 hours.
    "incomplete_expiry": 23 * 3600,
    # invoice.upcoming is sent this long before a renewal (0: never).
    "upcoming_notice": 3 * 86_400,
    # customer.subscription.trial_will_end is sent this long before a trial ends.
    "trial_will_end_notice": 3 * 86_400,
}


def billing_settings(state: SandboxState) -> dict[str, Any]:
    """The current settings (defaults merged with what was set)."""
    bucket: dict[str, StripeObject] = dict(state.objects.get(SETTINGS_TYPE) or {})
    stored = bucket.get(SETTINGS_ID)
    merged = dict(DEFAULTS)
    if stored is not None:
        merged.update({k: v for k, v in stored.items() if k in DEFAULTS})
    return merged


def set_billing_settings(state: SandboxState, changes: dict[str, Any]) -> dict[str, Any]:
    """Change some settings; returns the full settings afterwards."""
    with state.lock:
        bucket: dict[str, StripeObject] = dict(state.objects.get(SETTINGS_TYPE) or {})
        stored = bucket.get(SETTINGS_ID)
        if stored is None:
            stored = {"id": SETTINGS_ID, "object": SETTINGS_TYPE}
            state.insert(stored)
        state.update(stored, {k: v for k, v in changes.items() if k in DEFAULTS})
    return billing_settings(state)
