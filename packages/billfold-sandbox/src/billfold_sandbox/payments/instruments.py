"""Stripe's test cards, test PaymentMethod ids and test bank accounts, and what each one does.

Source: Stripe's testing documentation (docs.stripe.com/testing and the ACH Direct Debit guide).
Each test PaymentMethod id (`pm_card_visa`, `pm_usBankAccount_success`, ...) and each test token
(`tok_visa`) stands for one of the numbers below. Numbers that are not Stripe test numbers are
refused the way Stripe test mode refuses live cards.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum


class Authentication(Enum):
    """When a card asks for 3-D Secure."""

    NONE = "none"
    # Authenticate one-time payments; once set up for off-session use, off-session payments pass.
    UNLESS_SET_UP = "unless_set_up"
    # Authenticate every transaction, however the card was set up.
    ALWAYS = "always"


@dataclass(frozen=True)
class Decline:
    """A refusal as Stripe reports it: `code`, `decline_code` and the customer-facing message."""

    code: str
    message: str
    decline_code: str | None = None


GENERIC_DECLINE = Decline("card_declined", "Your card was declined.", "generic_decline")
INSUFFICIENT_FUNDS = Decline(
    "card_declined", "Your card has insufficient funds.", "insufficient_funds"
)
LOST_CARD = Decline("card_declined", "Your card was declined.", "lost_card")
STOLEN_CARD = Decline("card_declined", "Your card was declined.", "stolen_card")
EXPIRED_CARD = Decline("expired_card", "Your card has expired.", "expired_card")
INCORRECT_CVC = Decline("incorrect_cvc", "Your card's security code is incorrect.", "incorrect_cvc")
PROCESSING_ERROR = Decline(
    "processing_error",
    "An error occurred while processing your card. Try again in a little bit.",
    "processing_error",
)
VELOCITY_EXCEEDED = Decline(
    "card_declined",
    "Your card was declined for making repeated attempts too frequently or exceeding its "
    "amount limit.",
    "card_velocity_exceeded",
)
AUTHENTICATION_REQUIRED = Decline(
    "authentication_required",
    "Your card was declined. This transaction requires authentication.",
    "authentication_required",
)
AUTHENTICATION_FAILED = Decline(
    "payment_intent_authentication_failure",
    "The provided PaymentMethod has failed authentication. You can provide payment_method_data "
    "or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
)
LIVE_CARD_IN_TEST_MODE = Decline(
    "card_declined",
    "Your card was declined. Your request was in test mode, but used a non test (live) card. "
    "For a list of valid test cards, visit: https://stripe.com/docs/testing.",
    "test_mode_live_card",
)


@dataclass(frozen=True)
class StripeTestCard:
    """One of Stripe's test card numbers and the outcome it produces."""

    number: str
    brand: str
    funding: str = "credit"
    country: str = "US"
    # Refusal when the card is charged (and, unless `attachable`, when attached or set up).
    decline: Decline | None = None
    attachable: bool = True
    authentication: Authentication = Authentication.NONE
    three_d_secure_supported: bool = True

    @property
    def last4(self) -> str:
        return self.number[-4:]

    @property
    def fingerprint(self) -> str:
        return fingerprint_of("card", self.number)


def fingerprint_of(kind: str, value: str) -> str:
    """Stripe-like fingerprint: the same card or account always gives the same 16 characters."""
    digest = hashlib.sha256(f"billfold-sandbox:{kind}:{value}".encode()).hexdigest()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    number = int(digest, 16)
    chars = []
    for _ in range(16):
        number, index = divmod(number, len(alphabet))
        chars.append(alphabet[index])
    return "".join(chars)


