"""The catalog: the TOML format, the environment's price ids, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from billfold.catalog.service import (
    apply_environment,
    parse_catalog,
    read_catalog_file,
    resolve_price,
)
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.db.engine import Database
from billfold.errors import ConfigurationError, ValidationFailed

CUSTOM = """
[[plans]]
code = "team"
name = "Team"
features = ["Seats for everyone"]
trial_days = 14
display_order = 2

  [[plans.prices]]
  interval = "monthly"
  currency = "eur"
  amount = 1900

[[plans]]
code = "solo"
name = "Solo"
display_order = 1
active = false

  [[plans.prices]]
  interval = "yearly"
  currency = "usd"
  amount = 9900
  stripe_price_id = "price_pinned_solo"
"""


def test_default_catalog_is_premium_in_usd_and_eur() -> None:
    catalog = read_catalog_file(Settings())
    assert [p.code for p in catalog.plans] == ["premium"]
    prices = {(p.interval, p.currency): p.amount for p in catalog.plans[0].prices}
    assert prices == {
        ("monthly", "usd"): 699,
        ("yearly", "usd"): 6000,
        ("monthly", "eur"): 649,
        ("yearly", "eur"): 5600,
    }


def test_custom_file_and_ordering(tmp_path: Path) -> None:
    path = tmp_path / "plans.toml"
    path.write_text(CUSTOM)
    catalog = read_catalog_file(Settings(catalog_file=path))
    team = catalog.plan("team")
    assert team is not None and team.trial_days == 14 and team.features == ("Seats for everyone",)
    assert team.prices[0].lookup_key == "billfold_team_monthly_eur"
    # Inactive plans are not sold, but their prices are still recognized.
    assert [plan.code for plan, _ in catalog.prices()] == ["team"]
    assert [plan.code for plan, _ in catalog.prices(active_only=False)] == ["solo", "team"]
    with pytest.raises(ValidationFailed, match="no longer sold"):
        resolve_price(catalog, price_id="price_pinned_solo")
    with pytest.raises(ValidationFailed, match="catalog sync"):
        resolve_price(catalog, plan="team", interval="monthly")


def test_environment_pins_prices() -> None:
    settings = Settings(
        STRIPE_PREMIUM_MONTHLY_PRICE_ID="price_env_monthly",
        STRIPE_PREMIUM_YEARLY_PRICE_ID="price_env_yearly",
        STRIPE_PRICE_IDS=(
            '{"basic": "price_basic", "pro_yearly": "price_pro_y", "pro:monthly": "price_pro_m"}'
        ),
    )
    catalog = apply_environment(read_catalog_file(settings), settings)
    plan, price = resolve_price(catalog, price_id="price_env_monthly")
    assert (plan.code, price.interval, price.currency, price.amount) == (
        "premium",
        "monthly",
        "usd",
        699,
    )
    assert resolve_price(catalog, plan="premium", interval="yearly")[1].stripe_price_id == (
        "price_env_yearly"
    )
    assert resolve_price(catalog, price_id="price_basic")[0].code == "basic"
    assert resolve_price(catalog, plan="pro", interval="yearly")[1].stripe_price_id == "price_pro_y"
    assert (
        resolve_price(catalog, plan="pro", interval="monthly")[1].stripe_price_id == "price_pro_m"
    )
    # A plan code or the plan's product id names its price too (document 000's productId).
    assert resolve_price(catalog, price_id="billfold_premium")[1].interval == "monthly"
    assert resolve_price(catalog, price_id="premium", interval="yearly")[1].amount == 6000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[plans]]\ncode = "Bad Code"', r"plans\[0\]\.code"),
        (
            '[[plans]]\ncode = "a"\n[[plans.prices]]\ninterval = "hourly"\ncurrency = "usd"',
            "interval",
        ),
        (
            '[[plans]]\ncode = "a"\n[[plans.prices]]\ninterval = "monthly"\ncurrency = "dollars"',
            "currency",
        ),
        (
            '[[plans]]\ncode = "a"\n[[plans.prices]]\ninterval = "monthly"\ncurrency = "usd"\n'
            "amount = 6.99",
            "minor units",
        ),
        ('[[plans]]\ncode = "a"\n[[plans]]\ncode = "a"', "unique"),
    ],
)
def test_bad_catalogs_name_the_entry(text: str, message: str) -> None:
    import tomllib

    with pytest.raises(ConfigurationError, match=message):
        parse_catalog(tomllib.loads(text))


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        read_catalog_file(Settings(catalog_file=tmp_path / "nope.toml"))
    broken = tmp_path / "broken.toml"
    broken.write_text("[[plans]\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        read_catalog_file(Settings(catalog_file=broken))


async def test_sync_leaves_pinned_prices_alone(database: Database) -> None:
    from billfold.catalog.service import load_catalog, sync_catalog
    from tests.fakes.stripe_gateway import FakeStripeGateway

    settings = Settings(STRIPE_PREMIUM_MONTHLY_PRICE_ID="price_env_monthly")
    gateway = FakeStripeGateway()
    async with database.transaction() as session:
        catalog = await load_catalog(session, settings)
        report = await sync_catalog(session, gateway, catalog, clock=FrozenClock())
        reloaded = await load_catalog(session, settings)
    assert report.prices_pinned == 1 and report.prices_created == 3
    plan_prices = [p for p in gateway.stripe.prices.values() if p["product"] == "billfold_premium"]
    keys = {p["lookup_key"] for p in plan_prices}  # (credit packages have prices of their own)
    assert "billfold_premium_monthly_usd" not in keys and len(keys) == 3
    monthly = resolve_price(reloaded, plan="premium", interval="monthly", currency="usd")[1]
    assert monthly.stripe_price_id == "price_env_monthly"
