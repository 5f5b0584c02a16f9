"""Currencies, minor units and display: the one place billfold knows how money is written.

Below the API, money is an integer of minor units plus a lower-case ISO 4217 code (`699`,
`"usd"`). What a minor unit is follows Stripe, not ISO: Stripe counts the zero-decimal
currencies (JPY, KRW, ...) in whole units and the three-decimal ones (BHD, KWD, ...) in
thousandths; every other currency in hundredths. Conversions use `Decimal` and are exact: an
amount with more digits than the currency has is refused, never rounded. Display strings come
from Babel (CLDR), so symbols, separators and their order follow the locale.

The Stripe sandbox (`billfold_sandbox`) keeps its own small table: it imports nothing of billfold.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from babel.numbers import format_currency

# Stripe's presentment currencies (https://docs.stripe.com/currencies).
SUPPORTED_CURRENCIES: frozenset[str] = frozenset(
    """
    usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp
    byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip
    gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt
    lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr
    nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd
    std szl thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xof xpf yer zar
    zmw
    """.split()
)

# Stripe's zero-decimal currencies: `amount=500` in JPY is 500 yen.
ZERO_DECIMAL_CURRENCIES: frozenset[str] = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
# Stripe's three-decimal currencies: `amount=5120` in KWD is 5.120 dinars.
THREE_DECIMAL_CURRENCIES: frozenset[str] = frozenset("bhd jod kwd omr tnd".split())


class UnknownCurrency(ValueError):
    """A currency code billfold (Stripe) does not take."""


class InexactAmount(ValueError):
    """A major amount with more fractional digits than its currency's minor unit."""


def normalize_currency(currency: str) -> str:
    """The lower-case ISO code (`"EUR"` -> `"eur"`); UnknownCurrency for one Stripe lacks."""
    code = currency.strip().lower()
    if code not in SUPPORTED_CURRENCIES:
        raise UnknownCurrency(f"unsupported currency {currency!r}")
    return code


def minor_unit_exponent(currency: str) -> int:
    """How many decimal digits a minor unit has in Stripe: 0 (JPY), 3 (KWD) or 2."""
    code = normalize_currency(currency)
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def is_zero_decimal(currency: str) -> bool:
    """True for the currencies Stripe counts in whole units (JPY, KRW, ...)."""
    return minor_unit_exponent(currency) == 0


def to_major(minor: int, currency: str) -> Decimal:
    """Minor units as an exact major amount: `699, "usd"` -> `Decimal("6.99")`."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError("minor units are an int")
    return Decimal(minor).scaleb(-minor_unit_exponent(currency))


def to_minor(major: Decimal | int | str, currency: str) -> int:
    """A major amount as minor units: `"6.99", "usd"` -> `699`. Exact or InexactAmount
    (`"6.999"` in USD); floats are refused, they cannot say 6.99 exactly."""
    if isinstance(major, float | bool):
        raise TypeError("give a Decimal, an int or a string, not a float")
    try:
        value = Decimal(major)
    except InvalidOperation as exc:
        raise InexactAmount(f"{major!r} is not an amount") from exc
    if not value.is_finite():
        raise InexactAmount(f"{major!r} is not an amount")
    scaled = value.scaleb(minor_unit_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise InexactAmount(f"{major} {currency.upper()} has more digits than its minor unit")
    return int(scaled)


def format_money(minor: int, currency: str, locale: str = "en") -> str:
    """Minor units for display in a locale: `699, "usd"` -> `"$6.99"` (en), `"6,99 $"` (de)."""
    return format_currency(to_major(minor, currency), currency.upper(), locale=locale)
