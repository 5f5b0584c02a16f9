"""The authenticated caller and the billing account it names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from billfold.customers.models import AccountKind
from billfold.errors import ValidationFailed

PrincipalKind = Literal["user", "api_key"]
OrgRole = Literal["admin", "member"]

# The headers by which a caller names the account it acts on; tenancy's messages name them.
ACCOUNT_HEADER = "X-Billfold-Account"
SHOP_HEADER = "X-Shopify-Shop-Domain"

# A shop is named by its domain (document 001: `x.myshopify.com`).
_SHOP_DOMAIN = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$"
)
_EXTERNAL_ID = re.compile(r"^[^\x00-\x1f\x7f\ud800-\udfff]{1,255}$")


def normalize_shop_domain(value: str, *, field: str = "shop") -> str:
    """`X.myshopify.com ` -> `x.myshopify.com`; anything that is not a domain is refused."""
    domain = value.strip().lower().rstrip(".")
    if len(domain) > 253 or not _SHOP_DOMAIN.match(domain):
        raise ValidationFailed(f"{domain[:80]!r} is not a shop domain", field=field)
    return domain


@dataclass(frozen=True, slots=True)
class AccountRef:
    """A billing account named by its subject: `user:alice`, `organization:o1`,
    `shop:x.myshopify.com` (the form of the `X-Billfold-Account` header)."""

    kind: AccountKind
    external_id: str

    @classmethod
    def parse(cls, text: str, *, field: str = ACCOUNT_HEADER) -> AccountRef:
        kind_text, sep, external_id = text.strip().partition(":")
        kinds = {kind.value: kind for kind in AccountKind}
        if not sep or kind_text.lower() not in kinds:
            raise ValidationFailed(
                f"{field} must look like user:ID, organization:ID or shop:DOMAIN", field=field
            )
        kind = kinds[kind_text.lower()]
        external_id = external_id.strip()
        if kind is AccountKind.SHOP:
            external_id = normalize_shop_domain(external_id, field=field)
        elif not _EXTERNAL_ID.match(external_id):
            raise ValidationFailed(f"{field} names an empty or invalid id", field=field)
        return cls(kind=kind, external_id=external_id)

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.external_id}"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller.

    `subject` is the token's `sub` (a user id) or, for an API key, the key's id. A token may
    name organizations with a role (`org_id` + `role`, or an `orgs` claim) and the shops it is
    entitled to (`shop`, or a `shops` list); `shop` is the one selected for this request.
    An API key acts for the host app's backend: it may act on any account, which it names
    with the `X-Billfold-Account` header (`acting_for`).
    """

    kind: PrincipalKind
    subject: str
    org_id: str | None = None
    role: OrgRole | None = None
    shop: str | None = None
    api_key_name: str | None = None
    # Every organization the token names, with the caller's role in it.
    memberships: tuple[tuple[str, OrgRole], ...] = ()
    # Every shop the token is entitled to (includes `shop`).
    shops: tuple[str, ...] = ()
    # The account an API key acts on in this request (`X-Billfold-Account`).
    acting_for: AccountRef | None = None

    @property
    def is_api_key(self) -> bool:
        return self.kind == "api_key"

    @property
    def actor(self) -> str:
        """How the audit log names this caller: `user:alice` or `api_key:ak_...`."""
        return f"{self.kind}:{self.subject}"

    def role_in(self, org_id: str) -> OrgRole | None:
        """The caller's role in organization `org_id`, None when not a member."""
        for member_of, role in self.memberships:
            if member_of == org_id:
                return role
        if self.org_id == org_id:
            return self.role or "member"
        return None

    def entitled_to_shop(self, domain: str) -> bool:
        return domain == self.shop or domain in self.shops
