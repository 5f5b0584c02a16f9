"""The whole schema: every domain's models module, imported, so their tables are on
`Base.metadata` (Alembic's env.py and the tests load it).

A composition root like `app.py`: a domain declares its tables in its own `models.py`, and a
new domain adds that module here (an import, so a misspelt or moved module fails at once).
"""

from __future__ import annotations

from types import ModuleType

from sqlalchemy import MetaData

from billfold.audit import models as audit_models
from billfold.auth import models as auth_models
from billfold.auth import sessions as auth_sessions
from billfold.catalog import models as catalog_models
from billfold.credits import models as credits_models
from billfold.customers import models as customers_models
from billfold.db.base import Base
from billfold.jobs import models as jobs_models
from billfold.ledger import models as ledger_models
from billfold.payments import models as payments_models
from billfold.stripe import models as stripe_models
from billfold.subscriptions import models as subscriptions_models

MODEL_MODULES: tuple[ModuleType, ...] = (
    customers_models,
    auth_models,
    audit_models,
    ledger_models,
    subscriptions_models,
    stripe_models,
    jobs_models,
    catalog_models,
    credits_models,
    payments_models,
    auth_sessions,  # the panel's sessions (billfold.web)
)


def load_all_models() -> MetaData:
    """The metadata of every table (importing this module already registered them)."""
    return Base.metadata
