"""Credit packages and top-up pricing: the `[credits]` table of the catalog file, beside the plans.

```toml
[credits]
default_currency = "eur"          # document 001's default
max_topup_credits = 1000000       # the largest top-up (400 beyond it)

[[credits.packages]]
id = "starter"
name = "Starter"
credits = 100
description = "For trying it out" # what it is for (the page shows the credits and price)
prices = { eur = 999, usd = 1099 } # minor units, per currency

[credits.topup.eur]
unit_amount = "10"                # minor units per credit (a decimal string: "0.5" is allowed)
min_credits = 10
tiers = [{ from = 500, unit_amount = "9" }, { from = 2000, unit_amount = "8" }]

[credits.payment_method_types]   # optional; unset: Stripe's dynamic payment methods
usd = ["card", "us_bank_account"]
```

A top-up's price is `credits x unit_amount` of the highest tier the count reaches (volume
pricing: the whole top-up at that tier's price), rounded half up to whole minor units.
`billfold catalog sync` creates a Stripe product per package and a price per currency, found by
lookup key `billfold_credits_<id>_<currency>`; top-ups are priced ad hoc (`price_data`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from billfold.config import Settings
from billfold.errors import ConfigurationError, ValidationFailed

DEFAULT_CURRENCY = "eur"
DEFAULT_MAX_TOPUP = 1_000_000


@dataclass(frozen=True, slots=True)
class CreditPackage:
    id: str
    name: str
    credits: int
    description: str | None
    prices: Mapping[str, int]  # currency -> minor units
    display_order: int

    def lookup_key(self, currency: str) -> str:
        return f"billfold_credits_{self.id}_{currency}"

    @property
    def product_id(self) -> str:
        return f"billfold_credits_{self.id}"


@dataclass(frozen=True, slots=True)
class TopupTier:
    from_credits: int
    unit_amount: Decimal  # minor units per credit


@dataclass(frozen=True, slots=True)
class TopupPricing:
    currency: str
    tiers: tuple[TopupTier, ...]  # ascending by from_credits, the first from 1
    min_credits: int
    max_credits: int

    def price(self, credits: int) -> int:
        """The price of `credits` in minor units (volume tiers, rounded half up)."""
        unit = self.tiers[0].unit_amount
        for tier in self.tiers:
            if credits >= tier.from_credits:
                unit = tier.unit_amount
        return int((unit * credits).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class CreditCatalog:
    default_currency: str
    max_topup_credits: int
    packages: tuple[CreditPackage, ...]
    topup: Mapping[str, TopupPricing]
    # Checkout's payment methods per currency (`us_bank_account` for ACH in usd); none given:
    # Stripe's dynamic payment methods (the Dashboard's settings).
    payment_method_types: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def currencies(self) -> list[str]:
        found = set(self.topup)
        for package in self.packages:
            found.update(package.prices)
        return sorted(found)

    def package(self, package_id: str) -> CreditPackage | None:
        return next((p for p in self.packages if p.id == package_id), None)

    def packages_in(self, currency: str) -> list[tuple[CreditPackage, int]]:
        return [(p, p.prices[currency]) for p in self.packages if currency in p.prices]

    def check_currency(self, currency: str, *, field: str = "currency") -> str:
        code = currency.strip().lower()
        if code not in self.currencies:
            raise ValidationFailed(
                f"currency must be one of {', '.join(c.upper() for c in self.currencies)}",
                field=field,
            )
        return code

    def topup_price(self, credits: int, currency: str, *, field: str = "credits") -> int:
        """The price of a top-up of `credits` in `currency` (minor units); ValidationFailed
        naming `field` for a count outside the configured range."""
        pricing = self.topup.get(currency)
        if pricing is None:
            raise ValidationFailed(f"no top-up price in {currency.upper()}", field="currency")
        check_credit_amount(credits, field=field, maximum=pricing.max_credits)
        if credits < pricing.min_credits:
            raise ValidationFailed(
                f"a top-up is at least {pricing.min_credits} credits", field=field
            )
        return pricing.price(credits)


def check_credit_amount(value: Any, *, field: str, maximum: int) -> int:
    """A positive whole number of credits no larger than `maximum`, else ValidationFailed."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed("must be a whole number of credits", field=field)
    if value <= 0:
        raise ValidationFailed("must be a positive number of credits", field=field)
    if value > maximum:
        raise ValidationFailed(f"must be at most {maximum} credits", field=field)
    return value


def _decimal(value: Any, where: str) -> Decimal:
    try:
        found = Decimal(str(value))
    except InvalidOperation as exc:
        raise ConfigurationError(f"{where} must be a decimal number of minor units") from exc
    if not found.is_finite() or found <= 0:
        raise ConfigurationError(f"{where} must be a positive number of minor units")
    return found


