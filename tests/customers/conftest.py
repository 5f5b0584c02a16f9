"""The customers tests use the subscription fixtures (billfold wired to the fake gateway)."""

from tests.subscriptions.fixtures import *  # noqa: F403
