"""Where the browser tests find Chromium. It starts with this process's environment (what
Playwright and subprocess pass on by default), so under scripts/test-dates (a moved wall
clock, preloaded by tests/faketime/fakedate.c) the browser lives on the same date as the
servers it talks to."""

from __future__ import annotations

import os

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
