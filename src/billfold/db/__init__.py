"""Database access: the engine, the request-owned unit of work, the base model and migrations."""

from billfold.db.base import Base, JSONType, UTCDateTime, new_id
from billfold.db.engine import Database

__all__ = ["Base", "Database", "JSONType", "UTCDateTime", "new_id"]
