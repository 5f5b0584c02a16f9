"""Payment methods over HTTP against the sandbox, on SQLite and PostgreSQL: a card and a bank
account saved through setup intents (the bank account verified by microdeposits and refused
with wrong amounts), mirrored from Stripe's events; priority, default and removal."""

from __future__ import annotations

from tests.payments.conftest import Billing

METHOD_KEYS = {
    "id",
    "type",
    "status",
    "brand",
    "last4",
    "exp_month",
    "exp_year",
    "bank_name",
    "priority",
    "is_default",
    "blocked_reason",
    "created_at",
}


async def test_a_card_saved_through_a_setup_intent(alice: Billing) -> None:
    pm = await alice.card()
    assert pm.startswith("pm_")
    await alice.events()  # setup_intent.succeeded, payment_method.attached: the same state
    [method] = await alice.methods()
    assert set(method) == METHOD_KEYS
    assert (method["id"], method["type"], method["brand"], method["last4"]) == (
        pm,
        "card",
        "visa",
        "4242",
    )
    assert method["status"] == "active" and method["is_default"] and method["priority"] == 1
    assert method["exp_month"] and method["exp_year"]
    settings = await alice.call("GET", "/settings")
    assert settings["default_payment_method_id"] == pm and settings["priority"] == [pm]


async def test_a_client_secret_without_a_method(alice: Billing) -> None:
    body = await alice.call("POST", "/setup-intent/card", json={})
    assert body["setup_intent_id"].startswith("seti_") and body["client_secret"]
    assert body["status"] == "requires_payment_method" and body["payment_method_id"] is None
    assert await alice.methods() == []


async def test_a_bank_account_verified_by_microdeposits(alice: Billing) -> None:
    body = await alice.call(
        "POST",
        "/setup-intent/us-bank",
        json={
            "account_holder_name": "Ada",
            "routing_number": "110000000",
            "account_number": "000123456789",
        },
    )
    pm = body["payment_method_id"]
    [pending] = await alice.methods()
    assert (pending["id"], pending["status"], pending["type"]) == (
        pm,
        "pending_verification",
        "us_bank_account",
    )
    assert not pending["is_default"]
    refused = await alice.call(
        "POST",
        "/us-bank/verify-microdeposits",
        expect=400,
        json={"payment_method_id": pm, "amounts": [12, 34]},
    )
    assert refused["error"]["field"] == "amounts"
    assert "2 attempts left" in refused["error"]["message"]
    assert (await alice.methods())[0]["status"] == "pending_verification"
    verified = await alice.call(
        "POST", "/us-bank/verify-microdeposits", json={"payment_method_id": pm, "amounts": [32, 45]}
    )
    assert verified["status"] == "active" and verified["bank_name"] == "STRIPE TEST BANK"
    assert verified["last4"] == "6789" and verified["is_default"]
    await alice.events()
    assert [m["status"] for m in await alice.methods()] == ["active"]


async def test_too_many_wrong_microdeposits_fail_the_method(alice: Billing) -> None:
    body = await alice.call(
        "POST",
        "/setup-intent/us-bank",
        json={
            "account_holder_name": "Ada",
            "routing_number": "110000000",
            "account_number": "000123456789",
        },
    )
    pm = body["payment_method_id"]
    for left in (2, 1):
        refused = await alice.call(
            "POST",
            "/us-bank/verify-microdeposits",
            expect=400,
            json={"payment_method_id": pm, "amounts": [12, 34]},
        )
        assert f"{left} attempt" in refused["error"]["message"]
    last = await alice.call(
        "POST",
        "/us-bank/verify-microdeposits",
        expect=400,
        json={"payment_method_id": pm, "amounts": [12, 34]},
    )
    assert "cannot be verified" in last["error"]["message"]
    assert [m["status"] for m in await alice.methods()] == ["verification_failed"]
    await alice.events()  # Stripe's setup_intent.setup_failed: the same state
    assert [m["status"] for m in await alice.methods()] == ["verification_failed"]
    await alice.call(  # and no more answers are taken
        "POST",
        "/us-bank/verify-microdeposits",
        expect=409,
        json={"payment_method_id": pm, "amounts": [32, 45]},
    )


