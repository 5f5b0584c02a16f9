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
