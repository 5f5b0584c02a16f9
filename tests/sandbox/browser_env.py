"""The environment the browser tests start Chromium with."""

from __future__ import annotations

import os


def chromium_env() -> dict[str, str]:
    """This process's environment without libfaketime: Chromium does not run with it preloaded
    (its zygote dies), so under scripts/test-dates the browser keeps the real date while the
    servers it talks to have the faked one."""
    return {
        k: v for k, v in os.environ.items() if k != "LD_PRELOAD" and not k.startswith("FAKETIME")
    }


CHROMIUM = "/usr/bin/chromium"


def require_browser() -> None:
    """Skip (or, with BILLFOLD_REQUIRE_BROWSER=1 as in CI, fail) when Chromium is missing."""
    import pytest

    if os.path.exists(CHROMIUM):
        return
    message = f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    if os.environ.get("BILLFOLD_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)
