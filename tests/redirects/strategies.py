"""Tricky redirect URLs (encodings, userinfo, ports, IDNA, `//` and `\\`) and a reference
reading of their host the way the WHATWG URL standard (browsers) reads it."""

from __future__ import annotations

import re
from urllib.parse import unquote

import idna
from hypothesis import strategies as st

from billfold.config import Settings

ALLOWED = ("app.example", "localhost", "bücher.example")
SETTINGS = Settings(
    frontend_url="https://app.example",
    allowed_redirect_hosts=["localhost", "bücher.example"],
)

_hosts = st.sampled_from(
    [
        "app.example",
        "APP.example",
        "app.example.",
        "localhost",
        "LOCALHOST.",
        "evil.example",
        "app.example.evil.example",
        "evil.example\\@localhost",
        "evil.example%2f@localhost",
        "app%2eexample",
        "xn--bcher-kva.example",
        "bücher.example",
        "BÜCHER.example",
        "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",
        "app\u3002example",
        "app.example%00",
        "127.0.0.1",
        "0x7f.1",
        "2130706433",
        "[::1]",
        "",
    ]
)
_userinfo = st.sampled_from(["", "user@", "user:pw@", "app.example@", "localhost:80@", "a%40b@"])
_ports = st.sampled_from(["", ":443", ":8080", ":", ":65536", ":0x50", ":99999999"])
_schemes = st.sampled_from(
    [
        "https://",
        "http://",
        "HTTPS://",
        "https:/",
        "https:",
        "https:\\\\",
        "https:/\\",
        "//",
        "javascript://",
        "ftp://",
        "https:///",
        " https://",
        "ht\ttps://",
    ]
)
_paths = st.sampled_from(
    [
        "",
        "/",
        "/billing",
        "\\\\evil.example/",
        "/\\evil.example",
        "?next=//evil.example",
        "#@evil.example",
        "/%2e%2e/x",
        "/ok path",
        "/\nx",
        "@evil.example",
    ]
)

tricky_urls = st.builds(
    lambda scheme, user, host, port, path: scheme + user + host + port + path,
    _schemes,
    _userinfo,
    _hosts,
    _ports,
    _paths,
) | st.text(alphabet="hts:/\\@.%2fApxelocam\t", max_size=40)


def browser_hostname(url: str) -> str | None:
    """The host a browser navigates to for `url` (None when it would not parse it as an http(s)
    URL with a host): an independent, simplified reading of the WHATWG URL parser for special
    schemes, enough for the URLs above."""
    url = url.strip(
        "\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13"
        "\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f "
    )
    url = re.sub(r"[\t\n\r]", "", url)
    match = re.match(r"(?i)(https?):", url)
    if match is None:
        return None
    rest = url[match.end() :].lstrip("/\\")
    authority = re.split(r"[/\\?#]", rest, maxsplit=1)[0]
    host = authority.rsplit("@", 1)[-1]
    if host.startswith("["):
        host = host[: host.find("]") + 1] if "]" in host else host
        return host.lower()
    host = host.split(":", 1)[0]
    host = unquote(host)
    try:
        return idna.encode(host, uts46=True, transitional=False).decode().lower() or None
    except (idna.IDNAError, UnicodeError):
        return host.lower() or None


def allowed_ascii_hosts() -> set[str]:
    return {idna.encode(h, uts46=True).decode() for h in ALLOWED}
