// Drives the sandbox's billing with the official Node SDK: node billing_sdk.mjs http://127.0.0.1:PORT
import Stripe from "stripe";

const url = new URL(process.argv[2]);
const stripe = new Stripe("sk_test_node_billing", {
  host: url.hostname,
  port: Number(url.port),
  protocol: url.protocol.replace(":", ""),
  maxNetworkRetries: 0,
});

const out = {};
const price = await stripe.prices.create({
  currency: "usd",
  unit_amount: 2000,
  recurring: { interval: "month" },
  product_data: { name: "Node premium" },
});
const clock = await stripe.testHelpers.testClocks.create({ frozen_time: 1767225600 });
const customer = await stripe.customers.create({ email: "n@example.com", test_clock: clock.id });
const pm = await stripe.paymentMethods.attach("pm_card_visa", { customer: customer.id });
let sub = await stripe.subscriptions.create({
  customer: customer.id,
  items: [{ price: price.id, quantity: 2 }],
  default_payment_method: pm.id,
  metadata: { from: "node" },
  expand: ["latest_invoice.payments"],
});
out.status = sub.status;
out.periodEnd = sub.items.data[0].current_period_end;
out.paid = sub.latest_invoice.payments.data[0].amount_paid;
sub = await stripe.subscriptions.update(sub.id, { cancel_at_period_end: true });
out.cancelAt = sub.cancel_at;
await stripe.testHelpers.testClocks.advance(clock.id, { frozen_time: 1767225600 + 32 * 86400 });
out.after = (await stripe.subscriptions.retrieve(sub.id)).status;

const session = await stripe.checkout.sessions.create({
  mode: "subscription",
  line_items: [{ price: price.id, quantity: 1 }],
  success_url: "https://app.example/ok?id={CHECKOUT_SESSION_ID}",
  subscription_data: { trial_period_days: 7, metadata: { plan: "premium" } },
  customer_email: "checkout@example.com",
});
const completed = await stripe.rawRequest(
  "POST",
  `/v1/test_helpers/checkout/sessions/${session.id}/complete`,
  { payment_method: "pm_card_visa" },
);
out.session = completed.status;
const trial = await stripe.subscriptions.retrieve(completed.subscription);
out.trial = [trial.status, trial.metadata.plan];
const items = await stripe.checkout.sessions.listLineItems(session.id);
out.lineItems = items.data.map((item) => item.price.id);
console.log(JSON.stringify(out));
