"""Bearer tokens: what is accepted, and every forgery that must not be."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from billfold.auth.tokens import issue_token, parse_ttl, verify_token
from billfold.clock import utcnow
from billfold.config import Settings
from billfold.errors import ConfigurationError, Unauthenticated, ValidationFailed

SECRET = "s" * 40


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "alice",
        "iss": "billfold",
        "aud": "billfold",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hand_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _pem_pair(kind: str) -> tuple[str, str]:
    private: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


@pytest.fixture
def hs(tmp_path: Path) -> Settings:
    return Settings(jwt_secret=SECRET, data_dir=tmp_path, environment="test")


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[str, str]:
    return _pem_pair("rsa")


@pytest.fixture
def rs(tmp_path: Path, rsa_pair: tuple[str, str]) -> Settings:
    private_pem, public_pem = rsa_pair
    return Settings(
        jwt_algorithm="RS256",
        jwt_public_key=public_pem,
        jwt_private_key=private_pem,
        data_dir=tmp_path,
        environment="test",
    )


def test_a_token_round_trips(hs: Settings) -> None:
    token = issue_token(hs, "alice", org_id="o1", role="admin", shop="Shop-A.myshopify.com")
    principal = verify_token(hs, token)
    assert principal.subject == "alice" and principal.kind == "user"
    assert principal.org_id == "o1" and principal.role == "admin"
    assert principal.role_in("o1") == "admin" and principal.role_in("o2") is None
    assert principal.shop == "shop-a.myshopify.com"
    assert principal.actor == "user:alice"


def test_orgs_and_shops_claims(hs: Settings) -> None:
    claims = _claims(
        orgs=[{"id": "o1", "role": "admin"}, "o2", {"id": "o3", "role": "owner"}],
        shops=["a.myshopify.com", "B.myshopify.com"],
    )
    principal = verify_token(hs, jwt.encode(claims, SECRET, algorithm="HS256"))
    assert principal.role_in("o1") == "admin"
    assert principal.role_in("o2") == "member"
    assert principal.role_in("o3") == "member"  # unknown roles get the least privilege
    assert principal.shops == ("a.myshopify.com", "b.myshopify.com")
    assert principal.shop is None  # several shops: the request must pick one
    as_dict = verify_token(hs, jwt.encode(_claims(orgs={"o9": "admin"}), SECRET))
    assert as_dict.role_in("o9") == "admin"


def test_forged_signature_is_refused(hs: Settings) -> None:
    token = jwt.encode(_claims(), "another-secret-that-is-long-enough-000000", algorithm="HS256")
    with pytest.raises(Unauthenticated, match="invalid token"):
        verify_token(hs, token)
    good = issue_token(hs, "alice")
    header, _payload, signature = good.split(".")
    tampered_payload = _b64(json.dumps(_claims(sub="bob")).encode())
    with pytest.raises(Unauthenticated):
        verify_token(hs, f"{header}.{tampered_payload}.{signature}")


def test_expired_token_is_refused(hs: Settings) -> None:
    token = issue_token(hs, "alice", ttl=timedelta(minutes=5), now=utcnow() - timedelta(hours=1))
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(hs, token)


def test_not_yet_valid_token_is_refused(hs: Settings) -> None:
    token = jwt.encode(_claims(nbf=int(time.time()) + 3600), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="not valid yet"):
        verify_token(hs, token)


def test_wrong_audience_is_refused(hs: Settings) -> None:
    token = jwt.encode(_claims(aud="another-service"), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="audience"):
        verify_token(hs, token)


def test_wrong_issuer_is_refused(hs: Settings) -> None:
    token = jwt.encode(_claims(iss="https://evil.example"), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="issuer"):
        verify_token(hs, token)


@pytest.mark.parametrize("missing", ["exp", "sub", "iss", "aud"])
def test_required_claims(hs: Settings, missing: str) -> None:
    claims = _claims()
    del claims[missing]
    with pytest.raises(Unauthenticated):
        verify_token(hs, jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(hs: Settings, rs: Settings, alg: str) -> None:
    token = _hand_signed({"alg": alg, "typ": "JWT"}, _claims(), None)
    for settings in (hs, rs):
        with pytest.raises(Unauthenticated, match="algorithm"):
            verify_token(settings, token)


def test_algorithm_confusion_is_refused(rs: Settings, rsa_pair: tuple[str, str]) -> None:
    """An HS256 token whose HMAC key is the (public) RSA key must not pass an RS256 verifier."""
    _, public_pem = rsa_pair
    for key in (public_pem.encode(), public_pem.strip().encode()):
        forged = _hand_signed({"alg": "HS256", "typ": "JWT"}, _claims(), key)
        with pytest.raises(Unauthenticated, match="algorithm"):
            verify_token(rs, forged)
    # And with the header lying about the algorithm, the RSA check itself fails.
    lying = _hand_signed({"alg": "RS256", "typ": "JWT"}, _claims(), public_pem.encode())
    with pytest.raises(Unauthenticated, match="invalid token"):
        verify_token(rs, lying)


def test_rs256_round_trip_and_hs256_refused(rs: Settings) -> None:
    assert verify_token(rs, issue_token(rs, "alice")).subject == "alice"
    with pytest.raises(Unauthenticated, match="algorithm"):
        verify_token(rs, jwt.encode(_claims(), SECRET, algorithm="HS256"))


def test_rs256_verifies_with_the_public_key_only(tmp_path: Path, rsa_pair: tuple[str, str]) -> None:
    private_pem, public_pem = rsa_pair
    key_file = tmp_path / "public.pem"
    key_file.write_text(public_pem)
    verifier = Settings(
        jwt_algorithm="RS256", jwt_public_key=str(key_file), data_dir=tmp_path, environment="test"
    )
    token = jwt.encode(_claims(), private_pem, algorithm="RS256")
    assert verify_token(verifier, token).subject == "alice"
    with pytest.raises(ConfigurationError, match="BILLFOLD_JWT_PRIVATE_KEY"):
        issue_token(verifier, "alice")


def test_es256(tmp_path: Path) -> None:
    private_pem, public_pem = _pem_pair("ec")
    es = Settings(
        jwt_algorithm="ES256",
        jwt_public_key=public_pem,
        jwt_private_key=private_pem,
        data_dir=tmp_path,
        environment="test",
    )
    assert verify_token(es, issue_token(es, "alice")).subject == "alice"
    other_private, _ = _pem_pair("ec")
    with pytest.raises(Unauthenticated):
        verify_token(es, jwt.encode(_claims(), other_private, algorithm="ES256"))
    with pytest.raises(Unauthenticated, match="algorithm"):
        verify_token(es, jwt.encode(_claims(), SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    "token",
    ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9", "x" * 9000],
)
def test_garbage_is_refused(hs: Settings, token: str) -> None:
    with pytest.raises(Unauthenticated):
        verify_token(hs, token)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": ""},
        {"sub": 42},
        {"sub": "a\x00b"},
        {"sub": "\ud800"},
        {"shop": "not a domain"},
        {"shop": 7},
        {"shops": "a.myshopify.com"},
        {"shops": ["ok.myshopify.com", "bad domain"]},
        {"orgs": "o1"},
        {"org_id": ""},
    ],
)
def test_malformed_claims_are_refused(hs: Settings, claims: dict[str, Any]) -> None:
    with pytest.raises(Unauthenticated):
        verify_token(hs, jwt.encode(_claims(**claims), SECRET, algorithm="HS256"))


def test_parse_ttl() -> None:
    assert parse_ttl("90s") == timedelta(seconds=90)
    assert parse_ttl("7d") == timedelta(days=7)
    with pytest.raises(ValidationFailed):
        parse_ttl("soon")


def test_misconfigured_keys_are_named(tmp_path: Path, rsa_pair: tuple[str, str]) -> None:
    _, ec_public = _pem_pair("ec")
    private_pem, rsa_public = rsa_pair
    cases = [
        ("RS256", ec_public, "not a key for RS256"),
        ("ES256", rsa_public, "not a key for ES256"),
        ("RS256", "-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n", "PEM"),
        ("RS256", str(tmp_path / "missing.pem"), "not found"),
        ("RS256", private_pem, "PEM public key"),
    ]
    for algorithm, key, message in cases:
        # The key is loaded before the signature is checked, so any signature will do.
        token = _hand_signed({"alg": algorithm, "typ": "JWT"}, _claims(), b"unused")
        settings = Settings(
            jwt_algorithm=algorithm, jwt_public_key=key, data_dir=tmp_path, environment="test"
        )
        with pytest.raises(ConfigurationError, match="BILLFOLD_JWT_PUBLIC_KEY") as caught:
            verify_token(settings, token)
        assert message in caught.value.message


def test_embedded_secret_is_created_once_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", environment="test")
    token = issue_token(settings, "alice")
    secret_file = tmp_path / "data" / "jwt-secret"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    again = Settings(data_dir=tmp_path / "data", environment="test")
    assert verify_token(again, token).subject == "alice"


def test_a_verified_token_is_answered_from_the_cache_only_under_the_same_settings() -> None:
    settings = Settings(jwt_secret=SECRET)
    token = issue_token(settings, "alice")
    first = verify_token(settings, token)
    assert verify_token(settings, token) is first  # the cache's answer
    rotated = Settings(jwt_secret="r" * 40)
    with pytest.raises(Unauthenticated):
        verify_token(rotated, token)  # another secret verifies again, and refuses
    other_audience = Settings(jwt_secret=SECRET, jwt_audience="elsewhere")
    with pytest.raises(Unauthenticated):
        verify_token(other_audience, token)


def test_an_expired_token_is_not_answered_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(jwt_secret=SECRET)
    token = issue_token(settings, "alice", ttl=timedelta(seconds=60))
    first = verify_token(settings, token)
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)  # the cache's clock only; jwt's is not moved
    assert verify_token(settings, token) is not first  # verified again, not taken from the cache
