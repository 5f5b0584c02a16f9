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
