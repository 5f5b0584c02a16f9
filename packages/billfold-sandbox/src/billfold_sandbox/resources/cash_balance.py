"""The customer cash balance: `/v1/customers/{customer}/cash_balance` (retrieve, update its
reconciliation settings), `/v1/customers/{customer}/cash_balance_transactions` (list, retrieve)
`/v1/customers/{customer}/funding_instructions` (the bank account a customer sends transfers to,
the same for a customer and transfer type every time) and the test helper
`/v1/test_helpers/customers/{customer}/fund_cash_balance` (a bank transfer
received: a `funded` transaction, `customer_cash_balance_transaction.created`,
`cash_balance.funds_available`).

Simplified: funds stay in the cash balance (no automatic reconciliation against open invoices or
PaymentIntents, no refunds or returns), so `funded` is the only transaction type.
"""

from __future__ import annotations

import hashlib
from typing import Any

from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import array, enum, integer, obj, string
from billfold_sandbox.resources.nested import require_nested
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

CASH_BALANCE_TRANSACTION = "customer_cash_balance_transaction"
# Bank transfers Stripe takes, by currency, and how it names them.
TRANSFER_TYPES = {
    "usd": "us_bank_transfer",
    "eur": "eu_bank_transfer",
    "gbp": "gb_bank_transfer",
    "jpy": "jp_bank_transfer",
    "mxn": "mx_bank_transfer",
}

UPDATE = {
    "settings": obj(
        {"reconciliation_mode": enum("automatic", "manual", "merchant_default")},
    )
}
FUND = {
    "amount": integer(required=True, min=1),
    "currency": string(required=True),
    "reference": string(max_length=140),
}

FUNDING = {
    "bank_transfer": obj(
        {
            "type": enum(*TRANSFER_TYPES.values(), required=True),
            "eu_bank_transfer": obj({"country": string(required=True)}),
            "requested_address_types": array(
                enum("aba", "iban", "sort_code", "spei", "swift", "zengin")
            ),
        },
        required=True,
    ),
    "currency": string(required=True),
    "funding_type": enum("bank_transfer", required=True),
}
EU_TRANSFER_COUNTRIES = ("BE", "DE", "ES", "FR", "IE", "NL")


def _state_of(customer: StripeObject) -> dict[str, Any]:
    return dict(
        customer.get("_cash_balance")
        or {"available": {}, "reconciliation_mode": "automatic", "using_merchant_default": True}
    )


def _view(customer: StripeObject) -> StripeObject:
    """The `cash_balance` object of a customer."""
    cash = _state_of(customer)
    return {
        "object": "cash_balance",
        "available": dict(cash["available"]) or None,
        "customer": customer["id"],
        "customer_account": None,
        "livemode": False,
        "settings": {
            "reconciliation_mode": cash["reconciliation_mode"],
            "using_merchant_default": cash["using_merchant_default"],
        },
    }


@router.get("/v1/customers/{customer}/cash_balance")
def retrieve_cash_balance(call: Call) -> StripeObject:
    return _view(call.require("customer", call.path["customer"], param="customer"))


@router.post("/v1/customers/{customer}/cash_balance", UPDATE)
def update_cash_balance(call: Call) -> StripeObject:
    customer = call.require("customer", call.path["customer"], param="customer")
    mode = (call.params.get("settings") or {}).get("reconciliation_mode")
    if mode is not None:
        cash = _state_of(customer)
        cash["using_merchant_default"] = mode == "merchant_default"
        cash["reconciliation_mode"] = "automatic" if mode == "merchant_default" else mode
        call.state.update(customer, {"_cash_balance": cash})
    return _view(customer)


def _transactions(call: Call, customer_id: str) -> list[StripeObject]:
    return [
        t
        for t in call.state.all(CASH_BALANCE_TRANSACTION, newest_first=True)
        if t["customer"] == customer_id
    ]


@router.get("/v1/customers/{customer}/cash_balance_transactions", list=True)
def list_cash_balance_transactions(call: Call) -> StripeObject:
    customer = call.require("customer", call.path["customer"], param="customer")
    return call.list_response(_transactions(call, customer["id"]))


@router.get("/v1/customers/{customer}/cash_balance_transactions/{transaction}")
def retrieve_cash_balance_transaction(call: Call) -> StripeObject:
    return require_nested(
        call, ("customer", "customer"), (CASH_BALANCE_TRANSACTION, "transaction"), "customer"
    )


