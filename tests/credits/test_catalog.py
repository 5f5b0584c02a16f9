"""Credit packages and top-up pricing in the catalog, and their sync to Stripe."""

from __future__ import annotations

import pytest

from billfold.catalog.credits import parse_credit_catalog
from billfold.catalog.service import load_catalog, sync_catalog
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.db.engine import Database
from billfold.errors import ConfigurationError, ValidationFailed
from tests.fakes.stripe_gateway import FakeStripeGateway

RAW = {
    "credits": {
        "packages": [{"id": "small", "credits": 10, "prices": {"eur": 100, "USD": 120}}],
        "topup": {
            "eur": {
                "unit_amount": "2.5",
                "min_credits": 4,
                "max_credits": 1000,
                "tiers": [{"from": 100, "unit_amount": "2"}],
            }
        },
    }
}


def test_topup_price_tiers_bounds_and_rounding() -> None:
    catalog = parse_credit_catalog(RAW)
    assert catalog.default_currency == "eur" and catalog.currencies == ["eur", "usd"]
    assert catalog.topup_price(5, "eur") == 13  # 12.5 rounded half up
    assert catalog.topup_price(99, "eur") == 248  # 247.5
    assert catalog.topup_price(100, "eur") == 200  # the whole top-up at the tier's price
    for credits, field in ((3, "credits"), (1001, "credits"), (0, "credits")):
        with pytest.raises(ValidationFailed) as refused:
            catalog.topup_price(credits, "eur")
        assert refused.value.field == field
    with pytest.raises(ValidationFailed) as refused:
        catalog.topup_price(10, "usd")
    assert refused.value.field == "currency"
    assert catalog.packages_in("usd")[0][1] == 120


@pytest.mark.parametrize(
    "bad",
    [
        {"credits": {"packages": [{"id": "x", "credits": 0, "prices": {"eur": 1}}]}},
        {"credits": {"packages": [{"id": "x", "credits": 5, "prices": {}}]}},
        {"credits": {"topup": {"eur": {"unit_amount": "-1"}}}},
        {"credits": {"topup": {"euro": {"unit_amount": "1"}}}},
    ],
)
def test_bad_credit_catalog_names_the_entry(bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigurationError):
        parse_credit_catalog(bad)


async def test_packages_synced_as_one_time_prices_once(
    database: Database, clock: FrozenClock, settings: Settings
) -> None:
    gateway = FakeStripeGateway()
    async with database.transaction() as session:
        catalog = await load_catalog(session, settings)
        first = await sync_catalog(session, gateway, catalog, clock=clock)
        again = await sync_catalog(session, gateway, catalog, clock=clock)
    assert first.package_prices_created == 6 and first.changed
    assert again.package_prices_created == 0 and again.package_prices_unchanged == 6
    assert not again.changed
    found = await gateway.catalog.prices_by_lookup_keys(["billfold_credits_starter_eur"])
    assert [(p.unit_amount, p.currency, p.interval) for p in found] == [(999, "eur", None)]
