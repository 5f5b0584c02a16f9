"""Billing credits: credit grants (`billing.credit_grant`, `credgr_`) and their ledger
(`billing.credit_balance_transaction`, `cbtxn_`), applied to invoices when they are finalized.

As on Stripe: a grant is a monetary amount for one customer, usable from `effective_at` until
`expires_at` (or until voided), on the lines its `applicability_config.scope` names (all metered
prices, or listed prices). Finalizing an invoice applies the available grants to each eligible
line before tax, in Stripe's order (lowest `priority` first, then the earliest to expire, then the
oldest), recorded as `credits_applied` debits, in the line's `pretax_credit_amounts` and the
invoice's `total_pretax_credit_amounts`, and deducted from `total` and `amount_due`. Voiding the
invoice gives the credits back (`credits_application_invoice_voided`). Expiring or voiding a grant
records its unused remainder as a `credits_expired` / `credits_voided` debit.

Simplified: the ledger and available balances are the same (no pending amounts on draft
invoices); the credits are applied only when an invoice is finalized (a draft's preview does not
show them); a grant that takes effect in the future is checked at finalization only.
"""

from __future__ import annotations

from typing import Any

from billfold_sandbox.state import SandboxState, StripeObject

CREDIT_GRANT = "billing.credit_grant"
CREDIT_BALANCE_TRANSACTION = "billing.credit_balance_transaction"


def money(currency: str, value: int) -> dict[str, Any]:
    """Stripe's `{monetary: {currency, value}, type: monetary}` amount."""
    return {"monetary": {"currency": currency, "value": value}, "type": "monetary"}


def transactions_of(
    state: SandboxState, *, customer: str | None = None, grant: str | None = None
) -> list[StripeObject]:
    """Credit balance transactions, newest first, for a customer and/or a grant."""
    return [
        t
        for t in state.all(CREDIT_BALANCE_TRANSACTION, newest_first=True)
        if (customer is None or t["_customer"] == customer)
        and (grant is None or t["credit_grant"] == grant)
    ]


def remaining(state: SandboxState, grant: StripeObject) -> int:
    """What is left of the grant: granted, less debits, plus credits given back."""
    left = 0
    for t in transactions_of(state, grant=grant["id"]):
        side = t["credit"] if t["type"] == "credit" else t["debit"]
        value = int(side["amount"]["monetary"]["value"])
        left += value if t["type"] == "credit" else -value
    return left


def is_available(state: SandboxState, grant: StripeObject, at: int) -> bool:
    """Voided, expired and not-yet-effective grants cannot be used."""
    if grant.get("voided_at") is not None:
        return False
    if grant.get("effective_at") is not None and int(grant["effective_at"]) > at:
        return False
    return grant.get("expires_at") is None or int(grant["expires_at"]) > at


def record(
    state: SandboxState,
    grant: StripeObject,
    *,
    kind: str,
    reason: str,
    value: int,
    invoice: str | None = None,
    line: str | None = None,
) -> StripeObject:
    """One ledger entry (`kind` credit or debit, `reason` its Stripe type); emits
    `billing.credit_balance_transaction.created`."""
    currency = grant["amount"]["monetary"]["currency"]
    at = state.now_for(grant["customer"])
    side: dict[str, Any] = {"amount": money(currency, value), "type": reason}
    if kind == "credit":
        side["credits_application_invoice_voided"] = (
            {"invoice": invoice, "invoice_line_item": line} if invoice else None
        )
    else:
        side["credits_applied"] = (
            {"invoice": invoice, "invoice_line_item": line} if invoice else None
        )
    txn: StripeObject = {
        "id": state.new_id("cbtxn"),
        "object": CREDIT_BALANCE_TRANSACTION,
        "created": at,
        "credit": side if kind == "credit" else None,
        "credit_grant": grant["id"],
        "debit": side if kind == "debit" else None,
        "effective_at": at,
        "livemode": False,
        "test_clock": grant.get("test_clock"),
        "type": kind,
        "_customer": grant["customer"],
    }
    state.insert(txn)
    state.emit("billing.credit_balance_transaction.created", txn)
    return txn


def applies_to(grant: StripeObject, price: StripeObject | None) -> bool:
    """Whether the grant's scope covers a line of `price`."""
    if price is None:
        return False
    scope = (grant.get("applicability_config") or {}).get("scope") or {}
    if scope.get("prices"):
        return price["id"] in [p["id"] for p in scope["prices"]]
    if scope.get("price_type") == "metered":
        return (price.get("recurring") or {}).get("usage_type") == "metered"
    return False


