"""The credit routes' parameters (`api/params.py`), as the API and the panel read them: whole
numbers from JSON or text, and the currency of a price (asked, then the account's setting,
then the catalog's default); each refusal names the field."""

from __future__ import annotations

from typing import Any

import pytest

from billfold.api.params import credit_currency, int_param
from billfold.catalog.credits import read_credit_catalog
from billfold.config import Settings
from billfold.customers.models import BillingAccount
from billfold.errors import ValidationFailed


def test_whole_numbers_from_json_or_text() -> None:
    assert int_param(7, "credits") == 7
    assert int_param(" 12 ", "credits") == 12
    assert int_param("-3", "page") == -3
    assert int_param(None, "page", default=1) == 1
    for value in (None, True, 1.5, "1.5", "²", "", "1e3", "9" * 19, [1]):
        with pytest.raises(ValidationFailed) as refused:
            int_param(value, "credits")
        assert refused.value.field == "credits", value


@pytest.mark.parametrize(
    ("asked", "setting", "expected"),
    [("USD", None, "usd"), (None, {"currency": "USD"}, "usd"), (None, None, None)],
)
def test_the_currency_asked_then_the_setting_then_the_default(
    asked: Any, setting: Any, expected: str | None
) -> None:
    catalog = read_credit_catalog(Settings())
    account = BillingAccount(settings=setting)
    assert credit_currency(catalog, account, asked) == (expected or catalog.default_currency)
    for bad in ("", "  ", "gbp"):
        with pytest.raises(ValidationFailed) as refused:
            credit_currency(catalog, account, bad)
        assert refused.value.field == "currency"
