"""Helpers shared by the payment tests: event sequences and the sandbox's test helper routes."""

from __future__ import annotations

from typing import Any

import stripe

BANK_ACCOUNT = {
    "type": "us_bank_account",
    "us_bank_account": {
        "routing_number": "110000000",
        "account_number": "000123456789",
        "account_holder_type": "individual",
    },
    "billing_details": {"name": "Jenny Rosen", "email": "jenny@example.com"},
}


PAYMENT_EVENT_PREFIXES = (
    "payment_intent.",
    "charge.",
    "setup_intent.",
    "payment_method.",
    "refund.",
)


def payment_events(client: stripe.StripeClient, *, since: str | None = None) -> list[str]:
    """Types of the payment-related events, oldest first (after event `since`, if given)."""
    events = list(client.v1.events.list(params={"limit": 100}).auto_paging_iter())
    events.reverse()
    if since is not None:
        ids = [e.id for e in events]
        events = events[ids.index(since) + 1 :]
    return [e.type for e in events if e.type.startswith(PAYMENT_EVENT_PREFIXES)]


def last_event_id(client: stripe.StripeClient) -> str:
    return str(client.v1.events.list(params={"limit": 1}).data[0].id)


def events_about(client: stripe.StripeClient, object_id: str) -> list[Any]:
    """Events whose `data.object` is the given object, oldest first."""
    events = list(client.v1.events.list(params={"limit": 100}).auto_paging_iter())
    return [e for e in reversed(events) if e.data.object["id"] == object_id]


def authenticate(
    client: stripe.StripeClient, intent_id: str, outcome: str = "succeed"
) -> dict[str, Any]:
    """Complete 3-D Secure through the sandbox's test helper (PaymentIntent or SetupIntent)."""
    kind = "setup_intents" if intent_id.startswith("seti_") else "payment_intents"
    response = client.raw_request(
        "post", f"/v1/test_helpers/{kind}/{intent_id}/authenticate", outcome=outcome
    )
    result: dict[str, Any] = client.deserialize(response, api_mode="V1").to_dict()
    return result


def settle(client: stripe.StripeClient, intent_id: str) -> dict[str, Any]:
    response = client.raw_request("post", f"/v1/test_helpers/payment_intents/{intent_id}/settle")
    result: dict[str, Any] = client.deserialize(response, api_mode="V1").to_dict()
    return result


def advance_sandbox_clock(client: stripe.StripeClient, seconds: int) -> None:
    client.raw_request("post", "/v1/test_helpers/sandbox/clock/advance", seconds=seconds)


def bank_setup(client: stripe.StripeClient, customer: str, account: str = "000123456789") -> str:
    """A SetupIntent for a US bank account, confirmed: it waits on microdeposits."""
    data = {**BANK_ACCOUNT, "us_bank_account": {**BANK_ACCOUNT["us_bank_account"]}}
    data["us_bank_account"]["account_number"] = account  # type: ignore[index]
    si = client.v1.setup_intents.create(
        params={
            "customer": customer,
            "payment_method_types": ["us_bank_account"],
            "payment_method_data": data,  # type: ignore[typeddict-item]
            "confirm": True,
        }
    )
    assert si.status == "requires_action"
    return str(si.id)
