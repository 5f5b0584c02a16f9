"""`POST /v1/invoices/{id}/attach_payment`: a PaymentIntent made elsewhere pays an open invoice.

Attach, as on Stripe: the PaymentIntent becomes the invoice's default payment (an
`invoice_payment`); a PaymentIntent that has succeeded pays the invoice at once, one that has not
pays it when it succeeds (confirmed by the customer, a bank debit settling, 3-D Secure done).
Simplified: partial payments are not emulated (the PaymentIntent's amount must be the invoice's
`amount_remaining`), nor are out-of-band `payment_record`s.
"""

from __future__ import annotations

from billfold_sandbox.billing import invoicing, payments_port
from billfold_sandbox.errors import invalid_request
from billfold_sandbox.params import string
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

ATTACH = {"payment_intent": string(), "payment_record": string()}
ATTACHABLE = (
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    *payments_port.SUCCEEDED,
)


@router.post("/v1/invoices/{id}/attach_payment", ATTACH)
def attach_payment(call: Call) -> StripeObject:
    state = call.state
    invoice = call.require("invoice", call.path["id"])
    p = call.params
    if "payment_record" in p:
        raise invalid_request(
            "Payment records are not emulated by the sandbox: attach a `payment_intent`.",
            param="payment_record",
        )
    if "payment_intent" not in p:
        raise invalid_request(
            "Missing required param: payment_intent.",
            param="payment_intent",
            code="parameter_missing",
        )
    intent = call.require("payment_intent", p["payment_intent"], param="payment_intent")
    if invoice["status"] != "open":
        raise invalid_request(
            f"You can only attach a payment to an open invoice. This invoice is "
            f"{invoice['status']}.",
            param="id",
            code="invoice_not_editable" if invoice["status"] != "draft" else None,
        )
    if intent.get("customer") not in (None, invoice["customer"]):
        raise invalid_request(
            "The PaymentIntent's customer must be the invoice's customer.",
            param="payment_intent",
        )
    if intent["currency"] != invoice["currency"]:
        raise invalid_request(
            f"The PaymentIntent's currency ({intent['currency']}) must be the invoice's "
            f"({invoice['currency']}).",
            param="payment_intent",
        )
    if int(intent["amount"]) != int(invoice["amount_remaining"]):
        raise invalid_request(
            f"The PaymentIntent's amount ({intent['amount']}) must be the invoice's "
            f"amount_remaining ({invoice['amount_remaining']}): partial payments are not "
            "emulated.",
            param="payment_intent",
        )
    if intent["status"] not in ATTACHABLE:
        raise invalid_request(
            f"A PaymentIntent with status={intent['status']} cannot pay an invoice.",
            param="payment_intent",
        )
    for inpay in state.all("invoice_payment"):
        if inpay["payment"].get("payment_intent") == intent["id"]:
            raise invalid_request(
                f"The PaymentIntent {intent['id']} is already attached to invoice "
                f"{inpay['invoice']}.",
                param="payment_intent",
            )
    for inpay_id in invoice.get("_payments", []):
        earlier = state.get("invoice_payment", inpay_id)
        if earlier is not None and earlier["is_default"] and earlier["status"] == "open":
            state.update(earlier, {"is_default": False})
    invoicing.attach_intent(state, invoice, intent)
    if intent["status"] in payments_port.SUCCEEDED:
        invoicing.mark_paid(state, invoice, payment_intent=str(intent["id"]))
    else:
        state.emit("invoice.updated", invoice)
    return invoice
