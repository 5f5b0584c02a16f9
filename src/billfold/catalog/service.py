"""The plan catalog: plans and their prices, from a TOML file, the environment and Stripe.

Where a price's Stripe id comes from, strongest first: the catalog file's `stripe_price_id`,
the seeds' variables (`STRIPE_PREMIUM_MONTHLY_PRICE_ID`, `STRIPE_PREMIUM_YEARLY_PRICE_ID`,
`STRIPE_PRICE_IDS`), then the price `billfold catalog sync` created for its lookup key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.catalog.credits import CreditCatalog, parse_credit_catalog
from billfold.catalog.models import CatalogPriceLink
from billfold.clock import Clock
from billfold.config import Settings
from billfold.db.dialect import insert_ignoring_conflict
from billfold.errors import ConfigurationError, ValidationFailed
from billfold.stripe.gateway import StripeGateway

# billfold's interval names (the seeds') and Stripe's.
STRIPE_INTERVAL = {"daily": "day", "weekly": "week", "monthly": "month", "yearly": "year"}
BILLFOLD_INTERVAL = {v: k for k, v in STRIPE_INTERVAL.items()}
_CODE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


@dataclass(frozen=True, slots=True)
class PlanPrice:
    """One way to pay for a plan: an interval, a currency and an amount in minor units."""

    plan_code: str
    interval: str  # monthly | yearly | weekly | daily
    currency: str  # lower-case ISO code
    amount: int | None  # None when only a Stripe price id is known (from the environment)
    lookup_key: str
    stripe_price_id: str | None = None
    # True when the file or the environment names the Stripe price: sync leaves it alone.
    pinned: bool = False
    name: str | None = None
    description: str | None = None
    features: tuple[str, ...] = ()

    @property
    def stripe_interval(self) -> str:
        return STRIPE_INTERVAL[self.interval]


@dataclass(frozen=True, slots=True)
class Plan:
    code: str
    name: str
    description: str
    features: tuple[str, ...]
    trial_days: int
    display_order: int
    active: bool
    prices: tuple[PlanPrice, ...] = field(default_factory=tuple)
    # Credits granted per paid invoice, expiring at the period's end; up to
    # `credits_rollover_cap` of what is left rolls over into the next period.
    credits_per_period: int = 0
    credits_rollover_cap: int = 0

    @property
    def product_id(self) -> str:
        """The Stripe product id billfold creates for this plan."""
        return f"billfold_{self.code}"


@dataclass(frozen=True, slots=True)
class Catalog:
    plans: tuple[Plan, ...]
    # The `[credits]` table: credit packages (synced as one-time prices) and top-up pricing.
    credits: CreditCatalog | None = None

    def plan(self, code: str) -> Plan | None:
        return next((p for p in self.plans if p.code == code), None)

    def prices(self, *, active_only: bool = True) -> list[tuple[Plan, PlanPrice]]:
        found = [
            (plan, price)
            for plan in sorted(self.plans, key=lambda p: (p.display_order, p.code))
            for price in plan.prices
            if plan.active or not active_only
        ]
        return found

    def find_price(self, price_id: str) -> tuple[Plan, PlanPrice] | None:
        """The plan and price a Stripe price id or a lookup key names."""
        for plan, price in self.prices(active_only=False):
            if price_id in (price.stripe_price_id, price.lookup_key):
                return plan, price
        return None

    def price_for(
        self, plan_code: str, interval: str, currency: str | None
    ) -> tuple[Plan, PlanPrice] | None:
        plan = self.plan(plan_code)
        if plan is None:
            return None
        candidates = [p for p in plan.prices if p.interval == interval]
        if currency:
            candidates = [p for p in candidates if p.currency == currency.lower()]
        return (plan, candidates[0]) if candidates else None


def _lookup_key(code: str, interval: str, currency: str) -> str:
    return f"billfold_{code}_{interval}_{currency}"


def _str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"catalog: {where} must be a list of strings")
    return tuple(value)


def _non_negative(entry: Mapping[str, Any], name: str, where: str) -> int:
    value = entry.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{where}.{name} must be a whole number of credits (0 or more)")
    return value


def parse_catalog(data: Mapping[str, Any], *, source: str = "catalog") -> Catalog:
    """A catalog from its TOML tables; names the faulty entry when something is wrong."""
    plans: list[Plan] = []
    raw_plans = data.get("plans", [])
    if not isinstance(raw_plans, list):
        raise ConfigurationError(f"{source}: `plans` must be an array of tables")
    for index, entry in enumerate(raw_plans):
        where = f"{source}: plans[{index}]"
        code = str(entry.get("code", ""))
        if not _CODE.match(code):
            raise ConfigurationError(f"{where}.code must be lower-case letters, digits, _ or -")
        prices: list[PlanPrice] = []
        for p_index, raw in enumerate(entry.get("prices", [])):
            p_where = f"{where}.prices[{p_index}]"
            interval = str(raw.get("interval", ""))
            if interval not in STRIPE_INTERVAL:
                raise ConfigurationError(f"{p_where}.interval must be one of monthly, yearly")
            currency = str(raw.get("currency", "")).lower()
            if len(currency) != 3 or not currency.isalpha():
                raise ConfigurationError(f"{p_where}.currency must be an ISO code such as usd")
            amount = raw.get("amount")
            if amount is not None and (
                not isinstance(amount, int) or isinstance(amount, bool) or amount < 0
            ):
                raise ConfigurationError(f"{p_where}.amount must be whole minor units (699)")
            prices.append(
                PlanPrice(
                    plan_code=code,
                    interval=interval,
                    currency=currency,
                    amount=amount,
                    lookup_key=str(raw.get("lookup_key") or _lookup_key(code, interval, currency)),
                    stripe_price_id=raw.get("stripe_price_id"),
                    pinned=bool(raw.get("stripe_price_id")),
                    name=raw.get("name"),
                    description=raw.get("description"),
                    features=_str_tuple(raw.get("features"), f"{p_where}.features"),
                )
            )
        plans.append(
            Plan(
                code=code,
                name=str(entry.get("name") or code.title()),
                description=str(entry.get("description") or ""),
                features=_str_tuple(entry.get("features"), f"{where}.features"),
                trial_days=int(entry.get("trial_days", 0)),
                display_order=int(entry.get("display_order", index + 1)),
                active=bool(entry.get("active", True)),
                prices=tuple(prices),
                credits_per_period=_non_negative(entry, "credits_per_period", where),
                credits_rollover_cap=_non_negative(entry, "credits_rollover_cap", where),
            )
        )
    codes = [p.code for p in plans]
    if len(codes) != len(set(codes)):
        raise ConfigurationError(f"{source}: plan codes must be unique")
    return Catalog(plans=tuple(plans), credits=parse_credit_catalog(data, source=source))


_parsed: dict[tuple[str, float], Catalog] = {}


def read_catalog_file(settings: Settings) -> Catalog:
    """The catalog file (BILLFOLD_CATALOG_FILE) or the embedded default, before overrides.
    Parsed once per file version (path and modification time)."""
    if settings.catalog_file is not None:
        path = Path(settings.catalog_file)
        if not path.is_file():
            raise ConfigurationError(f"BILLFOLD_CATALOG_FILE {str(path)!r} does not exist")
        key = (str(path.resolve()), path.stat().st_mtime)
    else:
        key = ("default", 0.0)
    if key not in _parsed:
        _parsed[key] = _parse_catalog_file(settings)
    return _parsed[key]


def _parse_catalog_file(settings: Settings) -> Catalog:
    if settings.catalog_file is not None:
        path = Path(settings.catalog_file)
        text, source = path.read_text(), str(path)
    else:
        text = resources.files("billfold.catalog").joinpath("default_catalog.toml").read_text()
        source = "default catalog"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{source} is not valid TOML: {exc}") from exc
    return parse_catalog(data, source=source)


def _pin(catalog: Catalog, code: str, interval: str, currency: str, price_id: str) -> Catalog:
    """Give `code`/`interval`/`currency` the Stripe price `price_id` (adding what is missing)."""
    plans = list(catalog.plans)
    index = next((i for i, p in enumerate(plans) if p.code == code), None)
    if index is None:
        plans.append(
            Plan(
                code=code,
                name=code.replace("_", " ").title(),
                description="",
                features=(),
                trial_days=0,
                display_order=len(plans) + 1,
                active=True,
            )
        )
        index = len(plans) - 1
    plan = plans[index]
    prices = list(plan.prices)
    matches = [i for i, p in enumerate(prices) if p.interval == interval and p.currency == currency]
    if matches:
        prices[matches[0]] = replace(prices[matches[0]], stripe_price_id=price_id, pinned=True)
    else:
        prices.append(
            PlanPrice(
                plan_code=code,
                interval=interval,
                currency=currency,
                amount=None,
                lookup_key=_lookup_key(code, interval, currency),
                stripe_price_id=price_id,
                pinned=True,
            )
        )
    plans[index] = replace(plan, prices=tuple(prices))
    return replace(catalog, plans=tuple(plans))


def apply_environment(catalog: Catalog, settings: Settings) -> Catalog:
    """Pin the price ids the seeds' variables name (in the default currency)."""
    currency = settings.stripe_default_currency
    if settings.stripe_premium_monthly_price_id:
        catalog = _pin(
            catalog, "premium", "monthly", currency, settings.stripe_premium_monthly_price_id
        )
    if settings.stripe_premium_yearly_price_id:
        catalog = _pin(
            catalog, "premium", "yearly", currency, settings.stripe_premium_yearly_price_id
        )
    # STRIPE_PRICE_IDS: {"pro": "price_..."} or {"pro_yearly": ...} or {"pro:yearly": ...}.
    for key, price_id in settings.stripe_price_ids.items():
        code, interval = key.lower(), "monthly"
        for sep in (":", "_"):
            head, _, tail = code.rpartition(sep)
            if head and tail in STRIPE_INTERVAL:
                code, interval = head, tail
                break
        if not _CODE.match(code):
            raise ConfigurationError(f"STRIPE_PRICE_IDS: {key!r} is not a plan code")
        catalog = _pin(catalog, code, interval, currency, str(price_id))
    return catalog


