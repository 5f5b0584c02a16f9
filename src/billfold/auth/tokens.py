"""Bearer tokens: JWTs signed with the configured key (HS256 secret, or RS256/ES256 key pair).

Issuer, audience and expiry are always checked; the algorithm is pinned by configuration, so
`alg: none` and algorithm confusion (an HS256 token signed with a public key) are refused.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from billfold.auth.principal import Principal
from billfold.clock import utcnow
from billfold.config import Settings
from billfold.errors import ConfigurationError, Unauthenticated, ValidationFailed

# The embedded default's secret, generated once and kept in the data dir so tokens printed by
# `billfold token` keep working across restarts. Production must set BILLFOLD_JWT_SECRET.
_SECRET_FILE = "jwt-secret"


def _read_key(value: str) -> str:
    """A PEM given inline, or the path of a file holding it."""
    if value.lstrip().startswith("-----BEGIN"):
        return value
    path = Path(value)
    if path.is_file():
        return path.read_text()
    raise ConfigurationError(f"key file {value!r} not found")


def signing_secret(settings: Settings) -> str:
    if settings.jwt_secret:
        return settings.jwt_secret
    path = settings.data_dir / _SECRET_FILE
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def _verification_key(settings: Settings) -> str:
    if settings.jwt_algorithm == "HS256":
        return signing_secret(settings)
    if not settings.jwt_public_key:
        raise ConfigurationError("BILLFOLD_JWT_PUBLIC_KEY is not set")
    return _read_key(settings.jwt_public_key)


def _signing_key(settings: Settings) -> str:
    if settings.jwt_algorithm == "HS256":
        return signing_secret(settings)
    if not settings.jwt_private_key:
        raise ConfigurationError(
            "BILLFOLD_JWT_PRIVATE_KEY is needed to issue tokens with "
            f"{settings.jwt_algorithm}; billfold only verifies them otherwise"
        )
    return _read_key(settings.jwt_private_key)


def parse_ttl(text: str) -> timedelta:
    """'90s', '15m', '1h', '7d' -> timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise ValidationFailed("ttl must look like 90s, 15m, 1h or 7d", field="ttl")
    return timedelta(seconds=int(text[:-1]) * units[text[-1]])


def issue_token(
    settings: Settings,
    subject: str,
    *,
    org_id: str | None = None,
    role: str | None = None,
    shop: str | None = None,
    ttl: timedelta = timedelta(hours=1),
    now: datetime | None = None,
) -> str:
    """A signed token for `subject` (used by `billfold token` and by tests)."""
    issued = now or utcnow()
    claims: dict[str, Any] = {
        "sub": subject,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
    }
    if org_id:
        claims["org_id"] = org_id
        claims["role"] = role or "member"
    if shop:
        claims["shop"] = shop
    return jwt.encode(claims, _signing_key(settings), algorithm=settings.jwt_algorithm)


def verify_token(settings: Settings, token: str) -> Principal:
    """The principal a token names, or Unauthenticated."""
    try:
        claims = jwt.decode(
            token,
            _verification_key(settings),
            algorithms=[settings.jwt_algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "sub", "iss", "aud"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("token expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise Unauthenticated("token audience not accepted") from exc
    except jwt.InvalidIssuerError as exc:
        raise Unauthenticated("token issuer not accepted") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("invalid token") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthenticated("token has no subject")
    role = claims.get("role")
    org_id = claims.get("org_id")
    shop = claims.get("shop")
    return Principal(
        kind="user",
        subject=subject,
        org_id=str(org_id) if org_id else None,
        role="admin" if role == "admin" else ("member" if org_id else None),
        shop=str(shop).lower() if shop else None,
    )