_A = Authentication
TEST_CARDS: dict[str, StripeTestCard] = {
    card.number: card
    for card in (
        # Cards by brand: payments succeed.
        StripeTestCard("4242424242424242", "visa"),
        StripeTestCard("4000056655665556", "visa", "debit"),
        StripeTestCard("5555555555554444", "mastercard"),
        StripeTestCard("2223003122003222", "mastercard"),
        StripeTestCard("5200828282828210", "mastercard", "debit"),
        StripeTestCard("5105105105105100", "mastercard", "prepaid"),
        StripeTestCard("378282246310005", "amex", three_d_secure_supported=False),
        StripeTestCard("371449635398431", "amex", three_d_secure_supported=False),
        StripeTestCard("6011111111111117", "discover"),
        StripeTestCard("6011000990139424", "discover"),
        StripeTestCard("6011981111111113", "discover", "debit"),
        StripeTestCard("3056930009020004", "diners"),
        StripeTestCard("36227206271667", "diners"),
        StripeTestCard("3566002020360505", "jcb"),
        StripeTestCard("6200000000000005", "unionpay"),
        StripeTestCard("6200000000000047", "unionpay", "debit"),
        # Declined payments.
        StripeTestCard("4000000000000002", "visa", decline=GENERIC_DECLINE, attachable=False),
        StripeTestCard("4000000000009995", "visa", decline=INSUFFICIENT_FUNDS, attachable=False),
        StripeTestCard("4000000000009987", "visa", decline=LOST_CARD, attachable=False),
        StripeTestCard("4000000000009979", "visa", decline=STOLEN_CARD, attachable=False),
        StripeTestCard("4000000000000069", "visa", decline=EXPIRED_CARD, attachable=False),
        StripeTestCard("4000000000000127", "visa", decline=INCORRECT_CVC, attachable=False),
        StripeTestCard("4000000000000119", "visa", decline=PROCESSING_ERROR, attachable=False),
        StripeTestCard("4000000000006975", "visa", decline=VELOCITY_EXCEEDED, attachable=False),
        # Attaching succeeds, every charge fails.
        StripeTestCard("4000000000000341", "visa", decline=GENERIC_DECLINE),
        # Authentication and 3-D Secure.
        StripeTestCard("4000002500003155", "visa", authentication=_A.UNLESS_SET_UP),
        StripeTestCard("4000002760003184", "visa", authentication=_A.ALWAYS),
        StripeTestCard(
            "4000008260003178", "visa", authentication=_A.ALWAYS, decline=INSUFFICIENT_FUNDS
        ),
        StripeTestCard("4000000000003220", "visa", authentication=_A.ALWAYS),
        StripeTestCard("4000000000003063", "visa", authentication=_A.ALWAYS),
        StripeTestCard("4000000000003055", "visa"),
    )
}

# Stripe's test PaymentMethod ids and test tokens, each backed by a test number.
TEST_CARD_ALIASES: dict[str, str] = {
    "visa": "4242424242424242",
    "visa_debit": "4000056655665556",
    "mastercard": "5555555555554444",
    "mastercard_debit": "5200828282828210",
    "mastercard_prepaid": "5105105105105100",
    "amex": "378282246310005",
    "amex_threeDSecureNotSupported": "378282246310005",
    "discover": "6011111111111117",
    "diners": "3056930009020004",
    "jcb": "3566002020360505",
    "unionpay": "6200000000000005",
    "chargeDeclined": "4000000000000002",
    "visa_chargeDeclined": "4000000000000002",
    "chargeDeclinedInsufficientFunds": "4000000000009995",
    "visa_chargeDeclinedInsufficientFunds": "4000000000009995",
    "chargeDeclinedLostCard": "4000000000009987",
    "visa_chargeDeclinedLostCard": "4000000000009987",
    "chargeDeclinedStolenCard": "4000000000009979",
    "visa_chargeDeclinedStolenCard": "4000000000009979",
    "chargeDeclinedExpiredCard": "4000000000000069",
    "chargeDeclinedIncorrectCvc": "4000000000000127",
    "chargeDeclinedProcessingError": "4000000000000119",
    "visa_chargeDeclinedVelocityLimitExceeded": "4000000000006975",
    "chargeCustomerFail": "4000000000000341",
    "authenticationRequiredOnSetup": "4000002500003155",
    "authenticationRequired": "4000002760003184",
    "authenticationRequiredChargeDeclinedInsufficientFunds": "4000008260003178",
    "threeDSecure2Required": "4000000000003220",
    "threeDSecureRequired": "4000000000003063",
    "threeDSecureOptional": "4000000000003055",
}