def apply_links(catalog: Catalog, links: Mapping[str, str]) -> Catalog:
    """Fill prices that have no pinned Stripe id with the ones `catalog sync` created."""
    plans = []
    for plan in catalog.plans:
        prices = tuple(
            replace(p, stripe_price_id=links[p.lookup_key])
            if p.stripe_price_id is None and p.lookup_key in links
            else p
            for p in plan.prices
        )
        plans.append(replace(plan, prices=prices))
    return replace(catalog, plans=tuple(plans))


async def load_catalog(session: AsyncSession, settings: Settings) -> Catalog:
    """The catalog billfold sells from: file (or default), environment, then synced prices."""
    catalog = apply_environment(read_catalog_file(settings), settings)
    rows = (await session.execute(select(CatalogPriceLink))).scalars().all()
    return apply_links(catalog, {row.lookup_key: row.stripe_price_id for row in rows})


def resolve_price(
    catalog: Catalog,
    *,
    price_id: str | None = None,
    plan: str | None = None,
    interval: str | None = None,
    currency: str | None = None,
) -> tuple[Plan, PlanPrice]:
    """The purchasable price a request names (a Stripe price id, a lookup key, or a plan code
    with an interval); ValidationFailed when the catalog does not sell it."""
    if interval is not None and interval not in STRIPE_INTERVAL:
        raise ValidationFailed("interval must be monthly or yearly", field="interval")
    found: tuple[Plan, PlanPrice] | None = None
    if price_id:
        found = catalog.find_price(price_id)
        if found is None:
            # A Stripe product id (document 000's productId) or a plan code.
            by_product = next(
                (p for p in catalog.plans if price_id in (p.product_id, p.code)), None
            )
            if by_product is not None:
                found = catalog.price_for(by_product.code, interval or "monthly", currency) or (
                    catalog.price_for(by_product.code, interval or "monthly", None)
                )
        if found is None:
            raise ValidationFailed(f"unknown price {price_id!r}", field="price_id")
        if interval is not None and found[1].interval != interval:
            raise ValidationFailed(
                f"price {price_id!r} is billed {found[1].interval}, not {interval}",
                field="interval",
            )
    elif plan:
        found = catalog.price_for(plan, interval or "monthly", currency) or catalog.price_for(
            plan, interval or "monthly", None
        )
        if found is None:
            raise ValidationFailed(f"unknown plan {plan!r}", field="plan")
    else:
        raise ValidationFailed("price_id is required", field="price_id")
    if not found[0].active:
        raise ValidationFailed(f"plan {found[0].code!r} is no longer sold", field="price_id")
    if not found[1].stripe_price_id:
        raise ValidationFailed(
            f"plan {found[0].code!r} ({found[1].interval}, {found[1].currency}) has no Stripe "
            "price yet: run `billfold catalog sync`",
            field="price_id",
        )
    return found


