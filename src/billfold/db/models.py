"""Imports every domain's models so Alembic and tests see the whole schema.

Add a domain's `models` module here when you add the domain.
"""

from __future__ import annotations

import importlib

MODEL_MODULES = [
    "billfold.customers.models",
    "billfold.auth.models",
    "billfold.audit.models",
    "billfold.ledger.models",
    "billfold.subscriptions.models",
    "billfold.stripe.models",
    "billfold.catalog.models",
    "billfold.jobs.models",
]


def load_all_models() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)
