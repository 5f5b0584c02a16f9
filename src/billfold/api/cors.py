"""Cross-origin requests from the host app's frontends (a browser's `@trpc/client`, `fetch`).

The origins allowed are the hosts billfold already trusts as the app's own: `FRONTEND_URL`'s,
`STRIPE_SUCCESS_URL`'s and `STRIPE_CANCEL_URL`'s, and `BILLFOLD_ALLOWED_REDIRECT_HOSTS`, over
http or https, on any port. Credentials travel in the `Authorization` header (or a tRPC input's
`token`), never in cookies, so no cookie is allowed across origins.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from billfold.config import Settings


def allowed_origin_pattern(settings: Settings) -> str | None:
    """A regular expression matching the allowed origins, None when there are none."""
    hosts = sorted(settings.redirect_hosts)
    if not hosts:
        return None
    names = "|".join(re.escape(host) for host in hosts)
    return rf"https?://(?:{names})(?::[0-9]{{1,5}})?"


def install_cors(app: FastAPI, settings: Settings) -> None:
    """Answer CORS preflights and tag responses for the app's own origins."""
    pattern = allowed_origin_pattern(settings)
    if pattern is None:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=pattern,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "X-API-Key",
            "X-Billfold-Account",
            "X-Shopify-Shop-Domain",
            "X-Request-ID",
            "Idempotency-Key",
            "trpc-accept",
        ],
        expose_headers=["X-Request-ID"],
        allow_credentials=False,
        max_age=600,
    )
