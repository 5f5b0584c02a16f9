"""Tenancy: the billing account a caller may act on, created on first use.

Every dialect resolves its account through these functions and nothing else, so the rule lives
in one place: a user acts on their own account, on an organization they belong to (members
read, admins act) and on the shops their token is entitled to; an API key (the host app's
backend) acts on the account it names with `X-Billfold-Account`. Anything else is 403, and an
account that exists but is not the caller's is reported as not found (404), so no response
ever tells one tenant about another's data.
"""

from __future__ import annotations

from typing import TypeGuard

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.auth.principal import (
    ACCOUNT_HEADER,
    SHOP_HEADER,
    AccountRef,
    Principal,
    normalize_shop_domain,
)
from billfold.clock import Clock
from billfold.config import Settings
from billfold.customers.models import AccountKind, BillingAccount
from billfold.customers.service import get_or_create_account
from billfold.db.engine import Database, database_of, is_read_only
from billfold.errors import Forbidden, NotFound, ValidationFailed

# The one query from a principal to its account, built once (a request only binds its values).
_ACCOUNT_BY_REF = select(BillingAccount).where(
    BillingAccount.kind == bindparam("kind"),
    BillingAccount.external_id == bindparam("external_id"),
)


async def _open(
    session: AsyncSession, ref: AccountRef, settings: Settings, clock: Clock | None
) -> BillingAccount:
    """The account, created on first use. In a read unit of work (a GET route) it is read; only
    when it is missing is it created, in a short write unit of work of its own (a read never
    takes the write lock, and most reads find the account)."""
    if is_read_only(session):
        found = await session.execute(
            _ACCOUNT_BY_REF, {"kind": ref.kind.value, "external_id": ref.external_id}
        )
        account = found.scalar_one_or_none()
        if account is not None:
            return account
        async with database_of(session).transaction() as writer:
            return await _open(writer, ref, settings, clock)
    return await get_or_create_account(
        session, ref.kind, ref.external_id, currency=settings.stripe_default_currency, clock=clock
    )


def _refuse_other_account(principal: Principal, ref: AccountRef) -> None:
    """A user may send `X-Billfold-Account` only to name the account the route resolves to."""
    if principal.acting_for is not None and principal.acting_for != ref:
        raise Forbidden(f"{ACCOUNT_HEADER} names an account this request does not act on")


def _api_key_ref(principal: Principal, kind: AccountKind) -> AccountRef:
    ref = principal.acting_for
    if ref is None:
        raise ValidationFailed(
            f"an API key names the account it acts on with {ACCOUNT_HEADER}: {kind.value}:ID",
            field=ACCOUNT_HEADER,
        )
    if ref.kind is not kind:
        raise Forbidden(f"this route acts on a {kind.value} account, {ACCOUNT_HEADER} names {ref}")
    return ref


def _shop_header_sent(header_shop: str | None) -> TypeGuard[str]:
    """An absent or blank `X-Shopify-Shop-Domain` counts as not sent."""
    return header_shop is not None and bool(header_shop.strip())


def _named_shop(header_shop: str | None) -> str | None:
    """The shop domain `X-Shopify-Shop-Domain` names (400 when it is not one), None if not sent."""
    if not _shop_header_sent(header_shop):
        return None
    return normalize_shop_domain(header_shop, field=SHOP_HEADER)


def select_shop(principal: Principal, header_shop: str | None) -> str:
    """The shop a user's request acts on: the `X-Shopify-Shop-Domain` header when the token
    is entitled to it (else 403), otherwise the token's own shop."""
    domain = _named_shop(header_shop)
    if domain is not None:
        if not principal.entitled_to_shop(domain):
            raise Forbidden(f"the token is not entitled to shop {domain}")
        return domain
    if principal.shop is not None:
        return principal.shop
    if principal.shops:
        raise ValidationFailed(
            f"the token is entitled to several shops; name one with {SHOP_HEADER}",
            field=SHOP_HEADER,
        )
    raise Forbidden("the token names no shop")


def user_ref(principal: Principal) -> AccountRef:
    """The caller's own user account (an API key: the user named by `X-Billfold-Account`)."""
    if principal.is_api_key:
        return _api_key_ref(principal, AccountKind.USER)
    ref = AccountRef(AccountKind.USER, principal.subject)
    _refuse_other_account(principal, ref)
    return ref


async def account_for_user(
    session: AsyncSession, principal: Principal, settings: Settings, *, clock: Clock | None = None
) -> BillingAccount:
    """The caller's own user account (an API key: the user named by `X-Billfold-Account`)."""
    return await _open(session, user_ref(principal), settings, clock)


def organization_ref(
    principal: Principal, org_id: str, require_admin: bool, *, header_shop: str | None = None
) -> AccountRef:
    """The organization's account, when the caller may reach it (`account_for_organization`)."""
    ref = AccountRef.parse(f"organization:{org_id}", field="org_id")
    _refuse_other_account(principal, ref)
    if _shop_header_sent(header_shop):
        if not principal.is_api_key:
            select_shop(principal, header_shop)
        raise Forbidden(f"{SHOP_HEADER} names an account this request does not act on")
    if not principal.is_api_key:
        role = principal.role_in(ref.external_id)
        if role is None:
            raise Forbidden(f"not a member of organization {ref.external_id}")
        if require_admin and role != "admin":
            raise Forbidden(f"only an admin of organization {ref.external_id} may do this")
    return ref


