"""`/v1/products/search` and `/v1/prices/search` through the official SDK (Stripe's query
language: `field:'v'`, `metadata['k']:'v'`, AND/OR, negation)."""

from __future__ import annotations

import pytest
import stripe


def test_products_and_prices_are_searchable(stripe_client: stripe.StripeClient) -> None:
    client = stripe_client
    pro = client.v1.products.create(params={"name": "Pro plan", "metadata": {"tier": "pro"}})
    basic = client.v1.products.create(params={"name": "Basic", "metadata": {"tier": "basic"}})
    client.v1.products.update(basic.id, params={"active": False})
    monthly = client.v1.prices.create(
        params={
            "product": pro.id,
            "currency": "usd",
            "unit_amount": 2000,
            "recurring": {"interval": "month"},
            "lookup_key": "pro_monthly",
            "metadata": {"plan": "pro"},
        }
    )
    once = client.v1.prices.create(
        params={"product": pro.id, "currency": "eur", "unit_amount": 500}
    )

    found = client.v1.products.search(params={"query": "metadata['tier']:'pro'"})
    assert [p.id for p in found.data] == [pro.id]
    assert found.object == "search_result"
    assert [p.id for p in client.v1.products.search(params={"query": "active:'false'"}).data] == [
        basic.id
    ]
    assert [p.id for p in client.v1.products.search(params={"query": "name~'plan'"}).data] == [
        pro.id
    ]

    by_key = client.v1.prices.search(params={"query": "lookup_key:'pro_monthly'"})
    assert [p.id for p in by_key.data] == [monthly.id]
    both = client.v1.prices.search(params={"query": f"product:'{pro.id}' AND type:'one_time'"}).data
    assert [p.id for p in both] == [once.id]
    assert [p.id for p in client.v1.prices.search(params={"query": "currency:'eur'"}).data] == [
        once.id
    ]
    paged = client.v1.prices.search(params={"query": f"product:'{pro.id}'", "limit": 1})
    assert paged.has_more is True and paged.next_page
    rest = client.v1.prices.search(
        params={"query": f"product:'{pro.id}'", "limit": 1, "page": paged.next_page}
    )
    assert {paged.data[0].id, rest.data[0].id} == {monthly.id, once.id}

    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.products.search(params={"query": "nonsense"})
    assert info.value.http_status == 400