# --- sync to Stripe ------------------------------------------------------------------------


@dataclass
class SyncReport:
    products_created: int = 0
    products_updated: int = 0
    products_unchanged: int = 0
    prices_created: int = 0
    prices_unchanged: int = 0
    prices_pinned: int = 0
    lines: list[str] = field(default_factory=list)
    # Credit packages: a product each and a one-time price per currency (counted apart).
    package_prices_created: int = 0
    package_prices_unchanged: int = 0

    @property
    def changed(self) -> bool:
        """Whether the sync created or updated anything in Stripe."""
        return bool(
            self.products_created
            or self.products_updated
            or self.prices_created
            or self.package_prices_created
        )

    def summary(self) -> str:
        """One line for the CLI: what changed, or that nothing did."""
        counts = (
            f"products: {self.products_created} created, {self.products_updated} updated, "
            f"{self.products_unchanged} unchanged; prices: {self.prices_created} created, "
            f"{self.prices_unchanged} unchanged, {self.prices_pinned} pinned by the environment"
        )
        if self.package_prices_created or self.package_prices_unchanged:
            counts += (
                f"; credit package prices: {self.package_prices_created} created, "
                f"{self.package_prices_unchanged} unchanged"
            )
        return counts if self.changed else f"nothing changed ({counts})"


