"""Bearer tokens: JWTs signed with the configured key (HS256 secret, or RS256/ES256 key pair).

Issuer, audience and expiry are always checked; the algorithm is pinned by configuration, so
`alg: none` and algorithm confusion (an HS256 token signed with a public key) are refused.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from billfold.auth.principal import OrgRole, Principal, normalize_shop_domain
from billfold.clock import utcnow
from billfold.config import Settings
from billfold.errors import ConfigurationError, Unauthenticated, ValidationFailed

# The embedded default's secret, generated once and kept in the data dir so tokens printed by
# `billfold token` keep working across restarts. Production must set BILLFOLD_JWT_SECRET.
_SECRET_FILE = "jwt-secret"
# Far above any real token; refuses megabyte headers before parsing them.
MAX_TOKEN_LENGTH = 8192
# A user id: 1 to 255 characters, no control characters and no lone surrogates (which no
# database column can store).
_SUBJECT = re.compile(r"^[^\x00-\x1f\x7f\ud800-\udfff]{1,255}$")
# Verified tokens are kept until they expire, so a caller's next request skips the signature
# check and the claims' parsing: a bounded LRU keyed by the token and what verified it.
VERIFIED_CACHE_SIZE = 4096


def _read_key(value: str, variable: str) -> str:
    """A PEM given inline, or the path of a file holding it."""
    if value.lstrip().startswith("-----BEGIN"):
        return value
    path = Path(value)
    if path.is_file():
        return path.read_text()
    raise ConfigurationError(f"{variable}: key file {value!r} not found")


def signing_secret(settings: Settings) -> str:
    """BILLFOLD_JWT_SECRET, or the embedded default's secret in the data dir (created once,
    atomically, so two processes starting together agree on it)."""
    if settings.jwt_secret:
        return settings.jwt_secret
    return _data_dir_secret(settings.data_dir.resolve())


@lru_cache(maxsize=8)
def _data_dir_secret(data_dir: Path) -> str:
    """The secret in `data_dir`, read once per process (not once per request)."""
    path = data_dir / _SECRET_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ConfigurationError(f"{path} holds no usable JWT secret; delete it to regenerate")
    return secret


@lru_cache(maxsize=8)
def _load_key(algorithm: str, value: str, variable: str, private: bool) -> Any:
    """The key object for `algorithm`, parsed once (a restart picks up a rotated key file)."""
    # PyJWT and cryptography (tens of MB) are imported where a token is first signed or
    # checked, not at every start: a server called with API keys and sessions never loads them.
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key_types: dict[str, tuple[type[Any], ...]] = {
        "RS256": (rsa.RSAPublicKey, rsa.RSAPrivateKey),
        "ES256": (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey),
    }
    pem = _read_key(value, variable).encode()
    try:
        key: Any = (
            serialization.load_pem_private_key(pem, password=None)
            if private
            else serialization.load_pem_public_key(pem)
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        kind = "private" if private else "public"
        raise ConfigurationError(f"{variable} is not a PEM {kind} key") from exc
    if not isinstance(key, key_types[algorithm]):
        raise ConfigurationError(f"{variable} is not a key for {algorithm}")
    if algorithm == "ES256" and not isinstance(key.curve, ec.SECP256R1):
        raise ConfigurationError(f"{variable}: ES256 needs a P-256 key")
    return key


def _verification_key(settings: Settings) -> Any:
    if settings.jwt_algorithm == "HS256":
        return signing_secret(settings)
    if not settings.jwt_public_key:
        raise ConfigurationError("BILLFOLD_JWT_PUBLIC_KEY is not set")
    return _load_key(
        settings.jwt_algorithm, settings.jwt_public_key, "BILLFOLD_JWT_PUBLIC_KEY", False
    )


def _signing_key(settings: Settings) -> Any:
    if settings.jwt_algorithm == "HS256":
        return signing_secret(settings)
    if not settings.jwt_private_key:
        raise ConfigurationError(
            "BILLFOLD_JWT_PRIVATE_KEY is needed to issue tokens with "
            f"{settings.jwt_algorithm}; billfold only verifies them otherwise"
        )
    return _load_key(
        settings.jwt_algorithm, settings.jwt_private_key, "BILLFOLD_JWT_PRIVATE_KEY", True
    )


def parse_ttl(text: str) -> timedelta:
    """'90s', '15m', '1h', '7d' -> timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not (text[:-1].isascii() and text[:-1].isdigit()):
        raise ValidationFailed("ttl must look like 90s, 15m, 1h or 7d", field="ttl")
    return timedelta(seconds=int(text[:-1]) * units[text[-1]])


