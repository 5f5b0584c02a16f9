"""The plan catalog: plans and prices from a TOML file and the environment, synced to Stripe by
lookup key (`service.load_catalog`, `service.resolve_price`, `service.sync_catalog`)."""