async def sync_catalog(
    session: AsyncSession,
    gateway: StripeGateway,
    catalog: Catalog,
    *,
    clock: Clock,
    on_step: Callable[[str], None] | None = None,
) -> SyncReport:
    """Create or update the Stripe product of every plan and a price for every catalog price,
    found by lookup key; safe to run again (it changes only what differs). Prices pinned to an
    existing Stripe id are left alone. Records which price each lookup key points to."""
    report = SyncReport()
    step = on_step or (lambda _line: None)
    for plan in catalog.plans:
        existing = await gateway.catalog.retrieve_product(plan.product_id)
        metadata = {"billfold_plan": plan.code}
        if (
            existing is not None
            and existing.name == plan.name
            and (existing.description or None) == (plan.description or None)
            and existing.active == plan.active
            and all(existing.metadata.get(k) == v for k, v in metadata.items())
        ):
            report.products_unchanged += 1
        else:
            await gateway.catalog.upsert_product(
                plan.product_id,
                name=plan.name,
                description=plan.description or None,
                active=plan.active,
                metadata=metadata,
            )
            if existing is None:
                report.products_created += 1
            else:
                report.products_updated += 1
        step(f"product {plan.product_id}")
        to_sync = [p for p in plan.prices if p.amount is not None and not p.pinned]
        current = {
            p.lookup_key: p
            for p in await gateway.catalog.prices_by_lookup_keys([p.lookup_key for p in to_sync])
        }
        for price in plan.prices:
            if price.amount is None or price.pinned:
                report.prices_pinned += 1
                step(f"price {price.lookup_key} (pinned to {price.stripe_price_id})")
                continue
            found = current.get(price.lookup_key)
            if (
                found is not None
                and found.active
                and found.product_id == plan.product_id
                and found.unit_amount == price.amount
                and found.currency == price.currency
                and found.interval == price.stripe_interval
            ):
                report.prices_unchanged += 1
                stripe_price = found
            else:
                # Prices are immutable: a changed amount is a new price taking over the key.
                stripe_price = await gateway.catalog.create_price(
                    product_id=plan.product_id,
                    currency=price.currency,
                    unit_amount=price.amount,
                    interval=price.stripe_interval,
                    lookup_key=price.lookup_key,
                    nickname=price.name or f"{plan.name} {price.interval}",
                    idempotency_key=(
                        f"billfold-price-{price.lookup_key}-{price.amount}-{price.currency}"
                        f"-{price.stripe_interval}-{found.id if found else 'new'}"
                    ),
                )
                if found is not None and found.active and found.id != stripe_price.id:
                    await gateway.catalog.set_price_active(found.id, False)
                report.prices_created += 1
            await _record_link(
                session, price.lookup_key, stripe_price.id, plan.product_id, clock.now()
            )
            step(f"price {price.lookup_key} -> {stripe_price.id}")
    if catalog.credits is not None:
        await _sync_credit_packages(session, gateway, catalog.credits, report, step, clock)
    return report


