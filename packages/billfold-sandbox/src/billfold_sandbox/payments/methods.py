"""PaymentMethods: built from test card numbers, Stripe's test ids and test bank accounts.

A PaymentMethod keeps what decides its outcomes in private keys: `_card` (the test number
behind a card), `_bank_account` (the account number), `_verified` (a bank account whose
microdeposits were verified, or one of Stripe's test tokens) and `_set_up` (a card set up for
off-session use, so `4000002500003155` stops asking for authentication off-session).
"""

from __future__ import annotations

import re
import time
import weakref
from typing import Any

from billfold_sandbox.errors import StripeError, card_error, invalid_request, resource_missing
from billfold_sandbox.params import (
    Field,
    anything,
    enum,
    integer,
    metadata,
    obj,
    string,
)
from billfold_sandbox.payments.instruments import (
    LIVE_CARD_IN_TEST_MODE,
    TEST_BANK_ACCOUNTS,
    TEST_BANK_NAME,
    TEST_BANK_TOKENS,
    TEST_CARDS,
    TEST_ROUTING_NUMBER,
    StripeTestBankAccount,
    StripeTestCard,
    card_for_test_id,
    fingerprint_of,
    luhn_valid,
)
from billfold_sandbox.state import SandboxState, StripeObject, current_request

PAYMENT_METHOD = "payment_method"
SUPPORTED_TYPES = ("card", "us_bank_account")

_ADDRESS = obj(
    {
        "city": string(nullable=True),
        "country": string(nullable=True),
        "line1": string(nullable=True),
        "line2": string(nullable=True),
        "postal_code": string(nullable=True),
        "state": string(nullable=True),
    },
    nullable=True,
)
BILLING_DETAILS = obj(
    {
        "address": _ADDRESS,
        "email": string(nullable=True),
        "name": string(nullable=True),
        "phone": string(nullable=True),
        "tax_id": string(nullable=True),
    }
)
CARD_DETAILS = obj(
    {
        "number": string(),
        "exp_month": integer(),
        "exp_year": integer(),
        "cvc": string(),
        "token": string(),
        "networks": anything(),
    }
)
US_BANK_ACCOUNT_DETAILS = obj(
    {
        "account_holder_type": enum("individual", "company"),
        "account_number": string(),
        "account_type": enum("checking", "savings"),
        "routing_number": string(),
        "financial_connections_account": string(),
    }
)
# `payment_method_data` on intents and the body of POST /v1/payment_methods share these.
PAYMENT_METHOD_DATA: dict[str, Field] = {
    "type": string(required=True),
    "card": CARD_DETAILS,
    "us_bank_account": US_BANK_ACCOUNT_DETAILS,
    "billing_details": BILLING_DETAILS,
    "metadata": metadata(),
    "allow_redisplay": enum("always", "limited", "unspecified"),
}

_EMPTY_ADDRESS = {
    "city": None,
    "country": None,
    "line1": None,
    "line2": None,
    "postal_code": None,
    "state": None,
}
_DISPLAY_BRAND = {"amex": "american_express", "diners": "diners_club"}


def billing_details(given: dict[str, Any] | None, current: dict[str, Any] | None = None) -> Any:
    """Stripe's billing_details object, every key present, merged over `current`."""
    details: dict[str, Any] = dict(
        current
        or {
            "address": dict(_EMPTY_ADDRESS),
            "email": None,
            "name": None,
            "phone": None,
            "tax_id": None,
        }
    )
    for key, value in (given or {}).items():
        if key == "address":
            details["address"] = {
                **_EMPTY_ADDRESS,
                **(details.get("address") or {}),
                **(value or {}),
            }
        else:
            details[key] = value
    return details


def _base_object(
    state: SandboxState, kind: str, customer: str | None, given: dict[str, Any]
) -> StripeObject:
    from billfold_sandbox.params import apply_metadata

    return {
        "id": state.new_id("pm"),
        "object": PAYMENT_METHOD,
        "allow_redisplay": given.get("allow_redisplay", "unspecified"),
        "billing_details": billing_details(given.get("billing_details")),
        "created": state.now_for(customer),
        "customer": customer,
        "customer_account": None,
        "livemode": False,
        "metadata": apply_metadata({}, given.get("metadata", {})),
        "type": kind,
    }


