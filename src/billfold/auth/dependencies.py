"""FastAPI dependencies that authenticate the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from billfold.api.deps import get_container
from billfold.auth.principal import Principal
from billfold.auth.tokens import verify_token
from billfold.errors import Unauthenticated


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def current_principal(request: Request) -> Principal:
    """The authenticated caller; 401 when credentials are missing or bad."""
    token = bearer_token(request)
    if token is None:
        raise Unauthenticated("missing bearer token")
    return verify_token(get_container(request).settings, token)


PrincipalDep = Annotated[Principal, Depends(current_principal)]
