"""FastAPI dependencies that authenticate the caller.

Credentials, in the order they are looked for:
- `Authorization: Bearer <jwt>`: a user's token (see `billfold.auth.tokens`);
- `Authorization: Bearer bf_...` or `X-API-Key: bf_...`: an API key of the host app's backend,
  which names the account it acts on with `X-Billfold-Account: user:ID | organization:ID |
  shop:DOMAIN`;
- for the tRPC dialect, a `token` field in the request body (`principal_from_token_or_header`).
Missing or bad credentials are 401. The authenticated principal is also left on
`request.state.principal`, where the audit context finds it.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.api.deps import get_container
from billfold.api.ratelimit import charge_subject
from billfold.auth.apikeys import authenticate_api_key, looks_like_api_key
from billfold.auth.principal import ACCOUNT_HEADER, SHOP_HEADER, AccountRef, Principal
from billfold.auth.tokens import verify_token
from billfold.errors import Unauthenticated

API_KEY_HEADER = "X-API-Key"


def bearer_token(request: Request) -> str | None:
    """The value of `Authorization: Bearer ...`, None when absent."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def header_credential(request: Request) -> str | None:
    """The one credential the headers carry; two different ones are refused."""
    bearer = bearer_token(request)
    api_key = request.headers.get(API_KEY_HEADER, "").strip() or None
    if bearer and api_key and bearer != api_key:
        raise Unauthenticated(f"send either Authorization or {API_KEY_HEADER}, not both")
    # A non-Bearer Authorization (say, a proxy's Basic) is ignored when X-API-Key is sent.
    if request.headers.get("authorization") and bearer is None and api_key is None:
        raise Unauthenticated("Authorization must use the Bearer scheme")
    return bearer or api_key


async def authenticate(
    request: Request, session: AsyncSession | None, credential: str
) -> Principal:
    """The principal of a JWT or an API key (looked up in `session`, else in the request's
    write unit of work when it is open, else in a short one of its own: a key's lookup may
    record its last use)."""
    container = get_container(request)
    if looks_like_api_key(credential):
        if session is None:
            session = getattr(request.state, "db_session", None)
        if session is None:
            async with container.db.transaction() as own:
                principal = await authenticate_api_key(own, credential, now=container.clock.now())
        else:
            principal = await authenticate_api_key(session, credential, now=container.clock.now())
    else:
        principal = verify_token(container.settings, credential)
    acting_for = request.headers.get(ACCOUNT_HEADER)
    if acting_for:
        principal = dataclasses.replace(principal, acting_for=AccountRef.parse(acting_for))
    # Rate limits are keyed by who the caller is, not by which credential it sent.
    await charge_subject(request, principal.kind, principal.subject)
    request.state.principal = principal
    return principal


# No session dependency: a user's token needs no database, and a route that only reads must
# not open a writer to authenticate its caller.
async def current_principal(request: Request) -> Principal:
    """The authenticated caller; 401 when credentials are missing or bad."""
    credential = header_credential(request)
    if credential is None:
        raise Unauthenticated("missing credentials: send Authorization: Bearer <token>")
    return await authenticate(request, None, credential)


async def optional_principal(request: Request) -> Principal | None:
    """The caller when credentials are sent (bad ones are still 401), else None."""
    credential = header_credential(request)
    if credential is None:
        return None
    return await authenticate(request, None, credential)


async def principal_from_token_or_header(
    request: Request, body_token: str | None, session: AsyncSession | None = None
) -> Principal:
    """For dialects that carry the token in the body (document 000's tRPC `token` field).

    The header credential and the body token are both accepted; when both are sent they must
    name the same caller, otherwise 401 (a request never acts for two callers).
    """
    header = header_credential(request)
    body = body_token.strip() if isinstance(body_token, str) and body_token.strip() else None
    if header is None and body is None:
        raise Unauthenticated("missing credentials: send a token")
    if header is None or body is None or header == body:
        return await authenticate(request, session, header or body or "")
    from_body = await authenticate(request, session, body)
    from_header = await authenticate(request, session, header)
    if (from_body.kind, from_body.subject) != (from_header.kind, from_header.subject):
        raise Unauthenticated("the body token and the Authorization header name different callers")
    return from_header


PrincipalDep = Annotated[Principal, Depends(current_principal)]
OptionalPrincipalDep = Annotated[Principal | None, Depends(optional_principal)]


async def shop_header(
    x_shopify_shop_domain: Annotated[str | None, Header(alias=SHOP_HEADER)] = None,
) -> str | None:
    """Document 001's optional `X-Shopify-Shop-Domain`; pass it to `account_for_shop`, which
    lets it select only a shop the token is entitled to."""
    return x_shopify_shop_domain


ShopHeaderDep = Annotated[str | None, Depends(shop_header)]