def usable_grants(state: SandboxState, customer: str, currency: str, at: int) -> list[StripeObject]:
    """The customer's grants in `currency` usable at `at`, in the order Stripe applies them."""
    grants = [
        g
        for g in state.all(CREDIT_GRANT)
        if g["customer"] == customer
        and g["amount"]["monetary"]["currency"] == currency
        and is_available(state, g, at)
    ]
    grants.sort(
        key=lambda g: (
            int(g.get("priority") or 50),
            g.get("expires_at") is None,
            int(g.get("expires_at") or 0),
            int(g["created"]),
        )
    )
    return grants


def apply_to_invoice(state: SandboxState, invoice: StripeObject) -> None:
    """Apply the customer's credit grants to the invoice's eligible lines (at finalization,
    after the totals are computed); lowers `total` and `amount_due`."""
    currency = str(invoice["currency"])
    at = state.now_for(invoice)
    grants = usable_grants(state, str(invoice["customer"]), currency, at)
    if not grants:
        return
    left = {g["id"]: remaining(state, g) for g in grants}
    applied_total = 0
    totals: list[dict[str, Any]] = list(invoice.get("total_pretax_credit_amounts") or [])
    for line in invoice["lines"]["data"]:
        pricing = line.get("pricing") or {}
        price_id = (pricing.get("price_details") or {}).get("price")
        price = state.get("price", price_id) if price_id else None
        due = int(line["amount"]) - sum(
            int(d["amount"]) for d in line.get("discount_amounts") or []
        )
        for grant in grants:
            if due <= 0:
                break
            if left[grant["id"]] <= 0 or not applies_to(grant, price):
                continue
            take = min(due, left[grant["id"]])
            txn = record(
                state,
                grant,
                kind="debit",
                reason="credits_applied",
                value=take,
                invoice=invoice["id"],
                line=line["id"],
            )
            credit = {
                "amount": take,
                "credit_balance_transaction": txn["id"],
                "discount": None,
                "type": "credit_balance_transaction",
            }
            line["pretax_credit_amounts"] = [*(line.get("pretax_credit_amounts") or []), credit]
            totals.append(credit)
            left[grant["id"]] -= take
            due -= take
            applied_total += take
    if applied_total:
        total = int(invoice["total"]) - applied_total
        invoice.update(
            {
                "total_pretax_credit_amounts": totals,
                "total": total,
                "total_excluding_tax": total,
                "amount_due": max(total, 0),
                "amount_remaining": max(total, 0),
            }
        )
        state.touch()


def give_back(state: SandboxState, invoice: StripeObject) -> None:
    """A voided invoice returns the credits it used (`credits_application_invoice_voided`)."""
    for credit in invoice.get("total_pretax_credit_amounts") or []:
        if credit.get("type") != "credit_balance_transaction":
            continue
        used = state.get(CREDIT_BALANCE_TRANSACTION, str(credit["credit_balance_transaction"]))
        grant = state.get(CREDIT_GRANT, str(used["credit_grant"])) if used else None
        if used is None or grant is None:
            continue
        applied = used["debit"]["credits_applied"] or {}
        record(
            state,
            grant,
            kind="credit",
            reason="credits_application_invoice_voided",
            value=int(credit["amount"]),
            invoice=invoice["id"],
            line=applied.get("invoice_line_item"),
        )


def balances(
    state: SandboxState, customer: str, grant_id: str | None, scope: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Per currency, what the customer's usable grants (one grant, or those with `scope`) hold."""
    at = state.now_for(customer)
    sums: dict[str, int] = {}
    for grant in state.all(CREDIT_GRANT):
        if grant["customer"] != customer or not is_available(state, grant, at):
            continue
        if grant_id is not None and grant["id"] != grant_id:
            continue
        if scope is not None and not _scope_matches(grant, scope):
            continue
        currency = grant["amount"]["monetary"]["currency"]
        sums[currency] = sums.get(currency, 0) + remaining(state, grant)
    return [
        {"available_balance": money(c, v), "ledger_balance": money(c, v)}
        for c, v in sorted(sums.items())
    ]


def _scope_matches(grant: StripeObject, scope: dict[str, Any]) -> bool:
    mine = (grant.get("applicability_config") or {}).get("scope") or {}
    if scope.get("prices"):
        wanted = {p["id"] for p in scope["prices"]}
        return bool(wanted & {p["id"] for p in mine.get("prices") or []})
    return mine.get("price_type") == scope.get("price_type")
