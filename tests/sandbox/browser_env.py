"""The environment the browser tests start Chromium with."""

from __future__ import annotations

import os


def chromium_env() -> dict[str, str]:
    """The environment Chromium starts with: this process's, so that under scripts/test-dates
    (a moved wall clock, preloaded by tests/faketime/fakedate.c) the browser lives on the same
    date as the servers it talks to."""
    return dict(os.environ)


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
