"""billfold.money: exact major <-> minor conversions for every currency, and locale display."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billfold import money

CURRENCIES = sorted(money.SUPPORTED_CURRENCIES)


@pytest.mark.parametrize("currency", CURRENCIES)
@settings(max_examples=25)
@given(minor=st.integers(-(10**15), 10**15))
def test_minor_to_major_and_back_is_exact(currency: str, minor: int) -> None:
    major = money.to_major(minor, currency)
    assert money.to_minor(major, currency) == minor
    assert money.to_minor(str(major), currency) == minor


@given(
    currency=st.sampled_from(CURRENCIES),
    major=st.decimals(min_value=-(10**9), max_value=10**9, places=3, allow_nan=False),
)
def test_major_to_minor_is_exact_or_refused(currency: str, major: Decimal) -> None:
    exponent = money.minor_unit_exponent(currency)
    if major == major.quantize(Decimal(1).scaleb(-exponent)):
        assert money.to_major(money.to_minor(major, currency), currency) == major
    else:
        with pytest.raises(money.InexactAmount):
            money.to_minor(major, currency)


def test_stripe_minor_units() -> None:
    assert money.minor_unit_exponent("USD") == 2
    assert money.minor_unit_exponent("jpy") == 0 and money.is_zero_decimal("krw")
    assert money.minor_unit_exponent("kwd") == 3
    assert money.to_minor("6.99", "usd") == 699
    assert money.to_minor(500, "jpy") == 500
    assert money.to_major(5120, "kwd") == Decimal("5.120")


def test_refusals() -> None:
    with pytest.raises(money.UnknownCurrency):
        money.normalize_currency("xyz")
    with pytest.raises(TypeError):
        money.to_minor(6.99, "usd")  # type: ignore[arg-type]
    with pytest.raises(money.InexactAmount):
        money.to_minor("1.5", "jpy")
    with pytest.raises(money.InexactAmount):
        money.to_minor("NaN", "usd")


NBSP, NNBSP = "\xa0", "\u202f"


@pytest.mark.parametrize(
    ("locale", "currency", "minor", "shown"),
    [
        ("en", "usd", 123450, "$1,234.50"),
        ("en", "eur", 123450, "€1,234.50"),
        ("en", "jpy", 1234, "¥1,234"),
        ("de", "usd", 123450, f"1.234,50{NBSP}$"),
        ("de", "eur", 123450, f"1.234,50{NBSP}€"),
        ("de", "jpy", 1234, f"1.234{NBSP}¥"),
        ("fr", "usd", 123450, f"1{NNBSP}234,50{NBSP}$US"),
        ("fr", "eur", 123450, f"1{NNBSP}234,50{NBSP}€"),
        ("fr", "jpy", 1234, f"1{NNBSP}234{NBSP}JPY"),
        ("en", "usd", -699, "-$6.99"),
    ],
)
def test_format_money(locale: str, currency: str, minor: int, shown: str) -> None:
    assert money.format_money(minor, currency, locale) == shown
