"""Cross-origin requests from the host app's frontends (a browser's `@trpc/client`, `fetch`).

The origins allowed are the hosts billfold already trusts as the app's own: `FRONTEND_URL`'s,
`STRIPE_SUCCESS_URL`'s and `STRIPE_CANCEL_URL`'s, and `BILLFOLD_ALLOWED_REDIRECT_HOSTS`, over
http or https, on any port. Credentials travel in the `Authorization` header (or a tRPC input's
`token`), never in cookies, so no cookie is allowed across origins.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        CrossOriginMiddleware,
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


class CrossOriginMiddleware:
    """Starlette's CORSMiddleware for requests that carry an `Origin`; for those that do not (a
    server, a same-origin page), only what it would add: `Vary: Origin`. Starlette's parses the
    headers of every request and of every response to learn that there is nothing to do."""

    def __init__(self, app: ASGIApp, /, **options: Any) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(name == b"origin" for name, _ in scope["headers"]):
            await self.cors(scope, receive, send)
            return

        async def send_varying(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept, vary = [], []
                for name, value in message.get("headers", []):
                    if name.lower() == b"vary":
                        vary.append(value)
                    else:
                        kept.append((name, value))
                kept.append((b"vary", b", ".join([*vary, b"Origin"])))
                message["headers"] = kept
            await send(message)

        await self.app(scope, receive, send_varying)
