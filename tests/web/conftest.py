"""The panel's fixtures: billfold in process on a frozen clock (`panel_app`, `panel`), and
helpers to sign in with a link and read a page's CSRF token. The subscription fixtures (`api`,
`synced`, ...) run billfold's real Stripe adapter on the sandbox (`gateway`, `stripe_world`),
and `billfold_server` serves billfold on a loopback port (tests/e2e_fixtures.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from billfold.app import create_app
from billfold.auth.principal import AccountRef
from billfold.auth.sessions import issue_sign_in_link
from billfold.clock import FrozenClock
from billfold.config import Settings
from billfold.db.engine import Database
from billfold.stripe.gateway import StripeClientGateway
from tests.e2e_fixtures import *  # noqa: F403
from tests.sandbox_fixtures import SandboxServer
from tests.sandbox_stripe import sandbox_gateway, stripe_world  # noqa: F401
from tests.subscriptions.fixtures import *  # noqa: F403

BASE = "http://billfold.test"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def gateway(billing_settings: Settings, sandbox_server: SandboxServer) -> StripeClientGateway:
    """Overrides the fake: `api` and `synced` use billfold's real adapter on the sandbox."""
    return sandbox_gateway(billing_settings, sandbox_server)


@pytest.fixture
def panel_app(settings: Settings, database: Database, clock: FrozenClock) -> Any:
    return create_app(settings, database=database, clock=clock)


@pytest.fixture
async def panel(panel_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of the panel: keeps its cookies, follows no redirect by itself."""
    transport = httpx.ASGITransport(app=panel_app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def link(settings: Settings, clock: FrozenClock, account: str | None, **kwargs: Any) -> str:
    """A sign-in link's path, signed with the shared secret as the host app would."""
    ref = AccountRef.parse(account) if account else None
    token = issue_sign_in_link(settings, ref, now=clock.now(), **kwargs)
    return f"/sign-in?token={token}"


async def sign_in(
    client: httpx.AsyncClient,
    settings: Settings,
    clock: FrozenClock,
    account: str | None,
    **kw: Any,
) -> httpx.Response:
    response = await client.get(link(settings, clock, account, **kw))
    assert response.status_code == 303, response.text
    return response


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)
