"""The billing account of a route that does not name one in its path (documents 001 and 003).

A user's token acts on their own account, or on a shop: the token's `shop` claim, or the shop
`X-Shopify-Shop-Domain` names when the token is entitled to it (otherwise 403). An API key names
the account with `X-Billfold-Account` (or the shop header). The rule itself is
`billfold.auth.tenancy.account_for_principal`; these are its FastAPI dependencies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.api.auth_deps import PrincipalDep, ShopHeaderDep, current_principal
from billfold.api.deps import ContainerDep, ReadSessionDep, SessionDep, get_container
from billfold.auth.principal import SHOP_HEADER, AccountRef, Principal
from billfold.auth.tenancy import account_for_principal, account_ref_for_principal, open_account
from billfold.container import Container
from billfold.customers.models import BillingAccount


async def account_of_request(
    session: AsyncSession,
    container: Container,
    principal: Principal,
    shop: str | None,
    *,
    require_admin: bool,
) -> BillingAccount:
    """The one rule, for a route that resolves its account itself (the audit read)."""
    return await account_for_principal(
        session,
        principal,
        container.settings,
        header_shop=shop,
        require_admin=require_admin,
        clock=container.clock,
    )


async def acting_account(
    session: SessionDep,
    container: ContainerDep,
    principal: PrincipalDep,
    shop: ShopHeaderDep = None,
) -> BillingAccount:
    """The account the caller acts on (an organization needs the admin role), in the request's
    write unit of work."""
    return await account_of_request(session, container, principal, shop, require_admin=True)


async def reading_account(
    principal: PrincipalDep,
    session: ReadSessionDep,
    container: ContainerDep,
    shop: ShopHeaderDep = None,
) -> BillingAccount:
    """The account the caller reads (any member of an organization may), in the request's read
    unit of work: a route taking it takes `ReadSessionDep`. The caller first: an API key's
    lookup is a short unit of work of its own, done before the read one holds a connection."""
    return await account_of_request(session, container, principal, shop, require_admin=False)


ActingAccountDep = Annotated[BillingAccount, Depends(acting_account)]
ReadingAccountDep = Annotated[BillingAccount, Depends(reading_account)]


@dataclass(frozen=True, slots=True)
class ReadingCaller:
    """A hot read's caller and the account it reads (decided from the headers, not read yet)."""

    container: Container
    principal: Principal
    ref: AccountRef


# One flat dependency for the reads apps make on every page (FastAPI resolves and validates each
# dependency and parameter of a graph at a cost per request): the caller, then the account it
# may read, by the same rule as ReadingAccountDep (tenancy's account_ref_for_principal); the
# route reads the account and its answer in one hot read (db/hot_read.py) and takes no unit of
# work. The shop header is read here, and documented by the route's `openapi_extra=SHOP_HEADER_DOC`.
async def reading_caller(request: Request) -> ReadingCaller:
    principal = await current_principal(request)
    ref = account_ref_for_principal(
        principal, header_shop=request.headers.get(SHOP_HEADER), require_admin=False
    )
    return ReadingCaller(get_container(request), principal, ref)


# What ShopHeaderDep's parameter puts in the OpenAPI document, for a route on ReadingCallerDep.
SHOP_HEADER_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": SHOP_HEADER,
            "in": "header",
            "required": False,
            "schema": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": SHOP_HEADER},
        }
    ]
}


ReadingCallerDep = Annotated[ReadingCaller, Depends(reading_caller)]

T = TypeVar("T")


async def read_opening_account(
    caller: ReadingCaller, read: Callable[[Container, AccountRef], Awaitable[T | None]]
) -> T:
    """`read`'s answer for the caller's account; when the account does not exist yet (`read`
    answers None) it is created on first use, as ReadingAccountDep would, and read again."""
    found = await read(caller.container, caller.ref)
    if found is None:
        container = caller.container
        await open_account(container.db, caller.ref, container.settings, clock=container.clock)
        found = await read(container, caller.ref)
        if found is None:
            raise RuntimeError(f"the account {caller.ref} was created but cannot be read")
    return found
