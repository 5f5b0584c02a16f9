"""Panel sessions: the billing panel's sign-in (billfold.web) and document 003's `X-SESSION-ID`.

The host app's backend sends its user to the panel with a short-lived **sign-in link**: a JWT
signed with billfold's JWT key (HS256 secret or the private key of the configured algorithm),
whose audience is `LINK_AUDIENCE` (never an API token's), that names the billing account
(`account`: `user:ID`, `organization:ID` or `shop:DOMAIN`), carries a `jti` and lives at most
`MAX_LINK_SECONDS`. Its backend asks billfold's API for one (`POST /api/v1/panel/sign-in-links`,
an API key or the user's own token) or signs one itself with the shared secret
(`issue_sign_in_link`). An `admin: true` claim makes an operator's link (the console; only an API
key may ask for one).

`redeem_sign_in_link` checks the link (algorithm pinned, signature, audience, issuer, expiry by
the injected clock) and spends its `jti` once (a row of `panel_sign_in_links`, inserted with ON
CONFLICT DO NOTHING: a reused link finds it), then opens a session: a random token the browser
keeps in an HttpOnly cookie (and may send as `X-SESSION-ID`); only its SHA-256 is stored, with
the account, the CSRF token of its forms and its expiry. A session is found by `find_session`
until it expires or is signed out (`sign_out`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from billfold.auth.principal import AccountRef
from billfold.auth.tokens import signing_key, verification_key
from billfold.clock import Clock
from billfold.config import Settings
from billfold.customers.models import AccountKind, BillingAccount
from billfold.customers.service import get_or_create_account
from billfold.db.base import Base, UTCDateTime
from billfold.db.dialect import insert_ignoring_conflict
from billfold.errors import Unauthenticated, ValidationFailed
from billfold.jobs import JobRegistry, JobRun

# A sign-in link is a JWT for this audience only: an API bearer token is no link, and a link is
# no API token (`verify_token` checks BILLFOLD_JWT_AUDIENCE).
LINK_AUDIENCE = "billfold:panel-sign-in"
# The longest a link may live (`exp - iat`), and the default.
MAX_LINK_SECONDS = 600
DEFAULT_LINK_SECONDS = 120
# Far above any real link; refuses megabyte query strings before parsing them.
MAX_LINK_LENGTH = 4096
# A session token is 32 random bytes, URL-safe base64 (43 characters).
_TOKEN_BYTES = 32


class PanelSession(Base):
    """A signed-in browser. The token itself is never stored: `id` is its SHA-256."""

    __tablename__ = "panel_sessions"
    __table_args__ = (Index("ix_panel_sessions_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The customer's account (None for an operator's session, which acts on none).
    account_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("billing_accounts.id"), default=None
    )
    # Who signed in, as the audit log names callers (`user:alice`, `api_key:ak_...`).
    actor: Mapped[str] = mapped_column(String(255))
    operator: Mapped[bool] = mapped_column(Boolean, default=False)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    signed_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    def is_live(self, now: datetime) -> bool:
        return self.signed_out_at is None and now < self.expires_at


class SpentSignInLink(Base):
    """A sign-in link's `jti`, once redeemed: a link opens one session, ever."""

    __tablename__ = "panel_sign_in_links"

    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    redeemed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The link's own expiry: rows past it can be pruned (the link is refused as expired anyway).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True, slots=True)
class OpenedSession:
    """A new session: `token` goes to the browser (cookie, `X-SESSION-ID`), once."""

    token: str
    session: PanelSession