def _currency(value: Any, where: str) -> str:
    code = str(value).lower()
    if len(code) != 3 or not code.isalpha():
        raise ConfigurationError(f"{where} must be an ISO currency code such as eur")
    return code


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{where} must be a positive integer")
    return value


def parse_credit_catalog(data: Mapping[str, Any], *, source: str = "catalog") -> CreditCatalog:
    """The `[credits]` table of a catalog (none: no packages, no top-up)."""
    raw = data.get("credits") or {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{source}: `credits` must be a table")
    default_currency = _currency(
        raw.get("default_currency", DEFAULT_CURRENCY), f"{source}: credits.default_currency"
    )
    max_topup = _positive_int(
        raw.get("max_topup_credits", DEFAULT_MAX_TOPUP), f"{source}: credits.max_topup_credits"
    )
    packages: list[CreditPackage] = []
    for index, entry in enumerate(raw.get("packages") or []):
        where = f"{source}: credits.packages[{index}]"
        package_id = str(entry.get("id") or "")
        if not package_id or len(package_id) > 64 or not package_id.replace("_", "").isalnum():
            raise ConfigurationError(f"{where}.id must be letters, digits or _ (1 to 64)")
        prices_raw = entry.get("prices") or {}
        if not isinstance(prices_raw, Mapping) or not prices_raw:
            raise ConfigurationError(f"{where}.prices must be a table such as {{eur = 999}}")
        prices = {
            _currency(k, f"{where}.prices"): _positive_int(v, f"{where}.prices.{k}")
            for k, v in prices_raw.items()
        }
        packages.append(
            CreditPackage(
                id=package_id,
                name=str(entry.get("name") or package_id.title()),
                credits=_positive_int(entry.get("credits"), f"{where}.credits"),
                description=entry.get("description"),
                prices=prices,
                display_order=int(entry.get("display_order", index + 1)),
            )
        )
    if len({p.id for p in packages}) != len(packages):
        raise ConfigurationError(f"{source}: credit package ids must be unique")
    topup: dict[str, TopupPricing] = {}
    for code, entry in (raw.get("topup") or {}).items():
        where = f"{source}: credits.topup.{code}"
        currency = _currency(code, where)
        tiers = [TopupTier(1, _decimal(entry.get("unit_amount"), f"{where}.unit_amount"))]
        for t_index, tier in enumerate(entry.get("tiers") or []):
            tiers.append(
                TopupTier(
                    _positive_int(tier.get("from"), f"{where}.tiers[{t_index}].from"),
                    _decimal(tier.get("unit_amount"), f"{where}.tiers[{t_index}].unit_amount"),
                )
            )
        tiers.sort(key=lambda t: t.from_credits)
        topup[currency] = TopupPricing(
            currency=currency,
            tiers=tuple(tiers),
            min_credits=_positive_int(entry.get("min_credits", 1), f"{where}.min_credits"),
            max_credits=min(
                max_topup,
                _positive_int(entry.get("max_credits", max_topup), f"{where}.max_credits"),
            ),
        )
    methods: dict[str, tuple[str, ...]] = {}
    for code, entry in (raw.get("payment_method_types") or {}).items():
        where = f"{source}: credits.payment_method_types.{code}"
        if not isinstance(entry, list) or not all(isinstance(v, str) for v in entry):
            raise ConfigurationError(f'{where} must be a list such as ["card"]')
        methods[_currency(code, where)] = tuple(entry)
    return CreditCatalog(
        payment_method_types=methods,
        default_currency=default_currency,
        max_topup_credits=max_topup,
        packages=tuple(sorted(packages, key=lambda p: (p.display_order, p.id))),
        topup=topup,
    )


_parsed: dict[tuple[str, float], CreditCatalog] = {}


def read_credit_catalog(settings: Settings) -> CreditCatalog:
    """The credit packages and top-up pricing of the catalog file (BILLFOLD_CATALOG_FILE) or
    of the embedded default; parsed once per file version."""
    if settings.catalog_file is not None:
        path = Path(settings.catalog_file)
        if not path.is_file():
            raise ConfigurationError(f"BILLFOLD_CATALOG_FILE {str(path)!r} does not exist")
        key = (str(path.resolve()), path.stat().st_mtime)
        text, source = path.read_text(), str(path)
    else:
        key = ("default", 0.0)
        text, source = "", "default catalog"
    if key not in _parsed:
        if settings.catalog_file is None:
            text = resources.files("billfold.catalog").joinpath("default_catalog.toml").read_text()
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{source} is not valid TOML: {exc}") from exc
        _parsed[key] = parse_credit_catalog(data, source=source)
    return _parsed[key]
