"""Document 003's `X-SESSION-ID`: the panel session (billfold.auth.sessions) a request comes from.

"All endpoints below require a valid UI session (`X-SESSION-ID`) + auth token": the session is
the billing panel's (the cookie's token, which the panel's pages may also send as this header).
With BILLFOLD_REQUIRE_SESSION_ID=true a route taking `SessionCheckedAccountDep` (or
`SessionCheckedReadingAccountDep`) refuses a request without a live session (401) or whose
session belongs to another account than the one the request acts on (403); without the setting
(the default) the header is optional, but one that is sent is still checked.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.api.account_deps import ActingAccountDep, ReadingAccountDep
from billfold.api.deps import ContainerDep
from billfold.auth.sessions import PanelSession, find_session
from billfold.container import Container
from billfold.customers.models import BillingAccount
from billfold.db.engine import Database
from billfold.errors import Forbidden, Unauthenticated

SESSION_HEADER = "X-SESSION-ID"


async def _session_of_header(db: Database, token: str, container: Container) -> PanelSession:
    async with db.read() as session:
        return await _find(session, token, container)


async def _find(session: AsyncSession, token: str, container: Container) -> PanelSession:
    row = await find_session(session, token, now=container.clock.now())
    session.expunge(row)
    return row


async def panel_session_of_request(
    container: ContainerDep,
    x_session_id: Annotated[str | None, Header(alias=SESSION_HEADER)] = None,
) -> PanelSession | None:
    """The request's panel session: None when no `X-SESSION-ID` is sent and the setting does not
    require one; 401 when it is required and missing, or sent and not live."""
    token = (x_session_id or "").strip()
    if not token:
        if container.settings.require_session_id:
            raise Unauthenticated(f"{SESSION_HEADER} is required: sign in to the billing panel")
        return None
    return await _session_of_header(container.db, token, container)


PanelSessionDep = Annotated[PanelSession | None, Depends(panel_session_of_request)]


def check_session_account(panel: PanelSession | None, account: BillingAccount) -> BillingAccount:
    """`account` when the request's session (if any) is a session of that account; an operator's
    session is no customer's (403)."""
    if panel is not None and panel.account_id != account.id:
        raise Forbidden(f"{SESSION_HEADER} is a session of another account")
    return account


async def session_checked_account(
    account: ActingAccountDep, panel: PanelSessionDep
) -> BillingAccount:
    """The account the caller acts on, in the session the request comes from."""
    return check_session_account(panel, account)


async def session_checked_reading_account(
    account: ReadingAccountDep, panel: PanelSessionDep
) -> BillingAccount:
    """The account the caller reads, in the session the request comes from."""
    return check_session_account(panel, account)


SessionCheckedAccountDep = Annotated[BillingAccount, Depends(session_checked_account)]
SessionCheckedReadingAccountDep = Annotated[
    BillingAccount, Depends(session_checked_reading_account)
]
