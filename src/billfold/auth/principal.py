from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PrincipalKind = Literal["user", "api_key"]
OrgRole = Literal["admin", "member"]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller.

    `subject` is the token's `sub` (a user id) or, for an API key, the key's id. A token may
    also name one organization (`org_id` with `role`) and/or one shop (`shop`, a domain).
    An API key acts for the host app's backend and may act on any account.
    """

    kind: PrincipalKind
    subject: str
    org_id: str | None = None
    role: OrgRole | None = None
    shop: str | None = None
    api_key_name: str | None = None

    @property
    def is_api_key(self) -> bool:
        return self.kind == "api_key"
