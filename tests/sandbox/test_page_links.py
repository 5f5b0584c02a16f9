"""The hosted pages write a session's cancel and return URLs into links: never a `javascript:`
or `data:` link, never out of the href attribute, whatever a session holds."""

from __future__ import annotations

import re

import pytest

from billfold_sandbox.pages import render_page, safe_link

HOSTILE = [
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "https://app.example/\tjavascript:alert(1)",
    "https://app.example/\\evil",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_safe_link_refuses_non_http_and_ambiguous_urls(url: str) -> None:
    assert safe_link(url) is None


def test_safe_link_keeps_a_plain_url() -> None:
    assert safe_link("https://app.example/billing?x=1&y=2") == "https://app.example/billing?x=1&y=2"


def _hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


@pytest.mark.parametrize("url", [*HOSTILE, 'https://app.example/"><script>alert(1)</script>'])
def test_checkout_gone_page_writes_no_hostile_cancel_link(url: str) -> None:
    html = render_page(
        "checkout_gone.html", {"reason": "expired", "session": {"cancel_url": url}}
    ).body.decode()
    assert "<script>alert" not in html
    for href in _hrefs(html):
        assert href.startswith(("http://", "https://", "/", "#")), href
