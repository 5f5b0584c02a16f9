"""Subscription test fixtures live in `fixtures.py` so tests/api can use them too; the
end-to-end `billfold_server` lives in tests/e2e_fixtures.py."""

from tests.e2e_fixtures import billfold_catalog_file, billfold_server  # noqa: F401
from tests.subscriptions.fixtures import *  # noqa: F403
