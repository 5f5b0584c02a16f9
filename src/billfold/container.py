"""What a running billfold is made of, wired once by `create_app` (the composition root)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from billfold.clock import Clock
from billfold.config import Settings
from billfold.db.engine import Database


@dataclass
class Container:
    settings: Settings
    db: Database
    clock: Clock
    # Adapters added by other domains (Stripe gateway, cache, rate limiter, ...) by name.
    extras: dict[str, Any] = field(default_factory=dict)