def card_payment_method(
    state: SandboxState,
    card: StripeTestCard,
    *,
    exp_month: int,
    exp_year: int,
    cvc_given: bool = False,
    given: dict[str, Any] | None = None,
) -> StripeObject:
    """Store a new card PaymentMethod backed by a test card."""
    pm = _base_object(state, "card", None, given or {})
    pm["card"] = {
        "brand": card.brand,
        "checks": {
            "address_line1_check": None,
            "address_postal_code_check": None,
            "cvc_check": "pass" if cvc_given else None,
        },
        "country": card.country,
        "display_brand": _DISPLAY_BRAND.get(card.brand, card.brand),
        "exp_month": exp_month,
        "exp_year": exp_year,
        "fingerprint": card.fingerprint,
        "funding": card.funding,
        "generated_from": None,
        "last4": card.last4,
        "networks": {"available": [card.brand], "preferred": None},
        "regulated_status": "unregulated",
        "three_d_secure_usage": {"supported": card.three_d_secure_supported},
        "wallet": None,
    }
    pm["_card"] = card.number
    pm["_set_up"] = False
    state.insert(pm)
    return pm


def bank_payment_method(
    state: SandboxState,
    *,
    account_number: str,
    routing_number: str,
    account_holder_type: str = "individual",
    account_type: str = "checking",
    verified: bool,
    given: dict[str, Any] | None = None,
) -> StripeObject:
    """Store a new `us_bank_account` PaymentMethod (verified: usable without microdeposits)."""
    pm = _base_object(state, "us_bank_account", None, given or {})
    pm["us_bank_account"] = {
        "account_holder_type": account_holder_type,
        "account_type": account_type,
        "bank_name": TEST_BANK_NAME,
        "financial_connections_account": None,
        "fingerprint": fingerprint_of("us_bank_account", routing_number + account_number),
        "last4": account_number[-4:],
        "networks": {"preferred": "ach", "supported": ["ach"]},
        "routing_number": routing_number,
        "status_details": {},
    }
    pm["_bank_account"] = account_number
    pm["_verified"] = verified
    state.insert(pm)
    return pm


def _default_expiry(state: SandboxState) -> tuple[int, int]:
    year = time.gmtime(state.now()).tm_year
    return 12, year + 3


# Within one API request a test id names one PaymentMethod (Stripe's documented
# `customers.create(payment_method=pm_card_visa, invoice_settings[default_payment_method]=
# pm_card_visa)` attaches and defaults the same card): state -> (request id, test id -> pm id).
_per_request: weakref.WeakKeyDictionary[SandboxState, tuple[str, dict[str, str]]] = (
    weakref.WeakKeyDictionary()
)


def load_test_payment_method(state: SandboxState, pm_id: str) -> StripeObject | None:
    """`pm_card_visa`, `pm_usBankAccount_success`, ...: a fresh PaymentMethod on every use
    (on every API request: the same id twice in one request is the same PaymentMethod)."""
    request = current_request.get()
    if request is not None:
        request_id, made = _per_request.get(state, ("", {}))
        if request_id != request.id:
            made = {}
            _per_request[state] = (request.id, made)
        existing = state.find(made[pm_id]) if pm_id in made else None
        if existing is not None:
            return existing
        created = _new_test_payment_method(state, pm_id)
        if created is not None:
            made[pm_id] = created["id"]
        return created
    return _new_test_payment_method(state, pm_id)


def _new_test_payment_method(state: SandboxState, pm_id: str) -> StripeObject | None:
    card = card_for_test_id(pm_id) if pm_id.startswith("pm_card_") else None
    if card is not None:
        month, year = _default_expiry(state)
        return card_payment_method(state, card, exp_month=month, exp_year=year)
    account = TEST_BANK_TOKENS.get(pm_id)
    if account is not None:
        return bank_payment_method(
            state,
            account_number=account.account_number,
            routing_number=TEST_ROUTING_NUMBER,
            verified=True,
            given={"billing_details": {"name": "Jenny Rosen"}},
        )
    return None


