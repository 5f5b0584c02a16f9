"""Billing accounts: one per user, organization or shop, each with its Stripe customer."""
