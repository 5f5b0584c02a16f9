"""Which Stripe product and price each catalog price was synced to (by lookup key)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from billfold.db.base import Base, UTCDateTime


class CatalogPriceLink(Base):
    __tablename__ = "catalog_price_links"

    lookup_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    stripe_price_id: Mapped[str] = mapped_column(String(255), index=True)
    stripe_product_id: Mapped[str] = mapped_column(String(255))
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime)
