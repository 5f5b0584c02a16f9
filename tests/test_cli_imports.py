"""The commands that do not serve start without the web stack or the Stripe sandbox."""

from __future__ import annotations

import subprocess
import sys

WEB_STACK = ("fastapi", "starlette", "uvicorn", "billfold_sandbox", "billfold.app")


def test_the_cli_imports_neither_the_web_stack_nor_the_sandbox() -> None:
    # A fresh interpreter: the test process itself has imported everything.
    code = (
        f"import sys, billfold.cli\nprint(','.join(m for m in {WEB_STACK!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_the_stripe_sdk_loads_on_first_use_not_at_start(tmp_path: object) -> None:
    # An app built for a live key, then a webhook signature checked: only the second loads
    # the SDK (tens of MB and a second of imports at every start before).
    code = """
import sys, time
from billfold.app import create_app
from billfold.config import Settings
from billfold.stripe.gateway import gateway_of
settings = Settings(
    stripe_secret_key="sk_test_lazy", stripe_webhook_secret=["whsec_lazy"],
    jwt_secret="j" * 40, data_dir=sys.argv[1], environment="test",
)
app = create_app(settings)
assert gateway_of(app.state.container) is not None
print("stripe" in sys.modules)
from billfold.stripe.inbox import verify_signature
try:
    verify_signature(settings, b"{}", "t=1,v1=00")
except Exception:
    pass
print("stripe" in sys.modules)
"""
    loaded = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == ["False", "True"]