def _card_from_details(
    state: SandboxState, details: dict[str, Any], given: dict[str, Any], prefix: str
) -> StripeObject:
    token = details.get("token")
    if token is not None:
        card = card_for_test_id(token) if token.startswith("tok_") else None
        if card is None:
            raise resource_missing("token", token, param=f"{prefix}[token]")
        month, year = _default_expiry(state)
        return card_payment_method(state, card, exp_month=month, exp_year=year, given=given)
    number = re.sub(r"[\s-]", "", details.get("number") or "")
    if not number:
        raise invalid_request(
            f"Missing required param: {prefix}[number].",
            param=f"{prefix}[number]",
            code="parameter_missing",
        )
    if not luhn_valid(number):
        raise card_error(
            "Your card number is incorrect.", code="incorrect_number", param=f"{prefix}[number]"
        )
    card = TEST_CARDS.get(number)
    if card is None:
        raise card_error(
            LIVE_CARD_IN_TEST_MODE.message,
            code=LIVE_CARD_IN_TEST_MODE.code,
            decline_code=LIVE_CARD_IN_TEST_MODE.decline_code,
            param=f"{prefix}[number]",
        )
    if "exp_month" not in details:
        raise invalid_request(
            f"Missing required param: {prefix}[exp_month].",
            param=f"{prefix}[exp_month]",
            code="parameter_missing",
        )
    if "exp_year" not in details:
        raise invalid_request(
            f"Missing required param: {prefix}[exp_year].",
            param=f"{prefix}[exp_year]",
            code="parameter_missing",
        )
    month, year = int(details["exp_month"]), int(details["exp_year"])
    if year < 100:
        year += 2000
    now = time.gmtime(state.now())
    if not 1 <= month <= 12:
        raise card_error(
            "Your card's expiration month is invalid.",
            code="invalid_expiry_month",
            param=f"{prefix}[exp_month]",
        )
    if year < now.tm_year or year > now.tm_year + 50:
        raise card_error(
            "Your card's expiration year is invalid.",
            code="invalid_expiry_year",
            param=f"{prefix}[exp_year]",
        )
    if year == now.tm_year and month < now.tm_mon:
        raise card_error(
            "Your card's expiration month is invalid.",
            code="invalid_expiry_month",
            param=f"{prefix}[exp_month]",
        )
    cvc = details.get("cvc")
    if cvc is not None and not re.fullmatch(r"\d{3,4}", cvc):
        raise card_error(
            "Your card's security code is invalid.", code="invalid_cvc", param=f"{prefix}[cvc]"
        )
    return card_payment_method(
        state, card, exp_month=month, exp_year=year, cvc_given=cvc is not None, given=given
    )


def _routing_number_valid(routing: str) -> bool:
    if not re.fullmatch(r"\d{9}", routing):
        return False
    weights = (3, 7, 1) * 3
    return sum(int(d) * w for d, w in zip(routing, weights, strict=True)) % 10 == 0


def _bank_from_details(
    state: SandboxState, details: dict[str, Any], given: dict[str, Any], prefix: str
) -> StripeObject:
    if details.get("financial_connections_account"):
        raise invalid_request(
            "The sandbox has no Financial Connections; pass account_number and routing_number "
            "(or use a test PaymentMethod such as pm_usBankAccount_success).",
            param=f"{prefix}[financial_connections_account]",
        )
    for key in ("account_number", "routing_number"):
        if not details.get(key):
            raise invalid_request(
                f"Missing required param: {prefix}[{key}].",
                param=f"{prefix}[{key}]",
                code="parameter_missing",
            )
    routing = details["routing_number"]
    if not _routing_number_valid(routing):
        raise invalid_request(
            f"Routing number {routing} is invalid.",
            param=f"{prefix}[routing_number]",
            code="routing_number_invalid",
        )
    account_number = details["account_number"]
    if not re.fullmatch(r"\d{4,17}", account_number):
        raise invalid_request(
            "Account number must be between 4 and 17 digits.",
            param=f"{prefix}[account_number]",
            code="account_number_invalid",
        )
    name = (given.get("billing_details") or {}).get("name")
    if not name:
        raise invalid_request(
            "Missing required param: billing_details[name].",
            param="billing_details[name]",
            code="parameter_missing",
        )
    return bank_payment_method(
        state,
        account_number=account_number,
        routing_number=routing,
        account_holder_type=details.get("account_holder_type", "individual"),
        account_type=details.get("account_type", "checking"),
        # Entered by hand: the account is verified with microdeposits when set up.
        verified=False,
        given=given,
    )


def create_from_params(
    state: SandboxState, given: dict[str, Any], *, prefix: str = ""
) -> StripeObject:
    """A PaymentMethod from `type` + `card[...]`/`us_bank_account[...]` parameters.

    `prefix` names the parameters in errors (`payment_method_data` on intents).
    """

    def name(key: str) -> str:
        return f"{prefix}[{key}]" if prefix else key

    kind = given.get("type")
    if kind not in SUPPORTED_TYPES:
        raise invalid_request(
            f"Invalid {name('type')}: the sandbox supports "
            f"{', '.join(SUPPORTED_TYPES)} PaymentMethods.",
            param=name("type"),
        )
    if kind == "card":
        if "us_bank_account" in given:
            raise invalid_request(
                f"Received unknown parameter: {name('us_bank_account')}",
                param=name("us_bank_account"),
            )
        return _card_from_details(state, given.get("card") or {}, given, name("card"))
    if "card" in given:
        raise invalid_request(f"Received unknown parameter: {name('card')}", param=name("card"))
    return _bank_from_details(
        state, given.get("us_bank_account") or {}, given, name("us_bank_account")
    )


