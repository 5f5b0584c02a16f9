"""Entitlements: features, product features and active entitlements, with the real SDK."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.billing_support import DAY, advance, customer_on_clock, make_catalog
from tests.sandbox.shapes import assert_stripe_shape


def test_features(stripe_client: stripe.StripeClient) -> None:
    feature = stripe_client.v1.entitlements.features.create(
        params={"lookup_key": "sso", "name": "Single sign-on", "metadata": {"tier": "pro"}}
    )
    assert_stripe_shape(feature, "entitlements.feature")
    assert feature.id.startswith("feat_")
    assert stripe_client.v1.entitlements.features.retrieve(feature.id).name == "Single sign-on"
    with pytest.raises(stripe.InvalidRequestError) as duplicate:
        stripe_client.v1.entitlements.features.create(params={"lookup_key": "sso", "name": "x"})
    assert duplicate.value.param == "lookup_key"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        stripe_client.v1.entitlements.features.create(params={"lookup_key": "y"})  # type: ignore[typeddict-item]
    assert missing.value.param == "name"

    renamed = stripe_client.v1.entitlements.features.update(
        feature.id, params={"name": "SSO", "active": False}
    )
    assert (renamed.name, renamed.active) == ("SSO", False)
    assert stripe_client.v1.entitlements.features.list().data == []
    archived = stripe_client.v1.entitlements.features.list(params={"archived": True})
    assert [f.id for f in archived.data] == [feature.id]
    by_key = stripe_client.v1.entitlements.features.list(
        params={"archived": True, "lookup_key": "nope"}
    )
    assert by_key.data == []


def test_product_features_and_active_entitlements(stripe_client: stripe.StripeClient) -> None:
    catalog = make_catalog(stripe_client)
    sso = stripe_client.v1.entitlements.features.create(params={"lookup_key": "sso", "name": "SSO"})
    audit = stripe_client.v1.entitlements.features.create(
        params={"lookup_key": "audit", "name": "Audit log"}
    )
    attached = stripe_client.v1.products.features.create(
        catalog.product, params={"entitlement_feature": sso.id}
    )
    assert_stripe_shape(attached, "product_feature")
    assert attached.entitlement_feature.lookup_key == "sso"
    second = stripe_client.v1.products.features.create(
        catalog.product, params={"entitlement_feature": audit.id}
    )
    with pytest.raises(stripe.InvalidRequestError) as twice:
        stripe_client.v1.products.features.create(
            catalog.product, params={"entitlement_feature": sso.id}
        )
    assert twice.value.param == "entitlement_feature"
    listed = stripe_client.v1.products.features.list(catalog.product)
    assert {pf.id for pf in listed.data} == {attached.id, second.id}
    assert (
        stripe_client.v1.products.features.retrieve(catalog.product, attached.id).id == attached.id
    )

    who = customer_on_clock(stripe_client)
    assert (
        stripe_client.v1.entitlements.active_entitlements.list(
            params={"customer": who.customer}
        ).data
        == []
    )
    sub = stripe_client.v1.subscriptions.create(
        params={"customer": who.customer, "items": [{"price": catalog.monthly}]}
    )
    active = stripe_client.v1.entitlements.active_entitlements.list(
        params={"customer": who.customer, "expand": ["data.feature"]}
    )
    assert sorted(e.lookup_key for e in active.data) == ["audit", "sso"]
    assert_stripe_shape(active.data[0], "entitlements.active_entitlement")
    one = stripe_client.v1.entitlements.active_entitlements.retrieve(active.data[0].id)
    assert one.lookup_key == active.data[0].lookup_key

    removed = stripe_client.v1.products.features.delete(catalog.product, second.id)
    assert removed.deleted is True
    after = stripe_client.v1.entitlements.active_entitlements.list(
        params={"customer": who.customer}
    )
    assert [e.lookup_key for e in after.data] == ["sso"]

    stripe_client.v1.subscriptions.cancel(sub.id)
    advance(stripe_client, who.clock, int(sub.start_date) + DAY)
    assert (
        stripe_client.v1.entitlements.active_entitlements.list(
            params={"customer": who.customer}
        ).data
        == []
    )
    with pytest.raises(stripe.InvalidRequestError) as gone:
        stripe_client.v1.entitlements.active_entitlements.retrieve(one.id)
    assert gone.value.http_status == 404