@router.post("/v1/test_helpers/customers/{customer}/fund_cash_balance", FUND)
def fund_cash_balance(call: Call) -> StripeObject:
    """A bank transfer from the customer arrives in their cash balance."""
    customer = call.require("customer", call.path["customer"], param="customer")
    p = call.params
    currency = p["currency"].lower()
    if currency not in TRANSFER_TYPES:
        raise invalid_request(
            f"Cash balances are not supported in {currency}; use one of "
            f"{', '.join(sorted(TRANSFER_TYPES))}.",
            param="currency",
        )
    cash = _state_of(customer)
    available = dict(cash["available"])
    available[currency] = int(available.get(currency, 0)) + p["amount"]
    cash["available"] = available
    kind = TRANSFER_TYPES[currency]
    details: dict[str, Any] = {"reference": p.get("reference"), "type": kind}
    details[kind] = (
        {"network": "ach", "sender_name": customer.get("name")}
        if kind == "us_bank_transfer"
        else {"sender_name": customer.get("name")}
    )
    txn: StripeObject = {
        "id": call.state.new_id("ccsbtxn"),
        "object": CASH_BALANCE_TRANSACTION,
        "created": call.state.now_for(customer["id"]),
        "currency": currency,
        "customer": customer["id"],
        "customer_account": None,
        "ending_balance": available[currency],
        "funded": {"bank_transfer": details},
        "livemode": False,
        "net_amount": p["amount"],
        "type": "funded",
    }
    call.state.insert(txn)
    call.state.update(customer, {"_cash_balance": cash})
    call.emit("customer_cash_balance_transaction.created", txn)
    call.emit("cash_balance.funds_available", _view(customer))
    return txn


def _digits(seed: str, count: int) -> str:
    """Stable digits for a customer's virtual bank account."""
    number = int(hashlib.sha256(seed.encode()).hexdigest(), 16)
    return str(number)[-count:].rjust(count, "0")


def _financial_address(kind: str, customer: StripeObject, country: str) -> dict[str, Any]:
    seed = f"{customer['id']}|{kind}"
    holder = "Billfold Sandbox Payments"
    if kind == "us_bank_transfer":
        return {
            "aba": {
                "account_holder_address": None,
                "account_holder_name": holder,
                "account_number": _digits(seed, 12),
                "account_type": "checking",
                "bank_address": None,
                "bank_name": "STRIPE TEST BANK",
                "routing_number": "110000000",
            },
            "supported_networks": ["ach", "domestic_wire_us"],
            "type": "aba",
        }
    if kind == "eu_bank_transfer":
        return {
            "iban": {
                "account_holder_address": None,
                "account_holder_name": holder,
                "bank_address": None,
                "bic": "SXPYDEHH",
                "country": country,
                "iban": f"{country}00SXPY{_digits(seed, 14)}",
            },
            "supported_networks": ["sepa"],
            "type": "iban",
        }
    if kind == "gb_bank_transfer":
        return {
            "sort_code": {
                "account_holder_address": None,
                "account_holder_name": holder,
                "account_number": _digits(seed, 8),
                "bank_address": None,
                "sort_code": "040075",
            },
            "supported_networks": ["bacs", "fps"],
            "type": "sort_code",
        }
    if kind == "jp_bank_transfer":
        return {
            "supported_networks": ["zengin"],
            "type": "zengin",
            "zengin": {
                "account_holder_address": None,
                "account_holder_name": holder,
                "account_number": _digits(seed, 7),
                "account_type": "futsu",
                "bank_address": None,
                "bank_code": "0009",
                "bank_name": "STRIPE TEST BANK",
                "branch_code": "950",
                "branch_name": "TEST",
            },
        }
    return {
        "spei": {
            "account_holder_address": None,
            "account_holder_name": holder,
            "bank_address": None,
            "bank_code": "002",
            "bank_name": "STRIPE TEST BANK",
            "clabe": "002" + _digits(seed, 15),
        },
        "supported_networks": ["spei"],
        "type": "spei",
    }


@router.post("/v1/customers/{customer}/funding_instructions", FUNDING)
def create_funding_instructions(call: Call) -> StripeObject:
    """Where the customer sends bank transfers (their virtual account; stable)."""
    customer = call.require("customer", call.path["customer"], param="customer")
    p = call.params
    transfer = p["bank_transfer"]
    kind = transfer["type"]
    currency = p["currency"].lower()
    if TRANSFER_TYPES.get(currency) != kind:
        raise invalid_request(
            f"The currency {currency} is not supported for bank_transfer[type]={kind}.",
            param="currency",
        )
    country = {"us_bank_transfer": "US", "gb_bank_transfer": "GB", "jp_bank_transfer": "JP"}.get(
        kind, "MX"
    )
    if kind == "eu_bank_transfer":
        if not transfer.get("eu_bank_transfer"):
            raise invalid_request(
                "Missing required param: bank_transfer[eu_bank_transfer][country].",
                param="bank_transfer[eu_bank_transfer][country]",
                code="parameter_missing",
            )
        country = transfer["eu_bank_transfer"]["country"].upper()
        if country not in EU_TRANSFER_COUNTRIES:
            raise invalid_request(
                f"Invalid country: must be one of {', '.join(EU_TRANSFER_COUNTRIES)}",
                param="bank_transfer[eu_bank_transfer][country]",
            )
    return {
        "object": "funding_instructions",
        "bank_transfer": {
            "country": country,
            "financial_addresses": [_financial_address(kind, customer, country)],
            "type": kind,
        },
        "currency": currency,
        "funding_type": "bank_transfer",
        "livemode": False,
    }
