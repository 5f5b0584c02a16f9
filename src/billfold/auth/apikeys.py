"""API keys: created by `billfold apikey create`, shown once, kept as SHA-256 hashes.

A key looks like `bf_` followed by 43 URL-safe characters (256 random bits). Because the
secret has that much entropy, a plain SHA-256 is the right hash (a slow password hash would
add nothing but latency to every request); lookups go by the hash's unique index.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from billfold.auth.models import ApiKey
from billfold.auth.principal import Principal
from billfold.clock import utcnow
from billfold.db.base import new_id
from billfold.errors import Conflict, NotFound, Unauthenticated, ValidationFailed

KEY_PREFIX = "bf_"
_VISIBLE_CHARS = 8
# `last_used_at` is written at most this often per key, so busy keys do not contend on it.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """A new key: `secret` is the only time the full key is available."""

    key: ApiKey
    secret: str


def hash_api_key(secret: str) -> str:
    """The stored form of a key: SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_api_key(credential: str) -> bool:
    """Whether a credential is an API key (`bf_...`) rather than a JWT."""
    return credential.startswith(KEY_PREFIX)


async def create_api_key(
    session: AsyncSession,
    name: str,
    *,
    expires_in: timedelta | None = None,
    now: datetime | None = None,
) -> CreatedApiKey:
    """Create a key named `name` (valid for `expires_in`, or until revoked); the returned
    secret is never stored."""
    name = name.strip()
    if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
        raise ValidationFailed("API key name must be 1 to 100 printable characters", field="name")
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValidationFailed("an API key must expire in the future", field="expires_in")
    created_at = now or utcnow()
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_id("ak"),
        name=name,
        prefix=secret[: len(KEY_PREFIX) + _VISIBLE_CHARS],
        key_hash=hash_api_key(secret),
        created_at=created_at,
        expires_at=created_at + expires_in if expires_in is not None else None,
    )
    session.add(key)
    await session.flush()
    return CreatedApiKey(key=key, secret=secret)


async def list_api_keys(session: AsyncSession, *, include_revoked: bool = True) -> Sequence[ApiKey]:
    """Every key, oldest first."""
    stmt = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return (await session.execute(stmt)).scalars().all()


async def revoke_api_key(
    session: AsyncSession, key_id_or_prefix: str, *, now: datetime | None = None
) -> ApiKey:
    """Revoke the key with this id (`ak_...`) or visible prefix (`bf_...`); from then on it
    gets 401. Revoking twice is refused with a conflict, an unknown key with NotFound."""
    needle = key_id_or_prefix.strip()
    if not needle:
        raise ValidationFailed("name a key by its id or prefix", field="key")
    stmt = select(ApiKey).where(or_(ApiKey.id == needle, ApiKey.prefix == needle))
    keys = (await session.execute(stmt)).scalars().all()
    if not keys:
        raise NotFound(f"no API key {needle!r}")
    if len(keys) > 1:
        raise Conflict(f"{needle!r} matches {len(keys)} keys; use the key id")
    key = keys[0]
    if key.revoked_at is not None:
        raise Conflict(f"API key {key.id} is already revoked")
    key.revoked_at = now or utcnow()
    await session.flush()
    return key


async def authenticate_api_key(
    session: AsyncSession, secret: str, *, now: datetime | None = None
) -> Principal:
    """The principal of an active key; Unauthenticated for unknown, revoked or expired keys."""
    if not looks_like_api_key(secret) or len(secret) > 128:
        raise Unauthenticated("invalid API key")
    stmt = select(
        ApiKey.id, ApiKey.name, ApiKey.revoked_at, ApiKey.expires_at, ApiKey.last_used_at
    ).where(ApiKey.key_hash == hash_api_key(secret))
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        raise Unauthenticated("invalid API key")
    if row.revoked_at is not None:
        raise Unauthenticated("API key revoked")
    moment = now or utcnow()
    if row.expires_at is not None and moment >= row.expires_at:
        raise Unauthenticated("API key expired")
    if row.last_used_at is None or moment - row.last_used_at >= LAST_USED_RESOLUTION:
        # Conditional, so concurrent requests of one key write it once and rarely wait.
        await session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == row.id,
                or_(
                    ApiKey.last_used_at.is_(None),
                    ApiKey.last_used_at <= moment - LAST_USED_RESOLUTION,
                ),
            )
            .values(last_used_at=moment)
            .execution_options(synchronize_session=False)
        )
    return Principal(kind="api_key", subject=str(row.id), api_key_name=str(row.name))
