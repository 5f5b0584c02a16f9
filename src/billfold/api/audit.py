"""`GET /api/v1/audit`: the audit log of one billing account, newest first.

API keys may read any account (or, with no account named, the whole log); a user may read
their own account, their entitled shops and organizations they administer. An organization
member gets 403; an account that is not the caller's is 404, as if it did not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from billfold.api.account_deps import account_of_request
from billfold.api.auth_deps import PrincipalDep, ShopHeaderDep
from billfold.api.deps import ContainerDep, ReadSessionDep
from billfold.api.errors import AUTHENTICATED, error_responses
from billfold.audit.schemas import AuditEntryRead, AuditPage
from billfold.audit.service import list_entries
from billfold.auth.principal import AccountRef
from billfold.auth.tenancy import (
    may_access_account,
    require_account_access,
)
from billfold.customers.models import BillingAccount
from billfold.customers.service import find_account
from billfold.errors import Forbidden, ValidationFailed

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("", response_model=AuditPage, responses=error_responses(*AUTHENTICATED, 404))
async def read_audit_log(
    session: ReadSessionDep,
    container: ContainerDep,
    principal: PrincipalDep,
    shop: ShopHeaderDep = None,
    account_id: Annotated[
        str | None, Query(max_length=40, description="A billing account id (acct_...).")
    ] = None,
    account: Annotated[
        str | None,
        Query(max_length=300, description="Or the account's subject: user:ID, organization:ID."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=20, description="`next_cursor`.")] = None,
) -> AuditPage:
    """The audit entries of one account (API keys: of every account when none is named)."""
    if account_id is not None and account is not None:
        raise ValidationFailed(
            "name the account by account_id or by account, not both", field="account"
        )
    before_seq: int | None = None
    if cursor is not None:
        # ASCII digits only (str.isdigit also takes fullwidth digits and "²"), within a BIGINT.
        if not (cursor.isascii() and cursor.isdigit()) or int(cursor) >= 2**63:
            raise ValidationFailed("cursor must be a next_cursor value", field="cursor")
        before_seq = int(cursor)

    target: BillingAccount | None
    if account_id is not None:
        target = await session.get(BillingAccount, account_id)
    elif account is not None:
        ref = AccountRef.parse(account, field="account")
        target = await find_account(session, ref.kind, ref.external_id)
    elif principal.is_api_key and principal.acting_for is None and not (shop and shop.strip()):
        target = None
    else:
        # The account every dialect acts on (`X-Billfold-Account`, `X-Shopify-Shop-Domain`,
        # the token's shop, else the user's own), by the one rule; an organization needs admin.
        target = await account_of_request(session, container, principal, shop, require_admin=True)

    names_by_header = principal.acting_for is not None or bool(shop and shop.strip())
    if (account_id is not None or account is not None) and names_by_header:
        # The query and a header both name the account: they must agree (the header's account
        # by the one rule, entitlement checked there), else 403 as every dialect answers a
        # request naming two accounts; the query never quietly wins.
        named = await account_of_request(session, container, principal, shop, require_admin=True)
        if target is None or named.id != target.id:
            raise Forbidden("the account query and the account header name different accounts")
    if (
        target is not None
        and not may_access_account(principal, target, admin=True)
        and may_access_account(principal, target, admin=False)
    ):
        raise Forbidden("only an organization admin may read its audit log")
    if target is not None or account_id is not None or account is not None:
        # Missing and not the caller's read alike (404), so no answer tells of another tenant.
        target = require_account_access(principal, target, admin=True)

    entries, has_more = await list_entries(
        session,
        account_id=target.id if target is not None else None,
        limit=limit,
        before_seq=before_seq,
    )
    return AuditPage(
        data=[AuditEntryRead.of(entry) for entry in entries],
        has_more=has_more,
        next_cursor=str(entries[-1].seq) if has_more and entries else None,
    )
