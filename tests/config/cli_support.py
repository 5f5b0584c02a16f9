"""Run the installed `billfold` command as a user would: from a directory other than the clone,
with only the environment the test gives it (plus PATH and HOME)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BILLFOLD = str(Path(sys.executable).parent / "billfold")


def run_billfold(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BILLFOLD_", "STRIPE_"))}
    base.pop("FRONTEND_URL", None)
    return subprocess.run(
        [BILLFOLD, *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