async def account_for_organization(
    session: AsyncSession,
    principal: Principal,
    org_id: str,
    settings: Settings,
    require_admin: bool,
    *,
    header_shop: str | None = None,
    clock: Clock | None = None,
) -> BillingAccount:
    """Organization `org_id`'s account: members may read (`require_admin=False`), only
    admins may act (`require_admin=True`); anyone else gets 403. An API key may act on any
    organization (if it also sends `X-Billfold-Account`, it must name the same one). A shop
    named by `X-Shopify-Shop-Domain` is another account than the organization: 403 (for a user,
    after the shop's own check, so a shop the token is not entitled to is refused alike)."""
    ref = organization_ref(principal, org_id, require_admin, header_shop=header_shop)
    return await _open(session, ref, settings, clock)


def shop_ref(principal: Principal, header_shop: str | None) -> AccountRef:
    """The shop's account a caller reaches (`account_for_shop`)."""
    if principal.is_api_key:
        named = _named_shop(header_shop)
        if principal.acting_for is not None:
            ref = _api_key_ref(principal, AccountKind.SHOP)
            if named is not None and named != ref.external_id:
                raise Forbidden(f"{SHOP_HEADER} and {ACCOUNT_HEADER} name different shops")
            return ref
        if named is not None:
            return AccountRef(AccountKind.SHOP, named)
        return _api_key_ref(principal, AccountKind.SHOP)
    ref = AccountRef(AccountKind.SHOP, select_shop(principal, header_shop))
    _refuse_other_account(principal, ref)
    return ref


async def account_for_shop(
    session: AsyncSession,
    principal: Principal,
    header_shop: str | None,
    settings: Settings,
    *,
    clock: Clock | None = None,
) -> BillingAccount:
    """The shop's account: for a user, the shop selected by `select_shop`; for an API key,
    the shop named by `X-Shopify-Shop-Domain` or `X-Billfold-Account` (both: the same)."""
    return await _open(session, shop_ref(principal, header_shop), settings, clock)


def account_ref_for_principal(
    principal: Principal, *, header_shop: str | None = None, require_admin: bool = True
) -> AccountRef:
    """Which account a route that does not name one acts on (`account_for_principal`), decided
    from the caller and the headers alone: 400 or 403 when it may act on none."""
    shop_named = _shop_header_sent(header_shop)
    ref = principal.acting_for
    if principal.is_api_key:
        if ref is None and shop_named:
            return shop_ref(principal, header_shop)
        if ref is None:
            raise ValidationFailed(
                f"an API key names the account it acts on with {ACCOUNT_HEADER}",
                field=ACCOUNT_HEADER,
            )
        if ref.kind is AccountKind.SHOP:
            return shop_ref(principal, header_shop)
        if shop_named:
            raise Forbidden(f"{SHOP_HEADER} and {ACCOUNT_HEADER} name different accounts")
        return ref
    if ref is not None and ref.kind is AccountKind.ORGANIZATION:
        return organization_ref(principal, ref.external_id, require_admin)
    if (
        (ref is not None and ref.kind is AccountKind.SHOP)
        or shop_named
        or (ref is None and principal.shop is not None)
    ):
        return shop_ref(principal, header_shop)
    return user_ref(principal)


async def account_for_principal(
    session: AsyncSession,
    principal: Principal,
    settings: Settings,
    *,
    header_shop: str | None = None,
    require_admin: bool = True,
    clock: Clock | None = None,
) -> BillingAccount:
    """The account of a route that does not name one in its path.

    An API key: the account in `X-Billfold-Account` (or the shop in `X-Shopify-Shop-Domain`).
    A user: the account named in `X-Billfold-Account` if they may act on it (an organization
    needs the admin role unless `require_admin=False`); else the selected shop when the token
    or header names one; else the user's own account.
    """
    ref = account_ref_for_principal(principal, header_shop=header_shop, require_admin=require_admin)
    return await _open(session, ref, settings, clock)


async def open_account(
    database: Database, ref: AccountRef, settings: Settings, *, clock: Clock | None = None
) -> BillingAccount:
    """The account `ref` names, created on first use (a read first; a short writer of its own
    only when it is missing): for a hot read that found no account."""
    async with database.read() as session:
        return await _open(session, ref, settings, clock)


def may_access_account(principal: Principal, account: BillingAccount, *, admin: bool) -> bool:
    """Whether the caller may see an existing account: an API key always; a user their own
    account, their entitled shops, and organizations where they are admin (or a member, when
    `admin=False`)."""
    if principal.is_api_key:
        return True
    if account.kind == AccountKind.USER.value:
        return account.external_id == principal.subject
    if account.kind == AccountKind.SHOP.value:
        return principal.entitled_to_shop(account.external_id)
    if account.kind == AccountKind.ORGANIZATION.value:
        role = principal.role_in(account.external_id)
        return role == "admin" or (role == "member" and not admin)
    return False


def require_account_access(
    principal: Principal, account: BillingAccount | None, *, admin: bool
) -> BillingAccount:
    """The account when the caller may see it; otherwise 404, exactly as if it did not exist."""
    if account is None or not may_access_account(principal, account, admin=admin):
        raise NotFound("no such billing account")
    return account