def from_intent_params(state: SandboxState, params: dict[str, Any]) -> StripeObject | None:
    """The PaymentMethod an intent call names: `payment_method` (a stored or test id) or
    `payment_method_data` (a new one), never both; None when neither was sent."""
    if "payment_method" in params and "payment_method_data" in params:
        raise invalid_request(
            "You cannot provide both payment_method and payment_method_data.",
            param="payment_method_data",
        )
    if "payment_method_data" in params:
        return create_from_params(
            state, params["payment_method_data"], prefix="payment_method_data"
        )
    if params.get("payment_method"):
        return resolve(state, params["payment_method"])
    return None


def card_of(pm: StripeObject) -> StripeTestCard | None:
    """The test card behind a card PaymentMethod."""
    number = pm.get("_card")
    return TEST_CARDS.get(number) if isinstance(number, str) else None


def bank_account_of(pm: StripeObject) -> StripeTestBankAccount | None:
    """The test bank account behind a `us_bank_account` PaymentMethod (None: a plain one)."""
    number = pm.get("_bank_account")
    return TEST_BANK_ACCOUNTS.get(number) if isinstance(number, str) else None


def resolve(state: SandboxState, pm_id: str, *, param: str = "payment_method") -> StripeObject:
    """A stored PaymentMethod, or a fresh one for a test id (`pm_card_visa`)."""
    return state.require(PAYMENT_METHOD, pm_id, param=param)


def refuse_unattachable(pm: StripeObject) -> None:
    """Cards Stripe declines as soon as they are checked (attach, setup): 402 card_error."""
    card = card_of(pm)
    if card is not None and card.decline is not None and not card.attachable:
        raise card_error(
            card.decline.message,
            code=card.decline.code,
            decline_code=card.decline.decline_code,
            extra={"payment_method": _rendered(pm)},
        )


def _rendered(pm: StripeObject) -> dict[str, Any]:
    return {k: v for k, v in pm.items() if not k.startswith("_")}


def attach(
    state: SandboxState,
    pm: StripeObject,
    customer_id: str,
    *,
    param: str = "customer",
    check_card: bool = True,
) -> StripeObject:
    """Attach `pm` to a customer (Stripe checks the card first); emits payment_method.attached.

    Attaching again to the same customer changes nothing.
    """
    customer = state.require("customer", customer_id, param=param)
    current = pm.get("customer")
    if current == customer["id"]:
        return pm
    if current is not None:
        raise invalid_request(
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
            param="payment_method",
        )
    if pm.get("_consumed"):
        raise invalid_request(
            "This PaymentMethod was previously used without being attached to a Customer or was "
            "detached from a Customer, and may not be used again.",
            param="payment_method",
        )
    if pm["type"] == "us_bank_account" and not pm.get("_verified"):
        raise invalid_request(
            "PaymentMethods of type us_bank_account must be verified before they can be "
            "attached to a customer. Use a SetupIntent to verify the account with "
            "microdeposits.",
            code="payment_method_unexpected_state",
            param="payment_method",
        )
    if check_card:
        refuse_unattachable(pm)
    previous = state.update(pm, {"customer": customer["id"]})
    state.emit("payment_method.attached", pm, previous)
    return pm


def detach(state: SandboxState, pm: StripeObject) -> StripeObject:
    """Detach `pm` from its customer (and stop it being the customer's default)."""
    customer_id = pm.get("customer")
    if customer_id is None:
        raise invalid_request(
            "The payment method you provided is not attached to a customer so detachment is "
            "impossible.",
            code="payment_method_unexpected_state",
        )
    previous = state.update(pm, {"customer": None, "_set_up": False, "_consumed": True})
    customer = state.get("customer", customer_id)
    if customer is not None and not customer.get("deleted"):
        settings = customer.get("invoice_settings") or {}
        if settings.get("default_payment_method") == pm["id"]:
            before = state.update(
                customer, {"invoice_settings": {**settings, "default_payment_method": None}}
            )
            state.emit("customer.updated", customer, before)
    state.emit("payment_method.detached", pm, previous)
    return pm


REUSED = (
    "The provided PaymentMethod was previously used with a PaymentIntent without Customer "
    "attachment, shared with a connected account without Customer attachment, or was detached "
    "from a Customer. It may not be used again. To use a PaymentMethod multiple times, you must "
    "attach it to a Customer first."
)


def require_usable(pm: StripeObject, *, param: str = "payment_method") -> None:
    """Refuse PaymentMethod types the intents cannot process, and methods Stripe considers
    used up (charged once without a customer, or detached)."""
    if pm.get("type") not in SUPPORTED_TYPES:
        raise StripeError(
            f"The sandbox cannot process PaymentMethods of type {pm.get('type')}.", param=param
        )
    if pm.get("_consumed"):
        raise invalid_request(REUSED, param=param)


def mark_used(state: SandboxState, pm: StripeObject) -> None:
    """A payment attempt with a PaymentMethod no customer owns uses it up (as on Stripe)."""
    if pm.get("customer") is None:
        state.update(pm, {"_consumed": True})
