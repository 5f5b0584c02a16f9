/* The payment methods page: a card or a US bank account added through Stripe.js (the real one,
 * or the sandbox's stand-in), on setup intents billfold creates. Card and bank details go from
 * Stripe.js to Stripe only; billfold sees the PaymentMethod's id. No inline script (the CSP). */
(function () {
  "use strict";
  var root = document.getElementById("stripe-setup");
  if (!root) return;
  var status = document.getElementById("setup-status");

  function say(message, bad) {
    status.textContent = message;
    status.className = bad ? "bad" : "";
  }

  if (typeof window.Stripe !== "function") {
    say("Stripe.js could not be loaded, so payment methods cannot be added right now.", true);
    return;
  }
  var stripe = window.Stripe(root.dataset.stripeKey);
  var csrf = root.dataset.csrf;

  function post(path, fields) {
    var body = new FormData();
    body.append("csrf_token", csrf);
    Object.keys(fields).forEach(function (key) {
      body.append(key, fields[key]);
    });
    return fetch(path, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    }).then(
      function (response) {
        var type = response.headers.get("content-type") || "";
        if (type.indexOf("json") !== -1) return response.json();
        return { error: { message: "The request was refused (" + response.status + "): reload the page and try again." } };
      },
      function () {
        return { error: { message: "The server could not be reached: try again." } };
      }
    );
  }

  function busy(form, on) {
    form.querySelectorAll("button").forEach(function (button) {
      button.disabled = on;
    });
  }

  var elements = stripe.elements();
  var card = elements.create("card");
  card.mount("#card-element");

  var cardForm = document.getElementById("card-form");
  cardForm.addEventListener("submit", async function (event) {
    event.preventDefault();
    busy(cardForm, true);
    say("Saving your card…");
    try {
      var made = await stripe.createPaymentMethod({ type: "card", card: card });
      if (made.error) return say(made.error.message, true);
      var saved = await post("/payment-methods/setup/card", { payment_method_id: made.paymentMethod.id });
      if (saved.error) return say(saved.error.message, true);
      if (saved.status === "requires_action" && saved.client_secret) {
        var confirmed = await stripe.handleNextAction({ clientSecret: saved.client_secret });
        if (confirmed.error) return say(confirmed.error.message, true);
        saved = await post("/payment-methods/setup/finish", { setup_intent_id: saved.setup_intent_id });
        if (saved.error) return say(saved.error.message, true);
      }
      if (saved.status !== "succeeded") return say("Your card could not be saved: try another.", true);
      window.location.assign("/payment-methods?done=card-added");
    } finally {
      busy(cardForm, false);
    }
  });

  var bankForm = document.getElementById("bank-form");
  bankForm.addEventListener("submit", async function (event) {
    event.preventDefault();
    var name = document.getElementById("bank-holder").value.trim();
    busy(bankForm, true);
    say("Adding your bank account…");
    try {
      var started = await post("/payment-methods/setup/us-bank", {});
      if (started.error) return say(started.error.message, true);
      var secret = started.client_secret;
      var collected = await stripe.collectBankAccountForSetup({
        clientSecret: secret,
        params: {
          payment_method_type: "us_bank_account",
          payment_method_data: { billing_details: { name: name } },
        },
      });
      if (collected.error) return say(collected.error.message, true);
      if (collected.setupIntent.status === "requires_payment_method") return say("No bank account was added.");
      var confirmed = await stripe.confirmUsBankAccountSetup(secret);
      if (confirmed.error) return say(confirmed.error.message, true);
      var saved = await post("/payment-methods/setup/finish", { setup_intent_id: started.setup_intent_id });
      if (saved.error) return say(saved.error.message, true);
      if (saved.status === "succeeded") return window.location.assign("/payment-methods?done=bank-verified");
      if (saved.next_action === "verify_with_microdeposits") return window.location.assign("/payment-methods?done=bank-added");
      say("Your bank account could not be added: try again.", true);
    } finally {
      busy(bankForm, false);
    }
  });

  /* A payment of the balance the bank wants confirmed (3-D Secure). */
  var actionSecret = root.dataset.actionSecret;
  if (actionSecret) {
    stripe.handleNextAction({ clientSecret: actionSecret }).then(function (result) {
      if (result.error) return say(result.error.message, true);
      window.location.assign("/payment-methods?done=confirmed");
    });
  }
})();
