"""The sandbox's resource modules: each has `router = SandboxRouter()`.

Add a module by appending one line (owners: see FRAMEWORK.md).
"""

RESOURCE_MODULES: list[str] = [
    "billfold.sandbox.resources.customers",
    "billfold.sandbox.resources.products",
    "billfold.sandbox.resources.prices",
    "billfold.sandbox.resources.coupons",
    "billfold.sandbox.resources.promotion_codes",
    "billfold.sandbox.resources.events",
    "billfold.sandbox.resources.webhook_endpoints",
    "billfold.sandbox.resources.test_clocks",
    "billfold.sandbox.resources.sandbox_helpers",
    # sandbox-payments: append your modules below this line
    "billfold.sandbox.resources.payment_methods",
    "billfold.sandbox.resources.setup_intents",
    "billfold.sandbox.resources.payment_intents",
    "billfold.sandbox.resources.charges",
    "billfold.sandbox.resources.refunds",
    "billfold.sandbox.resources.payment_pages",
    # sandbox-billing: append your modules below this line
    "billfold.sandbox.resources.subscriptions",
    "billfold.sandbox.resources.invoices",
    "billfold.sandbox.resources.checkout",
    "billfold.sandbox.resources.portal",
]
