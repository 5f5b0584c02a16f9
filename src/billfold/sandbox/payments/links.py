"""Addresses of the sandbox's own payment pages (3-D Secure, microdeposit verification).

The sandbox can be mounted anywhere (`/stripe-sandbox` inside billfold, `/` standalone), so the
base address is learnt from the API calls it serves; objects created before any call (in tests
that drive the state directly) get a path relative to the sandbox's root.
"""

from __future__ import annotations

import weakref

from starlette.requests import Request

from billfold.sandbox.state import SandboxState

_bases: weakref.WeakKeyDictionary[SandboxState, str] = weakref.WeakKeyDictionary()


def remember_base(state: SandboxState, request: Request) -> None:
    """Note where this sandbox is reached (called by the payment routes)."""
    _bases[state] = str(request.base_url).rstrip("/")


def page_url(state: SandboxState, path: str) -> str:
    """The full address of a sandbox page such as `/pages/authenticate/pi_123`."""
    return _bases.get(state, "") + path
