// Drives the sandbox with the official Node SDK: node stripe_sdk.mjs http://127.0.0.1:PORT
import Stripe from "stripe";

const url = new URL(process.argv[2]);
const stripe = new Stripe("sk_test_node", {
  host: url.hostname,
  port: Number(url.port),
  protocol: url.protocol.replace(":", ""),
  maxNetworkRetries: 0,
});

const out = {};
const customer = await stripe.customers.create(
  { email: "node@example.com", metadata: { from: "node" } },
  { idempotencyKey: "node-1" },
);
const again = await stripe.customers.create(
  { email: "node@example.com", metadata: { from: "node" } },
  { idempotencyKey: "node-1" },
);
out.replayed = again.id === customer.id;
const price = await stripe.prices.create({
  currency: "usd",
  unit_amount: 1200,
  recurring: { interval: "month" },
  product_data: { name: "Node plan" },
  lookup_key: "node_monthly",
  expand: ["product"],
});
out.productName = price.product.name;
const listed = await stripe.prices.list({ lookup_keys: ["node_monthly"], expand: ["data.product"] });
out.lookup =
  listed.data.length === 1 &&
  listed.data[0].id === price.id &&
  listed.data[0].product.name === "Node plan";
const found = await stripe.customers.search({ query: "metadata['from']:'node'" });
out.search = found.data.map((c) => c.id);
out.customer = customer.id;
try {
  await stripe.customers.create({ bogus: "1" });
  out.unknown = null;
} catch (err) {
  out.unknown = { type: err.type, param: err.param, status: err.statusCode };
}
const payload = JSON.stringify({ id: "evt_node", object: "event" });
const header = stripe.webhooks.generateTestHeaderString({ payload, secret: "whsec_node" });
out.signature = stripe.webhooks.constructEvent(payload, header, "whsec_node").id;
console.log(JSON.stringify(out));
