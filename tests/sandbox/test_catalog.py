"""Products, prices, coupons and promotion codes: shapes, filters, lookup keys, events."""

from __future__ import annotations

import pytest
import stripe

from tests.sandbox.sdk_params import undeclared_sdk_parameters
from tests.sandbox.shapes import assert_stripe_shape


def test_product_and_prices(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(params={"name": "Pro", "metadata": {"tier": "2"}})
    assert product.id.startswith("prod_")
    assert_stripe_shape(product, "product")
    monthly = stripe_client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 1500,
            "recurring": {"interval": "month"},
            "lookup_key": "pro_monthly",
        }
    )
    assert_stripe_shape(monthly, "price", nested=("recurring",))
    assert monthly.type == "recurring"
    assert monthly.recurring.interval == "month"
    assert monthly.recurring.interval_count == 1
    assert str(monthly.unit_amount_decimal) == "1500"
    one_time = stripe_client.v1.prices.create(
        params={"product": product.id, "currency": "EUR", "unit_amount": 900}
    )
    assert one_time.type == "one_time"
    assert one_time.recurring is None
    assert one_time.currency == "eur"

    found = stripe_client.v1.prices.list(params={"lookup_keys": ["pro_monthly"]}).data
    assert [p.id for p in found] == [monthly.id]
    assert [p.id for p in stripe_client.v1.prices.list(params={"type": "one_time"}).data] == [
        one_time.id
    ]
    assert [p.id for p in stripe_client.v1.prices.list(params={"currency": "eur"}).data] == [
        one_time.id
    ]

    # A lookup key is unique; transfer_lookup_key moves it to the new price.
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.prices.create(
            params={
                "product": product.id,
                "currency": "usd",
                "unit_amount": 1700,
                "recurring": {"interval": "month"},
                "lookup_key": "pro_monthly",
            }
        )
    assert info.value.param == "lookup_key"
    newer = stripe_client.v1.prices.create(
        params={
            "product": product.id,
            "currency": "usd",
            "unit_amount": 1700,
            "recurring": {"interval": "month"},
            "lookup_key": "pro_monthly",
            "transfer_lookup_key": True,
        }
    )
    assert stripe_client.v1.prices.retrieve(monthly.id).lookup_key is None
    found = stripe_client.v1.prices.list(params={"lookup_keys": ["pro_monthly"]}).data
    assert [p.id for p in found] == [newer.id]

    archived = stripe_client.v1.prices.update(monthly.id, params={"active": False})
    assert archived.active is False
    active_ids = {p.id for p in stripe_client.v1.prices.list(params={"active": True}).data}
    assert monthly.id not in active_ids

    types = [e.type for e in stripe_client.v1.events.list(params={"limit": 100}).data]
    assert types.count("price.created") == 3
    assert "product.created" in types
    assert "price.updated" in types


def test_price_with_product_data_and_expand(stripe_client: stripe.StripeClient) -> None:
    price = stripe_client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 500,
            "product_data": {"name": "Credits pack"},
            "expand": ["product"],
        }
    )
    assert price.product.name == "Credits pack"
    listed = stripe_client.v1.prices.list(params={"expand": ["data.product"]})
    assert listed.data[0].product.object == "product"


