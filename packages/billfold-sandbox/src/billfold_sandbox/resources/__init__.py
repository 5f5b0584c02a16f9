"""The sandbox's resource modules: each has `router = SandboxRouter()`.

Add a module by appending one line (owners: see FRAMEWORK.md).
"""

RESOURCE_MODULES: list[str] = [
    "billfold_sandbox.resources.customers",
    "billfold_sandbox.resources.products",
    "billfold_sandbox.resources.prices",
    "billfold_sandbox.resources.coupons",
    "billfold_sandbox.resources.promotion_codes",
    "billfold_sandbox.resources.events",
    "billfold_sandbox.resources.webhook_endpoints",
    "billfold_sandbox.resources.test_clocks",
    "billfold_sandbox.resources.sandbox_helpers",
    # sandbox-payments: append your modules below this line
    "billfold_sandbox.resources.payment_methods",
    "billfold_sandbox.resources.setup_intents",
    "billfold_sandbox.resources.payment_intents",
    "billfold_sandbox.resources.charges",
    "billfold_sandbox.resources.refunds",
    "billfold_sandbox.resources.payment_pages",
    "billfold_sandbox.resources.disputes",
    "billfold_sandbox.resources.stripe_js",
    # sandbox-billing: append your modules below this line
    "billfold_sandbox.resources.subscriptions",
    "billfold_sandbox.resources.invoices",
    "billfold_sandbox.resources.checkout",
    "billfold_sandbox.resources.portal",
    "billfold_sandbox.resources.customer_balance",
    # sandbox billing meters, credit grants, entitlements, cash balance
    "billfold_sandbox.resources.billing_meters",
    "billfold_sandbox.resources.billing_credits",
    "billfold_sandbox.resources.entitlements",
    "billfold_sandbox.resources.cash_balance",
    "billfold_sandbox.resources.customer_tax_ids",
    "billfold_sandbox.resources.subscription_pause_migrate",
    "billfold_sandbox.resources.invoice_attach_payment",
    "billfold_sandbox.resources.invoice_item_update",
    "billfold_sandbox.resources.subscription_items",
    "billfold_sandbox.resources.subscription_schedules",
    "billfold_sandbox.resources.invoice_lines",
    "billfold_sandbox.resources.invoice_sending",
    "billfold_sandbox.resources.credit_notes",
]