def issue_token(
    settings: Settings,
    subject: str,
    *,
    org_id: str | None = None,
    role: str | None = None,
    shop: str | None = None,
    shops: Sequence[str] = (),
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
    if shops:
        claims["shops"] = list(shops)
    import jwt  # on first use (_load_key says why)

    return jwt.encode(claims, _signing_key(settings), algorithm=settings.jwt_algorithm)


def _role(value: Any) -> OrgRole:
    # Anything but an explicit "admin" is the least privilege.
    return "admin" if value == "admin" else "member"


def _memberships(claims: dict[str, Any]) -> tuple[tuple[str, OrgRole], ...]:
    """`org_id` + `role`, and an optional `orgs` claim: {"o1": "admin"} or
    [{"id": "o1", "role": "admin"}, "o2"]."""
    found: dict[str, OrgRole] = {}
    org_id = claims.get("org_id")
    if org_id is not None:
        if not isinstance(org_id, str | int) or not str(org_id):
            raise Unauthenticated("token claim org_id is malformed")
        found[str(org_id)] = _role(claims.get("role"))
    orgs = claims.get("orgs")
    if orgs is None:
        return tuple(found.items())
    items: list[tuple[Any, Any]]
    if isinstance(orgs, dict):
        items = list(orgs.items())
    elif isinstance(orgs, list):
        items = []
        for item in orgs:
            if isinstance(item, dict):
                items.append((item.get("id", item.get("org_id")), item.get("role")))
            else:
                items.append((item, "member"))
    else:
        raise Unauthenticated("token claim orgs is malformed")
    for org, org_role in items:
        if not isinstance(org, str | int) or not str(org):
            raise Unauthenticated("token claim orgs is malformed")
        found.setdefault(str(org), _role(org_role))
    return tuple(found.items())


def _shops(claims: dict[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """The token's own shop (`shop`) and every shop it is entitled to (`shop` + `shops`)."""
    try:
        shop = claims.get("shop")
        own = normalize_shop_domain(shop) if isinstance(shop, str) else None
        if shop is not None and own is None:
            raise Unauthenticated("token claim shop is malformed")
        listed = claims.get("shops", [])
        if not isinstance(listed, list) or not all(isinstance(s, str) for s in listed):
            raise Unauthenticated("token claim shops is malformed")
        entitled = [normalize_shop_domain(s) for s in listed]
    except ValidationFailed as exc:
        raise Unauthenticated("token names a malformed shop domain") from exc
    if own is not None:
        entitled.insert(0, own)
    unique = tuple(dict.fromkeys(entitled))
    if own is None and len(unique) == 1:
        own = unique[0]
    return own, unique


class _VerifiedTokens:
    """Principals of tokens verified before, each until its token's `exp`; bounded (least
    recently used first out). Only successes are kept: a bad token is checked every time."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, ...], tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()  # `billfold token` and tests may verify from threads

    def get(self, key: tuple[str, ...]) -> Principal | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if time.time() >= found[1]:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return found[0]

    def put(self, key: tuple[str, ...], principal: Principal, expires_at: float) -> None:
        with self._lock:
            self._entries[key] = (principal, expires_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_verified = _VerifiedTokens(VERIFIED_CACHE_SIZE)


def _verifier(settings: Settings) -> tuple[str, ...]:
    """What a token was verified against: a token verified under other settings (a rotated
    secret or key, another issuer or audience) is verified again."""
    key = settings.jwt_secret or settings.jwt_public_key or str(settings.data_dir)
    return (settings.jwt_algorithm, settings.jwt_issuer, settings.jwt_audience, key)


def verify_token(settings: Settings, token: str) -> Principal:
    """The principal a token names, or Unauthenticated.

    The algorithm is the configured one and nothing else: the token's own `alg` header is
    only compared with it, never trusted, so `none` and an HS256 token "signed" with the RSA
    public key are refused before any key is used. A token verified before is answered from a
    cache until it expires (its `exp`, which jwt checks with the system's time too).
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise Unauthenticated("token too long")
    key = (token, *_verifier(settings))
    cached = _verified.get(key)
    if cached is not None:
        return cached
    principal, expires_at = _verify(settings, token)
    _verified.put(key, principal, expires_at)
    return principal


def _verify(settings: Settings, token: str) -> tuple[Principal, float]:
    """The principal a token names and when it expires (Unix time); Unauthenticated."""
    import jwt  # on first use (_load_key says why)

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthenticated("invalid token") from exc
    if header.get("alg") != settings.jwt_algorithm:
        raise Unauthenticated(f"token algorithm {str(header.get('alg'))[:16]!r} not accepted")
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
    except jwt.ImmatureSignatureError as exc:
        raise Unauthenticated("token not valid yet") from exc
    except jwt.InvalidAudienceError as exc:
        raise Unauthenticated("token audience not accepted") from exc
    except jwt.InvalidIssuerError as exc:
        raise Unauthenticated("token issuer not accepted") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("invalid token") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not _SUBJECT.match(subject):
        raise Unauthenticated("token has no valid subject")
    memberships = _memberships(claims)
    shop, shops = _shops(claims)
    org_id, role = memberships[0] if memberships else (None, None)
    principal = Principal(
        kind="user",
        subject=subject,
        org_id=org_id,
        role=role,
        shop=shop,
        memberships=memberships,
        shops=shops,
    )
    return principal, float(claims["exp"])


def signing_key(settings: Settings) -> Any:
    """The key billfold signs with (the HS256 secret, or the configured private key): for the
    panel's sign-in links (`billfold.auth.sessions`)."""
    return _signing_key(settings)


def verification_key(settings: Settings) -> Any:
    """The key billfold verifies with (the HS256 secret, or the configured public key)."""
    return _verification_key(settings)
