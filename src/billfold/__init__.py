"""billfold: self-hosted billing for SaaS products that take payments through Stripe."""

__version__ = "0.1.0"