async def _sync_credit_packages(
    session: AsyncSession,
    gateway: StripeGateway,
    credits: CreditCatalog,
    report: SyncReport,
    step: Callable[[str], None],
    clock: Clock,
) -> None:
    """A product per credit package and a one-time price per currency, by lookup key
    (`billfold_credits_<id>_<currency>`), as for the plans' prices."""
    for package in credits.packages:
        existing = await gateway.catalog.retrieve_product(package.product_id)
        metadata = {"billfold_credit_package": package.id, "credits": str(package.credits)}
        if (
            existing is None
            or existing.name != package.name
            or (existing.description or None) != (package.description or None)
            or not existing.active
        ):
            await gateway.catalog.upsert_product(
                package.product_id,
                name=package.name,
                description=package.description or None,
                active=True,
                metadata=metadata,
            )
        keys = [package.lookup_key(c) for c in package.prices]
        current = {p.lookup_key: p for p in await gateway.catalog.prices_by_lookup_keys(keys)}
        for currency, amount in sorted(package.prices.items()):
            key = package.lookup_key(currency)
            found = current.get(key)
            if (
                found is not None
                and found.active
                and found.product_id == package.product_id
                and found.unit_amount == amount
                and found.currency == currency
                and found.interval is None
            ):
                report.package_prices_unchanged += 1
                stripe_price = found
            else:
                stripe_price = await gateway.catalog.create_price(
                    product_id=package.product_id,
                    currency=currency,
                    unit_amount=amount,
                    interval=None,
                    lookup_key=key,
                    nickname=f"{package.name} ({package.credits} credits)",
                    idempotency_key=(
                        f"billfold-price-{key}-{amount}-once-{found.id if found else 'new'}"
                    ),
                )
                if found is not None and found.active and found.id != stripe_price.id:
                    await gateway.catalog.set_price_active(found.id, False)
                report.package_prices_created += 1
            await _record_link(session, key, stripe_price.id, package.product_id, clock.now())
            step(f"price {key} -> {stripe_price.id}")


async def _record_link(
    session: AsyncSession, lookup_key: str, price_id: str, product_id: str, now: datetime
) -> None:
    existing = await session.get(CatalogPriceLink, lookup_key)
    if existing is None:
        await insert_ignoring_conflict(
            session,
            CatalogPriceLink.__table__,  # type: ignore[arg-type]
            {
                "lookup_key": lookup_key,
                "stripe_price_id": price_id,
                "stripe_product_id": product_id,
                "synced_at": now,
            },
            ["lookup_key"],
        )
        existing = await session.get(CatalogPriceLink, lookup_key, populate_existing=True)
    if existing is not None and (
        existing.stripe_price_id != price_id or existing.stripe_product_id != product_id
    ):
        existing.stripe_price_id = price_id
        existing.stripe_product_id = product_id
        existing.synced_at = now
    await session.flush()


def sync_steps(catalog: Catalog) -> int:
    """How many progress steps `sync_catalog` reports (for a progress bar)."""
    packages = catalog.credits.packages if catalog.credits is not None else ()
    return sum(1 + len(plan.prices) for plan in catalog.plans) + sum(
        len(p.prices) for p in packages
    )