def session_id_of(token: str) -> str:
    """The stored id of a session token (its SHA-256, hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_sign_in_link(
    settings: Settings,
    account: AccountRef | None,
    *,
    now: datetime,
    subject: str | None = None,
    operator: bool = False,
    ttl_seconds: int = DEFAULT_LINK_SECONDS,
) -> str:
    """A signed sign-in link token for `account` (or, `operator=True`, for the console), as the
    host app's backend would sign it with the shared secret. Put it in `/sign-in?token=`."""
    if not 1 <= ttl_seconds <= MAX_LINK_SECONDS:
        raise ValidationFailed(
            f"a sign-in link lives 1 to {MAX_LINK_SECONDS} seconds", field="ttl_seconds"
        )
    if account is None and not operator:
        raise ValidationFailed("a customer's link names its account", field="account")
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": LINK_AUDIENCE,
        "sub": subject or (str(account) if account else "operator"),
        "iat": int(now.timestamp()),
        "exp": int(now.timestamp()) + ttl_seconds,
        "jti": secrets.token_urlsafe(18),
    }
    if account is not None:
        claims["account"] = str(account)
    if operator:
        claims["admin"] = True
    import jwt  # on first use, as billfold.auth.tokens does

    return jwt.encode(claims, signing_key(settings), algorithm=settings.jwt_algorithm)


@dataclass(frozen=True, slots=True)
class SignInLink:
    """What a verified link says."""

    jti: str
    subject: str
    account: AccountRef | None
    operator: bool
    expires_at: datetime