def test_price_requires_amount_and_valid_currency(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(params={"name": "X"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.prices.create(params={"product": product.id, "currency": "usd"})
    assert info.value.param == "unit_amount"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.prices.create(params={"currency": "usd", "unit_amount": 1})
    assert info.value.param == "product"
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.prices.create(
            params={"product": product.id, "currency": "usd", "unit_amount": -1}
        )
    assert info.value.param == "unit_amount"


def test_coupons_and_promotion_codes(stripe_client: stripe.StripeClient) -> None:
    percent = stripe_client.v1.coupons.create(
        params={"percent_off": 25, "duration": "repeating", "duration_in_months": 3}
    )
    assert_stripe_shape(percent, "coupon")
    assert percent.valid is True
    assert percent.percent_off == 25
    fixed = stripe_client.v1.coupons.create(
        params={"id": "TENOFF", "amount_off": 1000, "currency": "usd", "duration": "once"}
    )
    assert fixed.id == "TENOFF"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.coupons.create(params={"amount_off": 1000, "duration": "once"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.coupons.create(params={"percent_off": 10, "duration": "repeating"})
    assert info.value.param == "duration_in_months"

    promo = stripe_client.v1.promotion_codes.create(
        params={"promotion": {"type": "coupon", "coupon": percent.id}, "code": "SPRING25"}
    )
    assert_stripe_shape(promo, "promotion_code", nested=("restrictions", "promotion"))
    assert promo.promotion.coupon == percent.id
    with pytest.raises(stripe.InvalidRequestError) as info:
        stripe_client.v1.promotion_codes.create(
            params={"promotion": {"type": "coupon", "coupon": fixed.id}, "code": "spring25"}
        )
    assert info.value.param == "code"
    by_code = stripe_client.v1.promotion_codes.list(params={"code": "SPRING25"}).data
    assert [p.id for p in by_code] == [promo.id]
    expanded = stripe_client.v1.promotion_codes.retrieve(
        promo.id, params={"expand": ["promotion.coupon"]}
    )
    assert expanded.promotion.coupon.percent_off == 25

    off = stripe_client.v1.promotion_codes.update(promo.id, params={"active": False})
    assert off.active is False
    assert stripe_client.v1.promotion_codes.list(params={"active": True}).data == []

    deleted = stripe_client.v1.coupons.delete(fixed.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.promotion_codes.create(
            params={"promotion": {"type": "coupon", "coupon": fixed.id}}
        )


def test_product_with_default_price_data(stripe_client: stripe.StripeClient) -> None:
    product = stripe_client.v1.products.create(
        params={
            "name": "Team",
            "default_price_data": {
                "currency": "usd",
                "unit_amount": 4900,
                "recurring": {"interval": "year"},
            },
            "expand": ["default_price"],
        }
    )
    assert product.default_price.unit_amount == 4900
    assert product.default_price.recurring.interval == "year"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.products.delete(product.id)


def test_sdk_parameters_are_declared() -> None:
    """Every parameter the SDK's typed params allow for the core routes is accepted."""
    import stripe.params as sdk_params
    import stripe.params.test_helpers as sdk_test_helpers

    pairs = {
        ("POST", "/v1/customers"): "CustomerCreateParams",
        ("POST", "/v1/customers/{id}"): "CustomerUpdateParams",
        ("GET", "/v1/customers"): "CustomerListParams",
        ("GET", "/v1/customers/search"): "CustomerSearchParams",
        ("POST", "/v1/products"): "ProductCreateParams",
        ("POST", "/v1/products/{id}"): "ProductUpdateParams",
        ("GET", "/v1/products"): "ProductListParams",
        ("POST", "/v1/prices"): "PriceCreateParams",
        ("POST", "/v1/prices/{id}"): "PriceUpdateParams",
        ("GET", "/v1/prices"): "PriceListParams",
        ("POST", "/v1/coupons"): "CouponCreateParams",
        ("POST", "/v1/coupons/{id}"): "CouponUpdateParams",
        ("GET", "/v1/coupons"): "CouponListParams",
        ("POST", "/v1/promotion_codes"): "PromotionCodeCreateParams",
        ("POST", "/v1/promotion_codes/{id}"): "PromotionCodeUpdateParams",
        ("GET", "/v1/promotion_codes"): "PromotionCodeListParams",
        ("GET", "/v1/events"): "EventListParams",
        ("POST", "/v1/webhook_endpoints"): "WebhookEndpointCreateParams",
        ("POST", "/v1/webhook_endpoints/{id}"): "WebhookEndpointUpdateParams",
        ("GET", "/v1/webhook_endpoints"): "WebhookEndpointListParams",
        ("POST", "/v1/test_helpers/test_clocks"): "TestClockCreateParams",
        ("POST", "/v1/test_helpers/test_clocks/{id}/advance"): "TestClockAdvanceParams",
    }
    problems = {}
    for (method, path), name in pairs.items():
        typed = getattr(sdk_params, name, None) or getattr(sdk_test_helpers, name)
        missing = undeclared_sdk_parameters(method, path, typed)
        if missing:
            problems[f"{method} {path}"] = missing
    assert not problems, problems
