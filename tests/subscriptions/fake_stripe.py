"""The fake gateway moved to tests/fakes/stripe_gateway.py (one fake per capability)."""

from tests.fakes.stripe_gateway import FakeStripe, FakeStripeGateway, sign

__all__ = ["FakeStripe", "FakeStripeGateway", "sign"]
