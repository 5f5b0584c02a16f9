"""Every redirect URL billfold accepts resolves, in Chromium's own URL parser, to an allowed host:
`new URL(u).hostname` evaluated by a real browser for a bounded number of tricky URLs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests.redirects.strategies import allowed_ascii_hosts, tricky_urls
from tests.redirects.test_redirect_urls import accepted
from tests.sandbox.browser_env import CHROMIUM, require_browser

pytestmark = pytest.mark.browser

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser.new_page()
        browser.close()


def chromium_hostname(page: Any, url: str) -> str | None:
    result: str | None = page.evaluate(
        "u => { try { return new URL(u).hostname } catch (e) { return null } }", url
    )
    return result


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(url=tricky_urls)
@example(url="https://evil.example\\@localhost/")
@example(url="https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/")
@example(url="https://bücher.example/")
def test_chromium_goes_to_an_allowed_host_for_every_accepted_url(page: Any, url: str) -> None:
    if accepted(url):
        assert chromium_hostname(page, url) in allowed_ascii_hosts(), url


def test_the_reading_billfold_refuses_is_the_browsers(page: Any) -> None:
    """The bug this guards against: Python reads localhost, Chromium goes to evil.example."""
    assert chromium_hostname(page, "https://evil.example\\@localhost/") == "evil.example"
    assert not accepted("https://evil.example\\@localhost/")
