"""3-D Secure: when a card asks for it, and the `next_action` an intent waits on meanwhile.

Stripe completes the challenge in the customer's browser (Stripe.js or its hosted page); the
sandbox offers the same through a page of its own (`/pages/authenticate/{intent}`) and the test
helpers `POST /v1/test_helpers/payment_intents/{id}/authenticate` and
`POST /v1/test_helpers/setup_intents/{id}/authenticate` with `outcome=succeed|fail`.
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.pages import page_url
from billfold_sandbox.payments.instruments import Authentication
from billfold_sandbox.payments.methods import card_of
from billfold_sandbox.state import SandboxState, StripeObject

THREE_D_SECURE_ACTIONS = ("use_stripe_sdk", "redirect_to_url")


def payment_needs_authentication(pm: StripeObject, *, off_session: bool) -> bool:
    """Whether charging this card asks for 3-D Secure.

    `4000002500003155` asks for one-time payments but not off-session once set up;
    `4000002760003184` and the 3DS-required cards ask every time.
    """
    card = card_of(pm)
    if card is None:
        return False
    if card.authentication is Authentication.ALWAYS:
        return True
    if card.authentication is Authentication.UNLESS_SET_UP:
        return not (off_session and pm.get("_set_up"))
    return False


def setup_needs_authentication(pm: StripeObject) -> bool:
    """Setting up any card that can ask for 3-D Secure asks for it."""
    card = card_of(pm)
    return card is not None and card.authentication is not Authentication.NONE


def three_d_secure_action(
    state: SandboxState, intent: StripeObject, return_url: str | None
) -> dict[str, Any]:
    """`next_action` for a challenge: a redirect when `return_url` was given, else Stripe.js."""
    url = page_url(state, f"/pages/authenticate/{intent['id']}")
    if return_url:
        return {
            "type": "redirect_to_url",
            "redirect_to_url": {"return_url": return_url, "url": url},
        }
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {
            "type": "three_d_secure_redirect",
            "stripe_js": url,
            "source": state.new_id("src"),
        },
    }


def awaiting_challenge(intent: StripeObject) -> bool:
    """Whether the intent waits for a 3-D Secure challenge."""
    action = intent.get("next_action") or {}
    return intent.get("status") == "requires_action" and action.get("type") in (
        THREE_D_SECURE_ACTIONS
    )
