"""Types of parameters the sandbox accepts without modelling them (taxes, Connect, rendering):
checked as Stripe checks them, so a wrong type or an over-long value is refused with the
parameter named, then ignored by the route. Routes merge these over their `anything()` fields."""

from __future__ import annotations

from billfold_sandbox.params import Field, anything, array, boolean, integer, obj, string

DISCOUNTS = array(
    obj({"coupon": string(), "discount": string(), "promotion_code": string()}), nullable=True
)
AUTOMATIC_TAX = obj({"enabled": boolean(required=True), "liability": anything()})

INVOICE: dict[str, Field] = {
    "account_tax_ids": array(string(), nullable=True),
    "application_fee_amount": integer(min=0),
    "automatic_tax": AUTOMATIC_TAX,
    "automatically_finalizes_at": integer(),
    "custom_fields": array(
        obj(
            {
                "name": string(required=True, max_length=40),
                "value": string(required=True, max_length=140),
            }
        ),
        nullable=True,
        max_items=4,
    ),
    "default_source": string(nullable=True),
    "default_tax_rates": array(string(), nullable=True),
    "discounts": DISCOUNTS,
    "effective_at": integer(nullable=True),
    "number": string(nullable=True, max_length=26),
    "on_behalf_of": string(nullable=True),
    "statement_descriptor": string(max_length=22),
}

SUBSCRIPTION: dict[str, Field] = {
    "application_fee_percent": anything(),  # a decimal or "" on update
    "automatic_tax": AUTOMATIC_TAX,
    "default_source": string(nullable=True),
    "default_tax_rates": array(string(), nullable=True),
    "on_behalf_of": string(nullable=True),
}