def card_for_test_id(payment_method_or_token: str) -> StripeTestCard | None:
    """The card behind `pm_card_<name>` or `tok_<name>`, or None."""
    for prefix in ("pm_card_", "tok_"):
        if payment_method_or_token.startswith(prefix):
            number = TEST_CARD_ALIASES.get(payment_method_or_token[len(prefix) :])
            return TEST_CARDS[number] if number else None
    return None


def luhn_valid(number: str) -> bool:
    """The check digit every card number carries."""
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for index, char in enumerate(reversed(number)):
        digit = int(char)
        if index % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def brand_of(number: str) -> str:
    """Card brand from the number's leading digits (for numbers outside the test list)."""
    if number.startswith("4"):
        return "visa"
    two, four = int(number[:2]), int(number[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if number.startswith(("6011", "65")) or 644 <= int(number[:3]) <= 649:
        return "discover"
    if two in (36, 38, 39) or 300 <= int(number[:3]) <= 305:
        return "diners"
    if 3528 <= four <= 3589:
        return "jcb"
    if two == 62:
        return "unionpay"
    return "unknown"


@dataclass(frozen=True)
class BankFailure:
    """Why an ACH debit from a test account is returned (`failure_code` on the charge)."""

    code: str
    message: str


@dataclass(frozen=True)
class StripeTestBankAccount:
    """One of Stripe's test US bank account numbers (routing number 110000000)."""

    account_number: str
    token: str
    failure: BankFailure | None = None
    microdeposits_fail: bool = False
    # Stays in `processing` for ever (for testing cancellation).
    never_settles: bool = False


TEST_ROUTING_NUMBER = "110000000"
TEST_BANK_NAME = "STRIPE TEST BANK"
TEST_BANK_ACCOUNTS: dict[str, StripeTestBankAccount] = {
    account.account_number: account
    for account in (
        StripeTestBankAccount("000123456789", "pm_usBankAccount_success"),
        StripeTestBankAccount(
            "000111111113",
            "pm_usBankAccount_accountClosed",
            BankFailure("account_closed", "The customer's bank account has been closed."),
        ),
        StripeTestBankAccount(
            "000111111116",
            "pm_usBankAccount_noAccount",
            BankFailure("no_account", "The customer's bank account could not be located."),
        ),
        StripeTestBankAccount(
            "000222222227",
            "pm_usBankAccount_insufficientFunds",
            BankFailure(
                "insufficient_funds",
                "The customer's account has insufficient funds to cover this payment.",
            ),
        ),
        StripeTestBankAccount(
            "000333333335",
            "pm_usBankAccount_debitNotAuthorized",
            BankFailure(
                "debit_not_authorized",
                "The customer has notified their bank that this payment was unauthorized.",
            ),
        ),
        StripeTestBankAccount(
            "000444444440",
            "pm_usBankAccount_invalidCurrency",
            BankFailure(
                "invalid_currency",
                "The bank was unable to process this payment because of its currency.",
            ),
        ),
        StripeTestBankAccount(
            "000666666661", "pm_usBankAccount_failMicrodeposits", microdeposits_fail=True
        ),
        StripeTestBankAccount("000000000009", "pm_usBankAccount_processing", never_settles=True),
    )
}
TEST_BANK_TOKENS: dict[str, StripeTestBankAccount] = {
    a.token: a for a in TEST_BANK_ACCOUNTS.values()
}

# Microdeposit test values: (amounts, descriptor code) -> outcome.
MICRODEPOSIT_VERIFIED = ((32, 45), "SM11AA")
MICRODEPOSIT_ATTEMPTS_EXCEEDED = ((10, 11), "SM33CC")
MICRODEPOSIT_TIMEOUT = ((40, 41), "SM44DD")
# Stripe allows three tries for amounts and ten for a descriptor code.
MICRODEPOSIT_MAX_AMOUNT_ATTEMPTS = 3
MICRODEPOSIT_MAX_DESCRIPTOR_ATTEMPTS = 10
