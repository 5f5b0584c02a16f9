"""The API tests use the subscription fixtures (the fake gateway, `api`, `synced`, ...) and the
end-to-end fixtures (`billfold_server`: billfold on a loopback port with the Stripe sandbox)."""

from tests.e2e_fixtures import *  # noqa: F403
from tests.subscriptions.fixtures import *  # noqa: F403
