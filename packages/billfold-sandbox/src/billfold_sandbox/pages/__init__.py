"""The sandbox's hosted pages (Checkout, the billing portal): Jinja2 templates in this folder.

Also the one place that builds page addresses (`sandbox_base_url`, `remember_base`,
`page_url`), for these pages and the payment engine's (3-D Secure, microdeposits) alike.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from billfold_sandbox.state import SandboxState

_TEMPLATES = Path(__file__).resolve().parent
_env = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)


def safe_link(url: object) -> str | None:
    """`url` when a page may write it into a link's href: an http(s) URL without whitespace,
    control characters or backslashes (never `javascript:` or `data:`); None otherwise, and the
    page leaves the link out. Autoescaping keeps it inside its attribute."""
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        return None
    if any(c.isspace() or c == "\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return None
    return url


_env.filters["safe_link"] = safe_link


def render_page(template: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    """A hosted page rendered from `template` (never cached: it shows live state)."""
    html = _env.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def sandbox_base_url(request: Request) -> str:
    """The sandbox's absolute base URL as the caller reached it, mount prefix included
    (`http://127.0.0.1:8000/stripe-sandbox` inside `billfold serve`)."""
    base = str(request.base_url).rstrip("/")
    # Inside a Mount, Starlette's base_url stops at the outer app; the mount's prefix is in
    # the scope's root_path.
    root_path = str(request.scope.get("root_path", "")).rstrip("/")
    if root_path and not base.endswith(root_path):
        base += root_path
    return base


_bases: weakref.WeakKeyDictionary[SandboxState, str] = weakref.WeakKeyDictionary()


def remember_base(state: SandboxState, request: Request) -> None:
    """Note where this sandbox is reached, for links made later without a request (an invoice
    finalized while a test clock advances still gets an absolute `hosted_invoice_url`)."""
    _bases[state] = sandbox_base_url(request)


def page_url(state: SandboxState, path: str) -> str:
    """The absolute address of a hosted page (relative to the sandbox before any call)."""
    return _bases.get(state, "") + path


def object_for_page(state: SandboxState, object_type: str, page: str) -> Any:
    """The object behind a hosted page's secret path `{id}_{secret}` (None if it does not match)."""
    found = state.get(object_type, page.rsplit("_", 1)[0])
    if found is None or found.get("_page") != page:
        return None
    return found
