"""The billing account of a route that does not name one in its path (documents 001 and 003).

A user's token acts on their own account, or on a shop: the token's `shop` claim, or the shop
`X-Shopify-Shop-Domain` names when the token is entitled to it (otherwise 403). An API key names
the account with `X-Billfold-Account` (or the shop header). The rule itself is
`billfold.auth.tenancy.account_for_principal`; these are its FastAPI dependencies.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.api.auth_deps import PrincipalDep, ShopHeaderDep
from billfold.api.deps import ContainerDep, ReadSessionDep, SessionDep
from billfold.auth.principal import Principal
from billfold.auth.tenancy import account_for_principal
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
