"""The pages a customer would see at their bank: the 3-D Secure challenge
(`next_action.redirect_to_url.url`, `/pages/authenticate/{intent}`) and the microdeposit
verification form (`next_action.verify_with_microdeposits.hosted_verification_url`,
`/pages/microdeposits/{intent}`). Both work for PaymentIntents and SetupIntents."""

from __future__ import annotations

import html
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.responses import HTMLResponse, RedirectResponse, Response

from billfold_sandbox.errors import StripeError
from billfold_sandbox.payments import authenticate, setups
from billfold_sandbox.payments import intents as payment_intents
from billfold_sandbox.payments.authentication import awaiting_challenge
from billfold_sandbox.payments.microdeposits import awaiting
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import StripeObject

router = SandboxRouter()

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem;"
    "color:#1a1f36}h1{font-size:1.3rem}button{font-size:1rem;padding:.6rem 1.2rem;margin:.3rem;"
    "border-radius:6px;border:1px solid #aab;cursor:pointer}.primary{background:#635bff;"
    "color:#fff;border-color:#635bff}.error{color:#b3093c}input{font-size:1rem;padding:.4rem;"
    "width:8rem}.note{color:#697386;font-size:.9rem}"
)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}"
        "<p class='note'>billfold Stripe sandbox: test mode, no real money moves.</p>"
        "</body></html>",
        status_code=status,
    )


def _intent(call: Call) -> StripeObject | None:
    intent_id = call.path["id"]
    kind = "setup_intent" if intent_id.startswith("seti_") else "payment_intent"
    return call.state.get(kind, intent_id)


def _describe(intent: StripeObject) -> str:
    if intent["object"] == "payment_intent":
        amount = int(intent["amount"])
        return f"Payment of {amount / 100:.2f} {str(intent['currency']).upper()}"
    return "Saving your card for future payments"


def _return_to(intent: StripeObject) -> str | None:
    url = intent.get("_return_url")
    if not isinstance(url, str):
        return None
    kind = intent["object"]
    status = (
        "succeeded"
        if intent["status"] in ("succeeded", "requires_capture", "processing")
        else "failed"
    )
    query = urlencode(
        {
            kind: intent["id"],
            f"{kind}_client_secret": intent["client_secret"],
            "redirect_status": status,
        }
    )
    parts = urlsplit(url)
    joined = f"{parts.query}&{query}" if parts.query else query
    return urlunsplit((parts.scheme, parts.netloc, parts.path, joined, parts.fragment))


@router.page("GET", "/pages/authenticate/{id}")
def challenge_page(call: Call) -> Response:
    intent = _intent(call)
    if intent is None:
        return _page("Unknown payment", "<p class='error'>This link is not valid.</p>", 404)
    if not awaiting_challenge(intent):
        return _page(
            "Nothing to authenticate",
            f"<p>This request is already {html.escape(str(intent['status']))}.</p>",
        )
    return _page(
        "3D Secure test page",
        f"<p>{html.escape(_describe(intent))}.</p>"
        "<p>Your bank asks you to confirm it is you.</p>"
        "<form method='post'>"
        "<button class='primary' name='outcome' value='succeed' id='complete'>"
        "Complete authentication</button>"
        "<button name='outcome' value='fail' id='fail'>Fail authentication</button></form>",
    )


@router.page("POST", "/pages/authenticate/{id}")
def challenge_answer(call: Call) -> Response:
    intent = _intent(call)
    if intent is None:
        return _page("Unknown payment", "<p class='error'>This link is not valid.</p>", 404)
    try:
        authenticate(call.state, intent["id"], succeed=call.raw.get("outcome") != "fail")
    except StripeError as exc:
        return _page("Authentication", f"<p class='error'>{html.escape(exc.message)}</p>", 400)
    target = _return_to(intent)
    if target:
        return RedirectResponse(target, status_code=303)
    return _page("Authentication", f"<p>Status: {html.escape(str(intent['status']))}.</p>")


@router.page("GET", "/pages/microdeposits/{id}")
def microdeposits_page(call: Call) -> Response:
    intent = _intent(call)
    if intent is None:
        return _page("Unknown verification", "<p class='error'>This link is not valid.</p>", 404)
    if not awaiting(intent):
        return _page(
            "Bank account verification",
            f"<p>Nothing to verify: this request is {html.escape(str(intent['status']))}.</p>",
        )
    return _page(
        "Verify your bank account",
        "<p>We sent a 0.01 USD deposit to your account. Enter the 6-character code that starts "
        "with SM from its statement description (test mode: <code>SM11AA</code>).</p>"
        "<form method='post'><input name='descriptor_code' id='descriptor_code' "
        "autocomplete='off' required maxlength='6'> "
        "<button class='primary' id='verify'>Verify</button></form>",
    )


@router.page("POST", "/pages/microdeposits/{id}")
def microdeposits_answer(call: Call) -> Response:
    intent = _intent(call)
    if intent is None:
        return _page("Unknown verification", "<p class='error'>This link is not valid.</p>", 404)
    code = str(call.raw.get("descriptor_code", ""))
    try:
        if intent["object"] == "setup_intent":
            error = setups.verify_microdeposits(
                call.state, intent, amounts=None, descriptor_code=code
            )
        else:
            error = payment_intents.verify_microdeposits(
                call.state, intent, amounts=None, descriptor_code=code
            )
    except StripeError as exc:
        error = exc
    if error is not None:
        return _page(
            "Verify your bank account", f"<p class='error'>{html.escape(error.message)}</p>", 400
        )
    return _page("Bank account verified", "<p>Thank you, your bank account is verified.</p>")
