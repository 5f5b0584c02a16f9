"""Tenancy: which billing account a caller may act on; never another tenant's."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from billfold.auth.principal import AccountRef, Principal
from billfold.auth.tenancy import (
    account_for_organization,
    account_for_principal,
    account_for_shop,
    account_for_user,
    may_access_account,
    require_account_access,
    select_shop,
)
from billfold.config import Settings
from billfold.customers.models import AccountKind
from billfold.db.engine import Database
from billfold.errors import Forbidden, NotFound, ValidationFailed

ALICE = Principal(kind="user", subject="alice")
BOB = Principal(kind="user", subject="bob")
ADMIN = Principal(kind="user", subject="ann", org_id="o1", role="admin")
MEMBER = Principal(kind="user", subject="mo", org_id="o1", role="member")
SHOPPER = Principal(kind="user", subject="sam", shop="a.myshopify.com", shops=("a.myshopify.com",))
MULTI = Principal(kind="user", subject="max", shops=("a.myshopify.com", "b.myshopify.com"))
KEY = Principal(kind="api_key", subject="ak_1", api_key_name="backend")


def acting(principal: Principal, ref: str) -> Principal:
    return dataclasses.replace(principal, acting_for=AccountRef.parse(ref))


async def test_user_account_is_created_once_with_the_default_currency(
    database: Database, settings: Settings
) -> None:
    settings.stripe_default_currency = "eur"
    async with database.transaction() as session:
        first = await account_for_user(session, ALICE, settings)
    async with database.transaction() as session:
        again = await account_for_user(session, ALICE, settings)
        other = await account_for_user(session, BOB, settings)
    assert first.id == again.id and first.currency == "eur"
    assert (first.kind, first.external_id) == ("user", "alice")
    assert other.id != first.id and other.external_id == "bob"


async def test_a_user_cannot_name_another_users_account(
    database: Database, settings: Settings
) -> None:
    async with database.transaction() as session:
        with pytest.raises(Forbidden):
            await account_for_user(session, acting(ALICE, "user:bob"), settings)
        mine = await account_for_user(session, acting(ALICE, "user:alice"), settings)
        assert mine.external_id == "alice"
        with pytest.raises(Forbidden):
            await account_for_principal(session, acting(ALICE, "user:bob"), settings)


async def test_api_key_names_the_account(database: Database, settings: Settings) -> None:
    async with database.transaction() as session:
        with pytest.raises(ValidationFailed, match="X-Billfold-Account"):
            await account_for_user(session, KEY, settings)
        with pytest.raises(Forbidden):
            await account_for_user(session, acting(KEY, "organization:o1"), settings)
        bob = await account_for_user(session, acting(KEY, "user:bob"), settings)
        assert bob.external_id == "bob"
        org = await account_for_principal(session, acting(KEY, "organization:o7"), settings)
        assert (org.kind, org.external_id) == ("organization", "o7")


async def test_organization_roles(database: Database, settings: Settings) -> None:
    async with database.transaction() as session:
        acted = await account_for_organization(session, ADMIN, "o1", settings, require_admin=True)
        read = await account_for_organization(session, MEMBER, "o1", settings, require_admin=False)
        assert acted.id == read.id and acted.kind == "organization"
        with pytest.raises(Forbidden, match="admin"):
            await account_for_organization(session, MEMBER, "o1", settings, require_admin=True)
        with pytest.raises(Forbidden, match="member"):
            await account_for_organization(session, ADMIN, "o2", settings, require_admin=False)
        with pytest.raises(Forbidden):
            await account_for_organization(session, ALICE, "o1", settings, require_admin=False)
        by_key = await account_for_organization(session, KEY, "o1", settings, require_admin=True)
        assert by_key.id == acted.id
        with pytest.raises(Forbidden):
            await account_for_organization(
                session, acting(KEY, "organization:o2"), "o1", settings, require_admin=True
            )
        with pytest.raises(ValidationFailed):
            await account_for_organization(session, KEY, "", settings, require_admin=True)
        # Through the generic entry point, naming the organization in the header.
        via_header = await account_for_principal(
            session, acting(ADMIN, "organization:o1"), settings
        )
        assert via_header.id == acted.id
        with pytest.raises(Forbidden):
            await account_for_principal(session, acting(MEMBER, "organization:o1"), settings)


def test_shop_selection() -> None:
    assert select_shop(SHOPPER, None) == "a.myshopify.com"
    assert select_shop(SHOPPER, " A.myshopify.com ") == "a.myshopify.com"
    with pytest.raises(Forbidden, match="not entitled"):
        select_shop(SHOPPER, "b.myshopify.com")
    with pytest.raises(ValidationFailed, match="several shops"):
        select_shop(MULTI, None)
    assert select_shop(MULTI, "b.myshopify.com") == "b.myshopify.com"
    with pytest.raises(Forbidden, match="names no shop"):
        select_shop(ALICE, None)
    with pytest.raises(Forbidden, match="not entitled"):
        select_shop(ALICE, "a.myshopify.com")
    with pytest.raises(ValidationFailed):
        select_shop(SHOPPER, "a.myshopify.com/../b")


async def test_shop_accounts(database: Database, settings: Settings) -> None:
    async with database.transaction() as session:
        mine = await account_for_shop(session, SHOPPER, None, settings)
        assert (mine.kind, mine.external_id) == ("shop", "a.myshopify.com")
        with pytest.raises(Forbidden):
            await account_for_shop(session, SHOPPER, "b.myshopify.com", settings)
        by_key = await account_for_shop(session, KEY, "a.myshopify.com", settings)
        assert by_key.id == mine.id
        by_ref = await account_for_shop(
            session, acting(KEY, "shop:a.myshopify.com"), None, settings
        )
        assert by_ref.id == mine.id
        with pytest.raises(Forbidden):
            await account_for_shop(
                session, acting(KEY, "shop:a.myshopify.com"), "b.myshopify.com", settings
            )
        with pytest.raises(ValidationFailed):
            await account_for_shop(session, KEY, None, settings)
        # The generic entry point goes to the shop when the token names one.
        generic = await account_for_principal(session, SHOPPER, settings)
        assert generic.id == mine.id
        chosen = await account_for_principal(
            session, MULTI, settings, header_shop="b.myshopify.com"
        )
        assert chosen.external_id == "b.myshopify.com"
        with pytest.raises(Forbidden):
            await account_for_principal(session, ALICE, settings, header_shop="a.myshopify.com")
        own = await account_for_principal(session, ALICE, settings)
        assert (own.kind, own.external_id) == ("user", "alice")


async def test_reading_an_existing_account(database: Database, settings: Settings) -> None:
    async with database.transaction() as session:
        alice = await account_for_user(session, ALICE, settings)
        org = await account_for_organization(session, ADMIN, "o1", settings, require_admin=True)
        shop = await account_for_shop(session, SHOPPER, None, settings)
    assert may_access_account(ALICE, alice, admin=True)
    assert not may_access_account(BOB, alice, admin=False)
    assert may_access_account(ADMIN, org, admin=True)
    assert may_access_account(MEMBER, org, admin=False)
    assert not may_access_account(MEMBER, org, admin=True)
    assert not may_access_account(ALICE, org, admin=False)
    assert may_access_account(SHOPPER, shop, admin=True)
    assert not may_access_account(MULTI, alice, admin=False)
    assert all(may_access_account(KEY, a, admin=True) for a in (alice, org, shop))
    with pytest.raises(NotFound):
        require_account_access(BOB, alice, admin=False)
    with pytest.raises(NotFound):
        require_account_access(BOB, None, admin=False)
    assert require_account_access(ALICE, alice, admin=True) is alice


@pytest.mark.parametrize(
    "text",
    ["alice", "team:o1", "user:", "shop:not a domain", "user:a\x01b", ":x", "user:\udc00"],
)
def test_account_header_is_validated(text: str) -> None:
    with pytest.raises(ValidationFailed):
        AccountRef.parse(text)


def test_account_header_forms() -> None:
    assert AccountRef.parse("Organization:o1") == AccountRef(AccountKind.ORGANIZATION, "o1")
    assert str(AccountRef.parse("shop:X.myshopify.com")) == "shop:x.myshopify.com"
    assert AccountRef.parse("user:auth0|12:34").external_id == "auth0|12:34"


async def test_concurrent_first_use_creates_one_account(
    database: Database, settings: Settings
) -> None:
    async def first_use() -> str:
        async with database.transaction() as session:
            return (
                await account_for_user(session, Principal(kind="user", subject="new"), settings)
            ).id

    ids = await asyncio.gather(*(first_use() for _ in range(20)))
    assert len(set(ids)) == 1
