"""Subscription test fixtures live in `fixtures.py` so tests/api can use them too."""

from tests.subscriptions.fixtures import *  # noqa: F403
