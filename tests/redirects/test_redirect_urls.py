"""billfold's redirect check reads hosts as browsers do: every URL it accepts resolves to an
allowed host (here against a reference reading of the WHATWG URL standard; in a real Chromium in
test_redirect_urls_browser.py)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings

from billfold.errors import ValidationFailed
from billfold.redirects import check_redirect_url
from tests.redirects.strategies import SETTINGS, allowed_ascii_hosts, browser_hostname, tricky_urls


def accepted(url: str) -> bool:
    try:
        check_redirect_url(SETTINGS, url, field="success_url")
    except ValidationFailed:
        return False
    return True


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example\\@localhost/",
        "https://evil.example\\@app.example/",
        "https://user:pw@app.example/",
        "https://app.example@evil.example/",
        "javascript://app.example/%0aalert(1)",
        "https:\\\\evil.example",
        "https:/evil.example",
        "https:evil.example",
        "//evil.example",
        "https:///evil.example",
        "https://app.example\t.evil.example/",
        "https://app%2eexample/",
        "https://0x7f.1/",
        "https://[::1]/",
        "https://app.example:99999/",
        " https://app.example/",
        "https://app.example/\n",
    ],
)
def test_refused(url: str) -> None:
    assert not accepted(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example/billing?session_id={CHECKOUT_SESSION_ID}",
        "HTTPS://APP.EXAMPLE./x",
        "http://localhost:3000/",
        "https://xn--bcher-kva.example/",
        "https://bücher.example/",
        "https://app.example#x",
        "https://app.example?next=https://evil.example",
    ],
)
def test_accepted(url: str) -> None:
    assert accepted(url)


@settings(max_examples=2000, deadline=None)
@given(tricky_urls)
@example("https://evil.example\\@localhost/")
@example("https://app.example.")
def test_every_accepted_url_resolves_to_an_allowed_host(url: str) -> None:
    if accepted(url):
        # A trailing dot is the fully qualified form of the same DNS name (`app.example.` is
        # `app.example`): the browser keeps it in `hostname`, billfold normalizes it away.
        host = browser_hostname(url)
        assert host is not None and host.removesuffix(".") in allowed_ascii_hosts(), url
