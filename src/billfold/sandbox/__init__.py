"""billfold's Stripe sandbox: a stateful Stripe REST API as an ASGI app (see FRAMEWORK.md)."""

from billfold.sandbox.app import create_sandbox_app
from billfold.sandbox.errors import StripeError
from billfold.sandbox.routing import Call, SandboxRouter
from billfold.sandbox.state import SandboxState

__all__ = ["Call", "SandboxRouter", "SandboxState", "StripeError", "create_sandbox_app"]
