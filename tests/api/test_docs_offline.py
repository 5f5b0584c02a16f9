"""/docs works without internet: Swagger UI's files come from the package, the page names no
other host, and (in Chromium with every non-local request aborted) it renders the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from billfold.app import create_app
from billfold.config import Settings
from billfold.db.engine import Database
from tests.sandbox.browser_env import CHROMIUM, require_browser
from tests.sandbox_fixtures import ServedApp


def docs_app(tmp_path: Path) -> Any:
    settings = Settings(
        jwt_secret="d" * 40, data_dir=tmp_path, environment="test", embedded_worker="off"
    )
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'docs.db'}")
    # A gateway of its own: no catalog sync into the sandbox (this app has no schema).
    return create_app(settings, database=database, stripe_gateway=object())  # type: ignore[arg-type]


async def test_docs_reference_no_external_host(tmp_path: Path) -> None:
    transport = httpx.ASGITransport(app=docs_app(tmp_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
        assert urls, page.text
        assert not [u for u in urls if urlsplit(u).netloc], urls
        assert "cdn." not in page.text and "https://" not in page.text
        for url in urls:
            asset = await client.get(url)
            assert asset.status_code == 200, url
        assert (await client.get("/redoc")).status_code == 404  # ReDoc would need a CDN


@pytest.fixture
def served_docs(tmp_path: Path) -> Iterator[str]:
    served = ServedApp(docs_app(tmp_path))
    try:
        yield served.url
    finally:
        served.stop()


@pytest.mark.browser
async def test_docs_render_with_the_network_cut(served_docs: str) -> None:
    require_browser()
    from playwright.async_api import async_playwright

    aborted: list[str] = []

    async def only_local(route: Any) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            await route.continue_()
        else:
            aborted.append(route.request.url)
            await route.abort()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            page = await browser.new_page()
            await page.route("**/*", only_local)
            await page.goto(served_docs + "/docs")
            title = page.locator(".swagger-ui .info .title")
            await title.wait_for(timeout=60_000)
            assert "billfold" in await title.inner_text()
            assert await page.locator(".opblock").count() > 5
        finally:
            await browser.close()
    assert aborted == []
