"""Stripe.js v3, the sandbox's stand-in (`<mount>/js/v3`): a page written against Stripe.js runs
against the sandbox by changing only the script's URL (see `pages/stripe_js_v3.js`)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.responses import Response

from billfold_sandbox.pages import sandbox_base_url
from billfold_sandbox.routing import Call, SandboxRouter

router = SandboxRouter()
SCRIPT = Path(__file__).resolve().parents[1] / "pages" / "stripe_js_v3.js"


@cache
def _source() -> str:
    return SCRIPT.read_text(encoding="utf-8")


def _script(call: Call) -> Response:
    body = _source().replace("__SANDBOX_BASE__", sandbox_base_url(call.request))
    return Response(
        body,
        media_type="application/javascript",
        headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"},
    )


@router.page("GET", "/js/v3")
def stripe_js(call: Call) -> Response:
    return _script(call)


@router.page("GET", "/js/v3/")
def stripe_js_slash(call: Call) -> Response:
    return _script(call)
