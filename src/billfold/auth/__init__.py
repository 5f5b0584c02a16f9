"""Who is calling: bearer tokens (JWT), API keys, and the tenant they may act for."""

from billfold.auth.principal import Principal

__all__ = ["Principal"]
