"""Sending invoices (`collection_method=send_invoice`): `POST /v1/invoices/{id}/send` and the
due date's `invoice.overdue`. The rules are in `billfold_sandbox.billing.sending`."""

from __future__ import annotations

from billfold_sandbox.billing import invoicing, sending
from billfold_sandbox.errors import invalid_request
from billfold_sandbox.pages import remember_base
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()


@router.post("/v1/invoices/{id}/send")
def send_invoice(call: Call) -> StripeObject:
    """Email the invoice now (`invoice.sent`); a draft is finalized first. Nothing is charged."""
    state = call.state
    remember_base(state, call.request)
    invoice = call.require("invoice", call.path["id"])
    if invoice["collection_method"] != sending.SEND:
        raise invalid_request(
            "You can only manually send an invoice if its collection method is 'send_invoice'.",
            param="id",
        )
    if invoice["status"] == "void":
        raise invalid_request("You cannot send a voided invoice.", code="invoice_not_open")
    if invoice["status"] == "draft":
        state.cancel_timers(invoice["id"], invoicing.FINALIZE_TIMER)
        auto = invoice.get("auto_advance", True)
        invoice["auto_advance"] = False  # finalizing must not send it a second time
        invoicing.finalize(state, invoice)
        invoice["auto_advance"] = auto
        state.touch()
    sending.send(state, invoice)
    return invoice


router.timer(sending.OVERDUE)(sending.overdue)
