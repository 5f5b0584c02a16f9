"""Rendering the panel's pages: the Jinja2 environment, the customer's locale (Babel), the
security headers every page carries, and the HTML error page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import Response

from billfold.config import SANDBOX_MOUNT_PATH, Settings
from billfold.money import format_money

DEFAULT_LOCALE = "en_US"
STATIC_PATH = "/panel-static"
# The longest Accept-Language header read (a few dozen tags; anything longer is cut).
_MAX_ACCEPT_LANGUAGE = 512


@lru_cache(maxsize=256)
def _negotiate(header: str) -> str:
    """The first language of an Accept-Language header Babel knows, by its q weights."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header[:_MAX_ACCEPT_LANGUAGE].split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        if tag and tag != "*" and weight > 0:
            ranked.append((-weight, index, tag))
    for _weight, _index, tag in sorted(ranked):
        try:
            return str(Locale.parse(tag.replace("-", "_")))
        except (UnknownLocaleError, ValueError, TypeError):
            continue
    return DEFAULT_LOCALE


def locale_of(request: Request) -> str:
    """The customer's locale, from the browser's Accept-Language (en_US when none fits)."""
    return _negotiate(request.headers.get("accept-language", ""))


def _money(minor: int | None, currency: str | None, locale: str) -> str:
    if minor is None or not currency:
        return "—"
    return format_money(minor, currency, locale)


def format_day(value: datetime | None, locale: str) -> str:
    """A date for display in `locale` (`Dec 4, 2026`, `04.12.2026`)."""
    return format_date(value, format="medium", locale=locale) if value else "—"


def _datetime(value: datetime | None, locale: str) -> str:
    """A moment for display in `locale`, in UTC (and saying so)."""
    if value is None:
        return "—"
    return format_datetime(value, format="medium", tzinfo=UTC, locale=locale) + " UTC"


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("billfold.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static"] = lambda name: f"{STATIC_PATH}/{name}"
    return env


_ENV = _environment()


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """A page of the panel, in the customer's locale."""
    locale = locale_of(request)
    html = _ENV.get_template(template).render(
        **{"notice": None, "visitor": None, **context},
        request_path=request.url.path,
        lang=locale.split("_")[0],
        money=lambda minor, currency: _money(minor, currency, locale),
        date=lambda value: format_day(value, locale),
        datetime=lambda value: _datetime(value, locale),
    )
    return HTMLResponse(html, status_code=status_code)


@dataclass(frozen=True, slots=True)
class StripeJs:
    """Where the payment methods page loads Stripe.js from, and the origins it reaches: its
    script, the frames it opens (3-D Secure) and the API it calls."""

    url: str
    script: tuple[str, ...]
    frame: tuple[str, ...]
    connect: tuple[str, ...]


# Stripe's own list for Stripe.js (https://docs.stripe.com/security/guide#content-security-policy).
REAL_STRIPE_JS = StripeJs(
    url="https://js.stripe.com/v3",
    script=("https://js.stripe.com",),
    frame=("https://js.stripe.com", "https://hooks.stripe.com"),
    connect=("https://api.stripe.com",),
)


def stripe_js(settings: Settings) -> StripeJs:
    """The real Stripe.js when billfold talks to Stripe; the sandbox's stand-in otherwise: the
    mounted sandbox's (same origin) or the one at BILLFOLD_STRIPE_API_BASE."""
    base = settings.stripe_api_base
    if base is None:
        return REAL_STRIPE_JS
    if not settings.stripe_api_base_override:
        return StripeJs(url=f"{SANDBOX_MOUNT_PATH}/js/v3", script=(), frame=(), connect=())
    parts = urlsplit(base)
    origin = (f"{parts.scheme}://{parts.netloc}",)
    return StripeJs(url=f"{base}/js/v3", script=origin, frame=origin, connect=origin)


def content_security_policy(settings: Settings) -> str:
    """Scripts, styles and requests from billfold itself only, and Stripe.js's (its script,
    frames and API); framed only by the listed origins (BILLFOLD_PANEL_FRAME_ANCESTORS),
    otherwise by nobody."""
    ancestors = " ".join(o.rstrip("/") for o in settings.panel_frame_ancestors) or "'none'"
    js = stripe_js(settings)

    def sources(extra: tuple[str, ...]) -> str:
        return " ".join(("'self'", *extra))

    return (
        f"default-src 'self'; script-src {sources(js.script)}; style-src 'self'; "
        f"img-src 'self' data:; connect-src {sources(js.connect)}; "
        f"frame-src {sources(js.frame)}; object-src 'none'; base-uri 'none'; "
        f"frame-ancestors {ancestors}"
    )


def secure_headers(response: Response, settings: Settings) -> Response:
    """The headers every page of the panel carries."""
    response.headers["Content-Security-Policy"] = content_security_policy(settings)
    if not settings.panel_frame_ancestors:
        response.headers["X-Frame-Options"] = "DENY"
    # A sign-in link's token is in its URL: never sent on as a Referer.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    return response
