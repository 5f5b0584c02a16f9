"""Where billfold may send a customer back to after Stripe's hosted pages (Checkout, the
billing portal): http(s) URLs on an allowed host only, so billfold is no open redirect.
Domain-neutral: subscriptions, credit top-ups and payments' Checkout all use it."""

from __future__ import annotations

from urllib.parse import urlsplit

from billfold.config import Settings
from billfold.errors import ValidationFailed


def check_redirect_url(settings: Settings, url: str, *, field: str) -> str:
    """`url` when it is http(s) on an allowed host (FRONTEND_URL's, STRIPE_SUCCESS/CANCEL_URL's,
    BILLFOLD_ALLOWED_REDIRECT_HOSTS); otherwise ValidationFailed: billfold is no open redirect."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as exc:
        raise ValidationFailed(f"{field} is not a URL", field=field) from exc
    if parts.scheme not in ("http", "https") or not host:
        raise ValidationFailed(f"{field} must be an http(s) URL", field=field)
    if len(url) > 2048:
        raise ValidationFailed(f"{field} is longer than 2048 characters", field=field)
    if host.lower() not in settings.redirect_hosts:
        raise ValidationFailed(f"{field} must point to an allowed host, not {host}", field=field)
    return url


def default_success_url(settings: Settings) -> str:
    """Where a paid Checkout returns: STRIPE_SUCCESS_URL, else FRONTEND_URL's /billing/success."""
    return settings.stripe_success_url or (
        settings.frontend_url.rstrip("/") + "/billing/success?session_id={CHECKOUT_SESSION_ID}"
    )


def default_cancel_url(settings: Settings) -> str:
    """Where an abandoned Checkout returns: STRIPE_CANCEL_URL, else FRONTEND_URL's
    /billing/cancel."""
    return settings.stripe_cancel_url or settings.frontend_url.rstrip("/") + "/billing/cancel"
