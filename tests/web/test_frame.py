"""The frame: assets served from the package (with htmx's licence), templates that keep to the
CSP (no inline script or style), amounts and dates in the customer's locale."""

from __future__ import annotations

import re
from importlib import resources

import httpx

from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.web.rendering import _negotiate
from tests.web.conftest import sign_in


def test_the_package_ships_the_templates_and_htmx_with_its_licence() -> None:
    web = resources.files("billfold.web")
    assert web.joinpath("templates/base.html").is_file()
    assert web.joinpath("static/panel.css").is_file()
    assert "Zero-Clause BSD" in web.joinpath("static/htmx/LICENSE").read_text()
    assert 'version:"2.0.11"' in web.joinpath("static/htmx/htmx.min.js").read_text()


def test_templates_keep_to_the_content_security_policy() -> None:
    """script-src and style-src are 'self': no inline script, handler or style anywhere."""
    templates = resources.files("billfold.web").joinpath("templates")
    names = [t for t in templates.iterdir() if t.name.endswith(".html")]
    names += [t for t in templates.joinpath("operator").iterdir() if t.name.endswith(".html")]
    assert len(names) >= 12
    for template in names:
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert not re.search(r"\son[a-z]+=", text), template.name
        assert " style=" not in text and "<style" not in text, template.name


async def test_static_files_are_served(panel: httpx.AsyncClient) -> None:
    css = await panel.get("/panel-static/panel.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    js = await panel.get("/panel-static/htmx/htmx.min.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert (await panel.get("/panel-static/../templates/base.html")).status_code == 404


async def test_amounts_follow_the_customers_locale(
    panel: httpx.AsyncClient, settings: Settings, clock: FrozenClock, database: object
) -> None:
    await sign_in(panel, settings, clock, "user:alice")
    english = (await panel.get("/subscription", headers={"Accept-Language": "en-US"})).text
    assert "$6.99" in english and "€6.49" in english
    german = await panel.get("/subscription", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert "6,99\xa0$" in german.text and "6,49\xa0€" in german.text
    assert '<html lang="de">' in german.text
    french = (await panel.get("/subscription", headers={"Accept-Language": "fr"})).text
    assert "6,49\u202f€" in french or "6,49\xa0€" in french


def test_the_locale_is_negotiated_by_weight() -> None:
    assert _negotiate("") == "en_US"
    assert _negotiate("xx-YY, de;q=0.5, fr;q=0.8") == "fr"
    assert _negotiate("*;q=1, nl-BE") == "nl_BE"
    assert _negotiate("de;q=abc") == "en_US"
    assert _negotiate("a" * 10_000) == "en_US"


def test_the_tasks_that_call_stripe_count_against_the_checkout_budget(panel_app: object) -> None:
    from billfold.api.ratelimit import RateLimitClass, rate_limit_class

    routes = panel_app.router.routes  # type: ignore[attr-defined]
    for method, path, expected in (
        ("POST", "/subscription/checkout", RateLimitClass.CHECKOUT),
        ("POST", "/subscription/change", RateLimitClass.CHECKOUT),
        ("POST", "/subscription/portal", RateLimitClass.CHECKOUT),
        ("POST", "/subscription/cancel", RateLimitClass.API),
        ("GET", "/", RateLimitClass.API),
    ):
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
        assert rate_limit_class(routes, scope) == expected, path
