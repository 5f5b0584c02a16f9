// Calls billfold's tRPC billing procedures (document 000) with the official @trpc/client,
// once per call with httpLink and batched with httpBatchLink, and prints what came back as JSON.
//
//   node trpc_billing.mjs BILLFOLD_URL TOKEN [--batch-token TOKEN] [--product ID] [--app-url URL]
//
// TOKEN's user goes through: portal (no Stripe customer yet: an error), checkout, portal again.
// The batch token's user (default: TOKEN's) sends [portal, checkout] in one request, then
// [portal, portal] with the token in the Authorization header instead of the body.
import { createTRPCClient, httpBatchLink, httpLink, TRPCClientError } from "@trpc/client";

function parseArgs(argv) {
  const positional = [];
  const options = { product: "premium", appUrl: "https://app.example.com", batchToken: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--product") options.product = argv[++i];
    else if (arg === "--app-url") options.appUrl = argv[++i];
    else if (arg === "--batch-token") options.batchToken = argv[++i];
    else positional.push(arg);
  }
  if (positional.length !== 2) {
    console.error("usage: node trpc_billing.mjs BILLFOLD_URL TOKEN [--batch-token T] [--product ID] [--app-url URL]");
    process.exit(2);
  }
  const [baseUrl, token] = positional;
  return { baseUrl: baseUrl.replace(/\/$/, ""), token, ...options, batchToken: options.batchToken ?? token };
}

// A fetch that records every HTTP request the links make, to show what went over the wire.
function recordingFetch(log) {
  return async (url, init) => {
    const response = await fetch(url, init);
    log.push({ method: init?.method ?? "GET", url: String(url), status: response.status });
    return response;
  };
}

async function settle(promise) {
  try {
    return { ok: true, data: await promise };
  } catch (err) {
    if (err instanceof TRPCClientError) {
      return { ok: false, error: { message: err.message, code: err.shape?.code, data: err.data } };
    }
    throw err;
  }
}

const args = parseArgs(process.argv.slice(2));
const url = `${args.baseUrl}/trpc`;
const checkoutInput = (token) => ({
  productId: args.product,
  successUrl: `${args.appUrl}/success`,
  cancelUrl: `${args.appUrl}/cancel`,
  ...(token ? { token } : {}),
});
const portalInput = (token) => ({ returnUrl: `${args.appUrl}/dashboard`, ...(token ? { token } : {}) });

// httpLink: one HTTP request per call, the token in the input as document 000 shows it.
const single = { requests: [] };
const one = createTRPCClient({ links: [httpLink({ url, fetch: recordingFetch(single.requests) })] });
single.portalBeforeCheckout = await settle(one.billing.createCustomerPortalSession.mutate(portalInput(args.token)));
single.checkout = await settle(one.billing.createCheckoutSession.mutate(checkoutInput(args.token)));
single.portalAfterCheckout = await settle(one.billing.createCustomerPortalSession.mutate(portalInput(args.token)));

// httpBatchLink: calls made in the same tick travel in one HTTP request.
const batch = { requests: [], headerRequests: [] };
const batched = createTRPCClient({ links: [httpBatchLink({ url, fetch: recordingFetch(batch.requests) })] });
batch.portalThenCheckout = await Promise.all([
  settle(batched.billing.createCustomerPortalSession.mutate(portalInput(args.batchToken))),
  settle(batched.billing.createCheckoutSession.mutate(checkoutInput(args.batchToken))),
]);
const withHeader = createTRPCClient({
  links: [
    httpBatchLink({
      url,
      fetch: recordingFetch(batch.headerRequests),
      headers: () => ({ Authorization: `Bearer ${args.batchToken}` }),
    }),
  ],
});
batch.portalTwiceWithHeaderToken = await Promise.all([
  settle(withHeader.billing.createCustomerPortalSession.mutate(portalInput(null))),
  settle(withHeader.billing.createCustomerPortalSession.mutate(portalInput(null))),
]);

console.log(JSON.stringify({ httpLink: single, httpBatchLink: batch }, null, 2));
