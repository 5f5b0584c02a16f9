"""Where billfold may send a customer back to after Stripe's hosted pages (Checkout, the
billing portal): http(s) URLs on an allowed host only, so billfold is no open redirect.
Domain-neutral: subscriptions, credit top-ups and payments' Checkout all use it.

The host is read as a browser reads it (the WHATWG URL standard), not as Python's `urlsplit`
does: `https://evil.example\\@localhost/` is `evil.example` to a browser. Rather than re-implement
every corner of the standard, billfold accepts only the plain form on which both readings agree
and refuses the rest: `http://` or `https://` followed by a host, an optional decimal port, then
`/`, `?`, `#` or the end; no backslash, whitespace, control or invisible format character
anywhere; no userinfo (`@` in the authority); no percent-escape in the host; a host that ends in
a number only as a canonical dotted IPv4 address; a non-ASCII host through IDNA (UTS 46, as
browsers map it). Hosts are compared exactly, lower-cased, without a trailing dot."""

from __future__ import annotations

import re
import unicodedata

import idna

from billfold.config import Settings
from billfold.errors import ValidationFailed

MAX_URL_LENGTH = 2048

_SCHEME = re.compile(r"(?i)(https?)://")
_ASCII_HOST = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(\.{_OCTET}){{3}}")
_NUMERIC_LABEL = re.compile(r"(?i)[0-9]+|0x[0-9a-f]*")


class _Refused(ValueError):
    """The URL is not one billfold sends a customer to (the message says why)."""


def normalize_host(host: str) -> str:
    """The host as a browser resolves it: IDNA (UTS 46) for non-ASCII, lower case, without a
    trailing dot. Raises ValueError for a host a browser would read otherwise or not at all."""
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise _Refused("has no host")
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            raise _Refused(
                f"has a host that is not a valid internationalized name ({exc})"
            ) from exc
        if host.endswith("."):
            host = host[:-1]
    host = host.lower()
    if not _ASCII_HOST.fullmatch(host):
        raise _Refused(f"has a host with characters a browser reads otherwise: {host!r}")
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]) and not _IPV4.fullmatch(host):
        # A browser reads a host ending in a number as an IPv4 address (0x7f.1 is 127.0.0.1).
        raise _Refused(f"has a numeric host that is not a dotted IPv4 address: {host!r}")
    return host


def redirect_host(url: str) -> str:
    """The normalized host a browser goes to for `url`; ValueError (with the reason) for a URL
    outside the plain http(s) form described in the module's docstring."""
    if len(url) > MAX_URL_LENGTH:
        raise _Refused(f"is longer than {MAX_URL_LENGTH} characters")
    for char in url:
        if char == "\\":
            raise _Refused("contains a backslash")
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp", "Zs"):
            raise _Refused(f"contains whitespace or a control character (U+{ord(char):04X})")
    scheme = _SCHEME.match(url)
    if scheme is None:
        raise _Refused("must be an http(s) URL (http:// or https://)")
    rest = url[scheme.end() :]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        raise _Refused("must not carry a user name or password (@)")
    if "%" in authority:
        raise _Refused("must not percent-encode its host")
    if authority.startswith("["):
        raise _Refused("must not use an IPv6 address literal")
    host, colon, port = authority.partition(":")
    if colon and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise _Refused(f"has an invalid port: {port!r}")
    return normalize_host(host)


def allowed_hosts(settings: Settings) -> set[str]:
    """settings.redirect_hosts, normalized as URLs' hosts are (entries that cannot be are
    left out)."""
    hosts = set()
    for host in settings.redirect_hosts:
        try:
            hosts.add(normalize_host(host))
        except ValueError:
            continue
    return hosts


def check_redirect_url(settings: Settings, url: str, *, field: str) -> str:
    """`url` when it is http(s) on an allowed host (FRONTEND_URL's, STRIPE_SUCCESS/CANCEL_URL's,
    BILLFOLD_ALLOWED_REDIRECT_HOSTS); otherwise ValidationFailed: billfold is no open redirect."""
    try:
        host = redirect_host(url)
    except ValueError as exc:
        raise ValidationFailed(f"{field} {exc}", field=field) from exc
    if host not in allowed_hosts(settings):
        raise ValidationFailed(f"{field} must point to an allowed host, not {host}", field=field)
    return url


def default_success_url(settings: Settings) -> str:
    """Where a paid Checkout returns: STRIPE_SUCCESS_URL, else FRONTEND_URL's /billing/success."""
    return settings.stripe_success_url or (
        settings.frontend_url.rstrip("/") + "/billing/success?session_id={CHECKOUT_SESSION_ID}"
    )


def default_cancel_url(settings: Settings) -> str:
    """Where an abandoned Checkout returns: STRIPE_CANCEL_URL, else FRONTEND_URL's
    /billing/cancel."""
    return settings.stripe_cancel_url or settings.frontend_url.rstrip("/") + "/billing/cancel"
