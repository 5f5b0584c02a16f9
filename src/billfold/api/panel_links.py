"""Sign-in links to the billing panel, for the host app's backend (billfold.auth.sessions).

- `POST /api/v1/panel/sign-in-links` `{operator?, ttlSeconds?}` -> `{url, token, expiresAt}`

An API key names the account with `X-Billfold-Account` (or the shop header), and may ask for an
operator's link (`operator: true`, the console); a user's token gets a link to the account it
acts on by the API's one tenancy rule (an organization needs the admin role), never an
operator's. The link is single-use and lives `ttlSeconds` (default 120, at most 600).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from billfold.api.auth_deps import PrincipalDep, ShopHeaderDep
from billfold.api.deps import ContainerDep, ReadSessionDep
from billfold.api.errors import AUTHENTICATED, error_responses
from billfold.auth.sessions import (
    DEFAULT_LINK_SECONDS,
    MAX_LINK_SECONDS,
    account_ref,
    issue_sign_in_link,
)
from billfold.auth.tenancy import account_for_principal
from billfold.errors import Forbidden

router = APIRouter(prefix="/api/v1/panel", tags=["billing panel"])

SIGN_IN_PATH = "/sign-in"


class SignInLinkCreate(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    operator: bool = False
    ttl_seconds: int = Field(default=DEFAULT_LINK_SECONDS, ge=1, le=MAX_LINK_SECONDS)


class SignInLinkRead(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )

    url: str
    token: str
    expires_at: datetime


@router.post(
    "/sign-in-links",
    response_model=SignInLinkRead,
    responses=error_responses(*AUTHENTICATED),
)
async def create_sign_in_link(
    session: ReadSessionDep,
    container: ContainerDep,
    principal: PrincipalDep,
    shop: ShopHeaderDep = None,
    body: SignInLinkCreate | None = None,
) -> SignInLinkRead:
    """A short-lived, single-use link that signs the customer in to the billing panel."""
    body = body or SignInLinkCreate()
    settings = container.settings
    now = container.clock.now()
    if body.operator:
        if not principal.is_api_key:
            raise Forbidden("only an API key may ask for an operator's sign-in link")
        token = issue_sign_in_link(
            settings,
            None,
            now=now,
            subject=principal.actor,
            operator=True,
            ttl_seconds=body.ttl_seconds,
        )
    else:
        account = await account_for_principal(
            session,
            principal,
            settings,
            header_shop=shop,
            require_admin=True,
            clock=container.clock,
        )
        token = issue_sign_in_link(
            settings,
            account_ref(account),
            now=now,
            subject=principal.actor,
            ttl_seconds=body.ttl_seconds,
        )
    return SignInLinkRead(
        url=f"{settings.base_url}{SIGN_IN_PATH}?{urlencode({'token': token})}",
        token=token,
        expires_at=now + timedelta(seconds=body.ttl_seconds),
    )
