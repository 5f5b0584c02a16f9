"""Customer tax IDs, with the real SDK."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.billing_support import event_types
from tests.sandbox.shapes import assert_stripe_shape


def test_tax_ids(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(params={"name": "Jenny Rosen"})
    vat = stripe_client.v1.customers.tax_ids.create(
        customer.id, params={"type": "eu_vat", "value": "DE123456789"}
    )
    assert_stripe_shape(vat, "tax_id")
    assert vat.id.startswith("txi_")
    assert (vat.country, vat.verification.status) == ("DE", "pending")
    assert vat.owner.customer == customer.id
    ein = stripe_client.v1.customers.tax_ids.create(
        customer.id, params={"type": "us_ein", "value": "12-3456789"}
    )
    assert (ein.country, ein.verification.status) == ("US", "unavailable")
    listed = stripe_client.v1.customers.tax_ids.list(customer.id)
    assert [t.id for t in listed.data] == [ein.id, vat.id]
    assert stripe_client.v1.customers.tax_ids.retrieve(customer.id, vat.id).value == "DE123456789"

    for kind, value in (("eu_vat", "123"), ("gb_vat", "GB12"), ("us_ein", "12345")):
        with pytest.raises(stripe.InvalidRequestError) as invalid:
            stripe_client.v1.customers.tax_ids.create(
                customer.id,
                params={"type": kind, "value": value},  # type: ignore[typeddict-item]
            )
        assert (invalid.value.code, invalid.value.param) == ("tax_id_invalid", "value")
    with pytest.raises(stripe.InvalidRequestError) as kind_error:
        stripe_client.v1.customers.tax_ids.create(
            customer.id,
            params={"type": "xx_nope", "value": "1"},  # type: ignore[typeddict-item]
        )
    assert kind_error.value.param == "type"

    deleted = stripe_client.v1.customers.tax_ids.delete(customer.id, vat.id)
    assert deleted.deleted is True
    assert [t.id for t in stripe_client.v1.customers.tax_ids.list(customer.id).data] == [ein.id]
    other = stripe_client.v1.customers.create()
    with pytest.raises(stripe.InvalidRequestError) as elsewhere:
        stripe_client.v1.customers.tax_ids.retrieve(other.id, ein.id)
    assert elsewhere.value.http_status == 404
    assert event_types(stripe_client, prefixes=("customer.tax_id.",)) == [
        "customer.tax_id.created",
        "customer.tax_id.created",
        "customer.tax_id.deleted",
    ]