def verify_sign_in_link(settings: Settings, token: str, *, now: datetime) -> SignInLink:
    """The claims of a valid link, else Unauthenticated (forged, expired, too long-lived, not
    a link). Expiry is judged by `now` (the injected clock), not the system's time."""
    if not token or len(token) > MAX_LINK_LENGTH:
        raise Unauthenticated("this sign-in link is not valid")
    import jwt  # on first use, as billfold.auth.tokens does

    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise Unauthenticated("this sign-in link is not valid") from exc
    if header.get("alg") != settings.jwt_algorithm:
        raise Unauthenticated("this sign-in link is not valid")
    try:
        claims = jwt.decode(
            token,
            verification_key(settings),
            algorithms=[settings.jwt_algorithm],
            audience=LINK_AUDIENCE,
            issuer=settings.jwt_issuer,
            options={
                "require": ["exp", "iat", "sub", "jti"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise Unauthenticated("this sign-in link is not valid") from exc
    exp, iat, jti, subject = claims["exp"], claims["iat"], claims["jti"], claims["sub"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, iat)):
        raise Unauthenticated("this sign-in link is not valid")
    if not isinstance(jti, str) or not 8 <= len(jti) <= 128:
        raise Unauthenticated("this sign-in link is not valid")
    if not isinstance(subject, str) or not 1 <= len(subject) <= 255:
        raise Unauthenticated("this sign-in link is not valid")
    if exp - iat > MAX_LINK_SECONDS:
        raise Unauthenticated("this sign-in link lives too long to be accepted")
    stamp = now.timestamp()
    if stamp >= exp:
        raise Unauthenticated("this sign-in link has expired; ask for a new one")
    if stamp + 30 < iat:  # issued in the future, beyond a little clock skew
        raise Unauthenticated("this sign-in link is not valid yet")
    operator = claims.get("admin") is True
    account_text = claims.get("account")
    account: AccountRef | None = None
    if account_text is not None:
        if not isinstance(account_text, str):
            raise Unauthenticated("this sign-in link is not valid")
        try:
            account = AccountRef.parse(account_text, field="account")
        except ValidationFailed as exc:
            raise Unauthenticated("this sign-in link names no valid account") from exc
    elif not operator:
        raise Unauthenticated("this sign-in link names no account")
    expires_at = datetime.fromtimestamp(exp, tz=now.tzinfo)
    return SignInLink(jti, subject, account, operator, expires_at)


async def _spend(session: AsyncSession, link: SignInLink, now: datetime) -> bool:
    """Record the link's jti; False when it was spent before (a concurrent redeem of the same
    link waits on the first one's unique-index entry, then finds it)."""
    return await insert_ignoring_conflict(
        session,
        SpentSignInLink.__table__,  # type: ignore[arg-type]
        {"jti": link.jti, "redeemed_at": now, "expires_at": link.expires_at},
        ["jti"],
    )


async def open_session(
    session: AsyncSession,
    settings: Settings,
    *,
    account: BillingAccount | None,
    actor: str,
    operator: bool,
    clock: Clock,
) -> OpenedSession:
    """A new session for `account` (None: an operator's), lasting BILLFOLD_PANEL_SESSION_MINUTES."""
    now = clock.now()
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    row = PanelSession(
        id=session_id_of(token),
        account_id=account.id if account is not None else None,
        actor=actor[:255],
        operator=operator,
        csrf_token=secrets.token_urlsafe(24),
        created_at=now,
        expires_at=now + timedelta(minutes=settings.panel_session_minutes),
    )
    session.add(row)
    await session.flush()
    return OpenedSession(token, row)


async def redeem_sign_in_link(
    session: AsyncSession, settings: Settings, token: str, *, clock: Clock
) -> OpenedSession:
    """Turn a sign-in link into a session, once: forged, expired and reused links are
    Unauthenticated. The account is created on first use, like the API's."""
    now = clock.now()
    link = verify_sign_in_link(settings, token, now=now)
    if not await _spend(session, link, now):
        raise Unauthenticated("this sign-in link was used already; ask for a new one")
    account = None
    if link.account is not None:
        account = await get_or_create_account(
            session,
            link.account.kind,
            link.account.external_id,
            currency=settings.stripe_default_currency,
            clock=clock,
        )
    return await open_session(
        session,
        settings,
        account=account,
        actor=f"panel:{link.subject}",
        operator=link.operator,
        clock=clock,
    )


async def find_session(session: AsyncSession, token: str | None, *, now: datetime) -> PanelSession:
    """The live session of a token, else Unauthenticated (none, unknown, expired, signed out)."""
    if not token or len(token) > 256:
        raise Unauthenticated("not signed in")
    row = await session.get(PanelSession, session_id_of(token))
    if row is None or not row.is_live(now):
        raise Unauthenticated("your session has ended; sign in again")
    return row


async def sign_out(session: AsyncSession, token: str, *, now: datetime) -> None:
    """End the session of `token` (no error if it already ended)."""
    await session.execute(
        update(PanelSession)
        .where(PanelSession.id == session_id_of(token), PanelSession.signed_out_at.is_(None))
        .values(signed_out_at=now)
    )


def csrf_matches(row: PanelSession, sent: str | None) -> bool:
    """Whether a form's CSRF token is the session's (compared in constant time)."""
    return bool(sent) and hmac.compare_digest(row.csrf_token.encode(), str(sent).encode())


async def account_of_session(session: AsyncSession, row: PanelSession) -> BillingAccount:
    """The customer's account a session acts on (Unauthenticated for an operator's session)."""
    if row.account_id is None:
        raise Unauthenticated("this session is an operator's; it acts on no account")
    found = (
        await session.execute(select(BillingAccount).where(BillingAccount.id == row.account_id))
    ).scalar_one_or_none()
    if found is None:
        raise Unauthenticated("this session's account no longer exists")
    return found


def account_ref(account: BillingAccount) -> AccountRef:
    """The `kind:external_id` name of an account."""
    return AccountRef(AccountKind(account.kind), account.external_id)


# Ended sessions are kept a day (for an operator looking into a sign-in), then deleted hourly,
# with the spent links past their expiry (refused as expired anyway).
KEEP_ENDED_SESSIONS = timedelta(days=1)

jobs = JobRegistry()


@jobs.every("panel.prune_sessions", seconds=3600)
async def prune_sessions(run: JobRun) -> None:
    """Delete sessions that ended over a day ago and spent sign-in links that have expired."""
    now = run.container.clock.now()
    async with run.transaction() as session:
        await session.execute(
            delete(PanelSession)
            .where(
                or_(
                    PanelSession.expires_at < now - KEEP_ENDED_SESSIONS,
                    PanelSession.signed_out_at < now - KEEP_ENDED_SESSIONS,
                )
            )
            .execution_options(synchronize_session=False)
        )
        await session.execute(
            delete(SpentSignInLink)
            .where(SpentSignInLink.expires_at < now)
            .execution_options(synchronize_session=False)
        )
