"""Disputes (retrieve, update with evidence, close, list) and balance transactions (retrieve,
list). The rules are in `payments/disputes.py` and `payments/balance.py`."""

from __future__ import annotations

from billfold_sandbox.params import (
    anything,
    apply_metadata,
    boolean,
    in_range,
    metadata,
    obj,
    range_filter,
    string,
)
from billfold_sandbox.payments.balance import BALANCE_TRANSACTION
from billfold_sandbox.payments.disputes import (
    DISPUTE,
    EVIDENCE_FIELDS,
    close_dispute,
    update_dispute,
)
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

UPDATE = {
    "evidence": obj(
        {
            **{name: string(nullable=True, max_length=150_000) for name in EVIDENCE_FIELDS},
            "enhanced_evidence": anything(),
            "appeal": anything(),
        }
    ),
    "intended_submission_method": string(),
    "metadata": metadata(),
    "submit": boolean(),
}
LIST = {"charge": string(), "payment_intent": string(), "created": range_filter()}
BALANCE_LIST = {
    "created": range_filter(),
    "currency": string(),
    "payout": string(),
    "source": string(),
    "type": string(),
}


@router.get("/v1/disputes/{id}")
def retrieve_dispute(call: Call) -> StripeObject:
    return call.require(DISPUTE, call.path["id"], param="dispute")


@router.post("/v1/disputes/{id}", UPDATE)
def update(call: Call) -> StripeObject:
    dispute = call.require(DISPUTE, call.path["id"], param="dispute")
    p = call.params
    evidence = {k: v for k, v in (p.get("evidence") or {}).items()}
    return update_dispute(
        call.state,
        dispute,
        evidence=evidence or None,
        # Stripe submits evidence at once unless told `submit=false`.
        submit=bool(p.get("submit", True)) and bool(evidence or "submit" in p),
        metadata=apply_metadata(dispute["metadata"], p["metadata"]) if "metadata" in p else None,
    )


@router.post("/v1/disputes/{id}/close")
def close(call: Call) -> StripeObject:
    return close_dispute(call.state, call.require(DISPUTE, call.path["id"], param="dispute"))


@router.get("/v1/disputes", LIST, list=True)
def list_disputes(call: Call) -> StripeObject:
    p = call.params
    found = [
        d
        for d in call.state.all(DISPUTE, newest_first=True)
        if ("charge" not in p or d["charge"] == p["charge"])
        and ("payment_intent" not in p or d.get("payment_intent") == p["payment_intent"])
        and in_range(d.get("created"), p.get("created"))
    ]
    return call.list_response(found)


@router.get("/v1/balance_transactions/{id}")
def retrieve_balance_transaction(call: Call) -> StripeObject:
    return call.require(BALANCE_TRANSACTION, call.path["id"], param="id")


@router.get("/v1/balance_transactions", BALANCE_LIST, list=True)
def list_balance_transactions(call: Call) -> StripeObject:
    p = call.params
    found = [
        t
        for t in call.state.all(BALANCE_TRANSACTION, newest_first=True)
        if ("currency" not in p or t["currency"] == p["currency"].lower())
        and ("source" not in p or t["source"] == p["source"])
        and ("type" not in p or t["type"] == p["type"])
        and "payout" not in p  # no payouts in the sandbox: nothing is in one
        and in_range(t.get("created"), p.get("created"))
    ]
    return call.list_response(found)
