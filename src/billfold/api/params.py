"""Parameters of the credit routes, as both dialects read them: `api/credits.py` (JSON and the
query) and the panel's `web/credits.py` (forms). Each refusal is a ValidationFailed naming the
field (a 400), never a 500."""

from __future__ import annotations

import re
from typing import Any

from billfold.catalog.credits import CreditCatalog
from billfold.customers.models import BillingAccount
from billfold.errors import ValidationFailed

# ASCII digits only: str.isdigit() also admits '²' and other digits int() refuses.
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")


def int_param(value: Any, field: str, *, default: int | None = None) -> int:
    """A whole number given as a JSON integer or as text (a query, a form field); `default`
    when it is absent (required when there is none)."""
    if value is None:
        if default is None:
            raise ValidationFailed(f"{field} is required", field=field)
        return default
    if isinstance(value, bool):
        raise ValidationFailed(f"{field} must be a whole number", field=field)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value.strip()):
        return int(value.strip())
    raise ValidationFailed(f"{field} must be a whole number", field=field)


def credit_currency(catalog: CreditCatalog, account: BillingAccount, asked: str | None) -> str:
    """The currency of a credit price (document 001): the one asked for, then the account's
    setting, then the catalog's default."""
    return credit_currency_of(catalog, account.settings, asked)


def credit_currency_of(
    catalog: CreditCatalog, settings: dict[str, Any] | None, asked: str | None
) -> str:
    """`credit_currency` from the account's settings alone (a hot read has no account object)."""
    if asked is not None:
        if not isinstance(asked, str) or not asked.strip():
            raise ValidationFailed("currency must be EUR or USD", field="currency")
        return catalog.check_currency(asked)
    setting = (settings or {}).get("currency")
    if isinstance(setting, str) and setting.strip().lower() in catalog.currencies:
        return setting.strip().lower()
    return catalog.default_currency
