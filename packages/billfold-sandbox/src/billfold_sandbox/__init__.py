"""billfold's Stripe sandbox: a stateful Stripe REST API as an ASGI app (see FRAMEWORK.md)."""

from billfold_sandbox.app import create_sandbox_app
from billfold_sandbox.errors import StripeError
from billfold_sandbox.routing import Call, SandboxRouter
from billfold_sandbox.state import SandboxState

__all__ = ["Call", "SandboxRouter", "SandboxState", "StripeError", "create_sandbox_app"]