async def test_priority_default_and_removal(alice: Billing, bob: Billing) -> None:
    visa = await alice.card("pm_card_visa")
    mastercard = await alice.card("pm_card_mastercard")
    amex = await alice.card("pm_card_discover")
    assert [m["id"] for m in await alice.methods()] == [visa, mastercard, amex]

    body = await alice.call(
        "POST", "/payment-methods/priority", json={"payment_method_ids": [amex, visa, mastercard]}
    )
    assert [m["id"] for m in body["payment_methods"]] == [amex, visa, mastercard]
    assert body["default_payment_method_id"] == amex
    for wrong in ([amex, visa], [amex, visa, visa], [amex, visa, mastercard, "pm_other"]):
        refused = await alice.call(
            "POST", "/payment-methods/priority", expect=400, json={"payment_method_ids": wrong}
        )
        assert refused["error"]["field"] == "payment_method_ids"
    assert [m["id"] for m in await alice.methods()] == [amex, visa, mastercard]

    body = await alice.call(
        "POST", "/payment-methods/default", json={"payment_method_id": mastercard}
    )
    assert [m["id"] for m in body["payment_methods"]] == [mastercard, amex, visa]
    assert [m["is_default"] for m in body["payment_methods"]] == [True, False, False]

    # Unknown, or another customer's: 404, and nothing changes for its owner.
    bobs = await bob.card()
    await alice.call(
        "POST", "/payment-methods/default", expect=404, json={"payment_method_id": bobs}
    )
    await alice.call("DELETE", f"/payment-methods/{bobs}", expect=404)
    await alice.call("DELETE", "/payment-methods/pm_unknown", expect=404)
    assert [m["id"] for m in await bob.methods()] == [bobs]

    # Removing the default promotes the next by priority.
    body = await alice.call("DELETE", f"/payment-methods/{mastercard}")
    assert [m["id"] for m in body["payment_methods"]] == [amex, visa]
    assert body["default_payment_method_id"] == amex
    assert [m["priority"] for m in body["payment_methods"]] == [1, 2]
    await alice.events()  # payment_method.detached: nothing more changes
    assert [m["id"] for m in await alice.methods()] == [amex, visa]

    # The last usable method while autopay is on and money is owed: 409.
    await alice.call("DELETE", f"/payment-methods/{visa}")
    await alice.call("POST", "/autopay", json={"enabled": True})
    await alice.charge(500)
    refused = await alice.call("DELETE", f"/payment-methods/{amex}", expect=409)
    assert "last usable" in refused["error"]["message"]
    assert [m["id"] for m in await alice.methods()] == [amex]
    await alice.call("POST", "/autopay", json={"enabled": False})
    await alice.call("DELETE", f"/payment-methods/{amex}")
    assert await alice.methods() == []


def _stripe_default(alice: Billing, pm: str) -> str | None:
    """The Stripe customer's `invoice_settings.default_payment_method` (its owner's)."""
    client = alice.world.client
    customer = client.v1.payment_methods.retrieve(pm).customer
    assert isinstance(customer, str)
    found = client.v1.customers.retrieve(customer).invoice_settings.default_payment_method
    return found if isinstance(found, str) or found is None else found.id


async def test_the_default_is_the_stripe_customers_default(alice: Billing) -> None:
    visa = await alice.card("pm_card_visa")
    assert _stripe_default(alice, visa) == visa  # the first method saved is the default
    mastercard = await alice.card("pm_card_mastercard")
    assert _stripe_default(alice, visa) == visa  # a second one is not
    await alice.call("POST", "/payment-methods/default", json={"payment_method_id": mastercard})
    assert _stripe_default(alice, visa) == mastercard
    await alice.call(
        "POST", "/payment-methods/priority", json={"payment_method_ids": [visa, mastercard]}
    )
    assert _stripe_default(alice, visa) == visa
    # Stripe's own invoices (a renewal) charge it, with no method named.
    client = alice.world.client
    customer = client.v1.payment_methods.retrieve(visa).customer
    assert isinstance(customer, str)
    client.v1.invoice_items.create(
        {"customer": customer, "amount": 700, "currency": "usd", "description": "renewal"}
    )
    invoice = client.v1.invoices.create(
        {"customer": customer, "auto_advance": False, "pending_invoice_items_behavior": "include"}
    )
    client.v1.invoices.finalize_invoice(invoice.id)
    paid = client.v1.invoices.pay(invoice.id)  # no method named: the customer's default
    assert (paid.status, paid.amount_paid) == ("paid", 700)
    charge = client.v1.charges.list({"customer": customer}).data[0]
    assert charge.payment_method == visa
    # Removing the default promotes the next, at Stripe too.
    await alice.call("DELETE", f"/payment-methods/{visa}")
    assert _stripe_default(alice, mastercard) == mastercard
