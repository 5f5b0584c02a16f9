/* A stand-in for Stripe.js v3, served by the billfold Stripe sandbox at <mount>/js/v3.
 * A page written against Stripe.js runs against the sandbox by changing only the script's URL.
 * No network access beyond the sandbox; no iframes for the fields (they are plain inputs in the
 * page, with Stripe's field names), a modal iframe for 3-D Secure and bank details.
 * Results have Stripe.js's shapes: {setupIntent}, {paymentIntent}, {error: {type, code, message}}.
 */
(function () {
  "use strict";
  var BASE = "__SANDBOX_BASE__";

  function encode(params, prefix, out) {
    Object.keys(params).forEach(function (key) {
      var value = params[key];
      var name = prefix ? prefix + "[" + key + "]" : key;
      if (value === undefined || value === null) return;
      if (Array.isArray(value)) {
        value.forEach(function (item, index) {
          if (typeof item === "object") encode(item, name + "[" + index + "]", out);
          else out.push(encodeURIComponent(name + "[" + index + "]") + "=" + encodeURIComponent(item));
        });
      } else if (typeof value === "object") {
        encode(value, name, out);
      } else {
        out.push(encodeURIComponent(name) + "=" + encodeURIComponent(value));
      }
    });
    return out;
  }

  function api(key, method, path, params) {
    var body = encode(params || {}, "", []).join("&");
    var url = BASE + path;
    var init = { method: method, headers: { Authorization: "Bearer " + key } };
    if (method === "GET") url += body ? "?" + body : "";
    else {
      init.headers["Content-Type"] = "application/x-www-form-urlencoded";
      init.body = body;
    }
    return fetch(url, init).then(function (response) {
      return response.json().then(function (json) {
        if (!response.ok) return { error: json.error || { type: "api_error", message: "Request failed" } };
        return { object: json };
      });
    }, function () {
      return { error: { type: "api_connection_error", message: "Could not reach the sandbox." } };
    });
  }

  function idOf(clientSecret) {
    return String(clientSecret || "").split("_secret_")[0];
  }

  function digits(value) {
    return String(value || "").replace(/\D/g, "");
  }

  function brandOf(number) {
    if (/^4/.test(number)) return "visa";
    if (/^(5[1-5]|2[2-7])/.test(number)) return "mastercard";
    if (/^3[47]/.test(number)) return "amex";
    if (/^(6011|65)/.test(number)) return "discover";
    if (/^3(0[0-5]|[68])/.test(number)) return "diners";
    if (/^35/.test(number)) return "jcb";
    if (/^62/.test(number)) return "unionpay";
    return "unknown";
  }

  function validationError(code, message) {
    return { type: "validation_error", code: code, message: message };
  }

  /* ---- the modal: 3-D Secure challenge and bank details ---------------------------------- */

  function modal(build) {
    var overlay = document.createElement("div");
    overlay.setAttribute("data-sandbox-modal", "");
    overlay.style.cssText =
      "position:fixed;inset:0;background:rgba(0,0,0,.45);display:flex;align-items:center;" +
      "justify-content:center;z-index:2147483647";
    var box = document.createElement("div");
    box.style.cssText = "background:#fff;border-radius:8px;padding:1rem;min-width:22rem;max-width:32rem";
    overlay.appendChild(box);
    document.body.appendChild(overlay);
    return new Promise(function (resolve) {
      build(box, function (value) {
        overlay.remove();
        resolve(value);
      });
    });
  }

  function challenge(url) {
    return modal(function (box, done) {
      var frame = document.createElement("iframe");
      frame.name = "stripe-challenge-frame";
      frame.title = "3D Secure challenge";
      frame.style.cssText = "width:28rem;height:22rem;border:0";
      frame.src = url;
      box.appendChild(frame);
      function listen(event) {
        if (event.data && event.data.billfoldSandbox === "3ds-complete") {
          window.removeEventListener("message", listen);
          done(true);
        }
      }
      window.addEventListener("message", listen);
    });
  }

  function bankForm(name) {
    return modal(function (box, done) {
      box.innerHTML =
        "<h2 style='font:600 1.1rem system-ui'>Enter bank details manually</h2>" +
        "<p style='font:0.9rem system-ui'>Test mode: routing 110000000, account 000123456789.</p>" +
        "<label>Account holder <input id='sandbox-bank-name'></label><br>" +
        "<label>Routing number <input id='sandbox-bank-routing' inputmode='numeric'></label><br>" +
        "<label>Account number <input id='sandbox-bank-account' inputmode='numeric'></label><br>" +
        "<label>Confirm account number <input id='sandbox-bank-account-confirm' inputmode='numeric'></label><br>" +
        "<button id='sandbox-bank-submit' type='button'>Continue</button> " +
        "<button id='sandbox-bank-cancel' type='button'>Cancel</button>";
      box.querySelector("#sandbox-bank-name").value = name || "";
      box.querySelector("#sandbox-bank-submit").onclick = function () {
        done({
          name: box.querySelector("#sandbox-bank-name").value,
          routing_number: digits(box.querySelector("#sandbox-bank-routing").value),
          account_number: digits(box.querySelector("#sandbox-bank-account").value),
          confirm: digits(box.querySelector("#sandbox-bank-account-confirm").value),
        });
      };
      box.querySelector("#sandbox-bank-cancel").onclick = function () {
        done(null);
      };
    });
  }

  /* ---- Elements ------------------------------------------------------------------------- */

  function input(name, placeholder, id, mode) {
    var el = document.createElement("input");
    el.name = name;
    el.placeholder = placeholder;
    el.autocomplete = "off";
    if (id) el.id = id;
    if (mode) el.inputMode = mode;
    el.style.cssText = "font:inherit;padding:.4rem;margin:.15rem;border:1px solid #ccd;border-radius:4px";
    return el;
  }

  function Element(type, options) {
    this.type = type;
    this.options = options || {};
    this.handlers = {};
    this.root = null;
    this.tab = "card";
  }

  Element.prototype.on = function (event, handler) {
    (this.handlers[event] = this.handlers[event] || []).push(handler);
    return this;
  };
  Element.prototype.off = function (event) {
    delete this.handlers[event];
    return this;
  };
  Element.prototype._emit = function (event, payload) {
    (this.handlers[event] || []).forEach(function (h) {
      h(payload);
    });
  };
  Element.prototype.mount = function (target) {
    var host = typeof target === "string" ? document.querySelector(target) : target;
    if (!host) throw new Error("IntegrationError: the element to mount into was not found.");
    var self = this;
    var root = document.createElement("div");
    root.className = "StripeElement";
    this.root = root;
    if (this.type === "payment") {
      var tabs = document.createElement("div");
      ["card", "us_bank_account"].forEach(function (tab) {
        var button = document.createElement("button");
        button.type = "button";
        button.textContent = tab === "card" ? "Card" : "US bank account";
        button.id = tab === "card" ? "card-tab" : "us_bank_account-tab";
        button.onclick = function () {
          self.tab = tab;
          card.style.display = tab === "card" ? "" : "none";
          bank.style.display = tab === "card" ? "none" : "";
          self._emit("change", { elementType: "payment", value: { type: tab }, complete: false, empty: true });
        };
        tabs.appendChild(button);
      });
      root.appendChild(tabs);
      var card = document.createElement("div");
      card.appendChild(input("number", "1234 1234 1234 1234", "Field-numberInput", "numeric"));
      card.appendChild(input("expiry", "MM / YY", "Field-expiryInput", "numeric"));
      card.appendChild(input("cvc", "CVC", "Field-cvcInput", "numeric"));
      root.appendChild(card);
      var bank = document.createElement("div");
      bank.style.display = "none";
      bank.appendChild(input("name", "Full name", "Field-nameInput"));
      bank.appendChild(input("routing_number", "Routing number", "Field-routingNumberInput", "numeric"));
      bank.appendChild(input("account_number", "Account number", "Field-accountNumberInput", "numeric"));
      root.appendChild(bank);
    } else {
      root.appendChild(input("cardnumber", "Card number", null, "numeric"));
      root.appendChild(input("exp-date", "MM / YY", null, "numeric"));
      root.appendChild(input("cvc", "CVC", null, "numeric"));
      if (!this.options.hidePostalCode) root.appendChild(input("postal", "ZIP", null));
    }
    root.addEventListener("input", function () {
      var number = self._card().number;
      self._emit("change", {
        elementType: self.type,
        brand: brandOf(number),
        empty: !number,
        complete: !self._cardError(),
        error: undefined,
        value: { type: self.tab },
      });
    });
    host.appendChild(root);
    setTimeout(function () {
      self._emit("ready", { elementType: self.type });
    }, 0);
    return this;
  };
  Element.prototype.unmount = function () {
    if (this.root) this.root.remove();
    this.root = null;
  };
  Element.prototype.destroy = Element.prototype.unmount;
  Element.prototype.clear = function () {
    if (this.root) this.root.querySelectorAll("input").forEach(function (i) { i.value = ""; });
  };
  Element.prototype.focus = function () {
    if (this.root) this.root.querySelector("input").focus();
  };
  Element.prototype.update = function (options) {
    Object.assign(this.options, options || {});
  };
  Element.prototype._value = function (names) {
    var root = this.root;
    for (var i = 0; i < names.length; i++) {
      var found = root && root.querySelector("input[name='" + names[i] + "']");
      if (found && found.offsetParent !== null) return found.value;
      if (found && this.type !== "payment") return found.value;
    }
    return "";
  };
  Element.prototype._card = function () {
    var expiry = digits(this._value(["exp-date", "expiry"]));
    return {
      number: digits(this._value(["cardnumber", "number"])),
      exp_month: expiry.slice(0, 2),
      exp_year: expiry.length >= 6 ? expiry.slice(2, 6) : "20" + expiry.slice(2, 4),
      cvc: digits(this._value(["cvc"])),
    };
  };
  Element.prototype._cardError = function () {
    var card = this._card();
    if (card.number.length < 12) return validationError("incomplete_number", "Your card number is incomplete.");
    var expiry = digits(this._value(["exp-date", "expiry"]));
    if (expiry.length < 4) return validationError("incomplete_expiry", "Your card's expiration date is incomplete.");
    var month = parseInt(card.exp_month, 10);
    if (month < 1 || month > 12) return validationError("invalid_expiry_month", "Your card's expiration date is invalid.");
    if (card.cvc.length < 3) return validationError("incomplete_cvc", "Your card's security code is incomplete.");
    return null;
  };

  function Elements(stripe, options) {
    this.stripe = stripe;
    this.options = options || {};
    this.elements = {};
  }
  Elements.prototype.create = function (type, options) {
    if (type !== "card" && type !== "payment") {
      throw new Error("IntegrationError: the sandbox's Stripe.js offers 'card' and 'payment' elements.");
    }
    var element = new Element(type, options);
    this.elements[type] = element;
    return element;
  };
  Elements.prototype.getElement = function (type) {
    return this.elements[type] || null;
  };
  Elements.prototype.submit = function () {
    var element = this.elements.payment;
    if (element && element.tab === "card") {
      var error = element._cardError();
      if (error) return Promise.resolve({ error: error });
    }
    return Promise.resolve({});
  };
  Elements.prototype.update = function (options) {
    Object.assign(this.options, options || {});
  };

  /* ---- Stripe ---------------------------------------------------------------------------- */

  function Stripe(publishableKey, options) {
    if (!(this instanceof Stripe)) return new Stripe(publishableKey, options);
    if (!/^pk_test_/.test(String(publishableKey || ""))) {
      throw new Error("IntegrationError: the sandbox takes a test publishable key (pk_test_...).");
    }
    this.key = publishableKey;
    this.options = options || {};
  }

  Stripe.prototype.elements = function (options) {
    return new Elements(this, options);
  };

  Stripe.prototype._paymentMethod = function (data, element, billing) {
    var self = this;
    if (typeof data === "string") return Promise.resolve({ id: data });
    if (element && element.type === "payment" && element.tab === "us_bank_account") {
      return api(self.key, "POST", "/v1/payment_methods", {
        type: "us_bank_account",
        us_bank_account: {
          routing_number: digits(element._value(["routing_number"])),
          account_number: digits(element._value(["account_number"])),
          account_holder_type: "individual",
        },
        billing_details: Object.assign({ name: element._value(["name"]) }, billing || {}),
      }).then(function (r) {
        return r.error ? { error: r.error } : r.object;
      });
    }
    if (element) {
      var invalid = element._cardError();
      if (invalid) return Promise.resolve({ error: invalid });
      return api(self.key, "POST", "/v1/payment_methods", {
        type: "card",
        card: element._card(),
        billing_details: billing || undefined,
      }).then(function (r) {
        return r.error ? { error: r.error } : r.object;
      });
    }
    return Promise.resolve({ error: validationError("payment_method_missing", "Pass a card element or a payment method.") });
  };

  Stripe.prototype.createPaymentMethod = function (options) {
    var element = options.card || options.element || null;
    return this._paymentMethod(null, element, options.billing_details).then(function (pm) {
      return pm.error ? { error: pm.error } : { paymentMethod: pm };
    });
  };

  function kindOf(clientSecret) {
    return /^seti_/.test(clientSecret) ? "setup_intent" : "payment_intent";
  }

  function resultOf(kind, intent) {
    var out = {};
    if (kind === "setup_intent") {
      if (intent.status === "requires_payment_method" && intent.last_setup_error) {
        return { error: Object.assign({ setup_intent: intent }, intent.last_setup_error) };
      }
      out.setupIntent = intent;
    } else {
      if (intent.status === "requires_payment_method" && intent.last_payment_error) {
        return { error: Object.assign({ payment_intent: intent }, intent.last_payment_error) };
      }
      out.paymentIntent = intent;
    }
    return out;
  }

  Stripe.prototype._retrieve = function (clientSecret) {
    var kind = kindOf(clientSecret);
    var path = (kind === "setup_intent" ? "/v1/setup_intents/" : "/v1/payment_intents/") + idOf(clientSecret);
    return api(this.key, "GET", path, { client_secret: clientSecret });
  };

  Stripe.prototype.retrievePaymentIntent = function (clientSecret) {
    return this._retrieve(clientSecret).then(function (r) {
      return r.error ? { error: r.error } : { paymentIntent: r.object };
    });
  };
  Stripe.prototype.retrieveSetupIntent = function (clientSecret) {
    return this._retrieve(clientSecret).then(function (r) {
      return r.error ? { error: r.error } : { setupIntent: r.object };
    });
  };

  /* The challenge in a modal (use_stripe_sdk), then the intent as it is afterwards. */
  Stripe.prototype._afterAction = function (clientSecret, intent, redirect) {
    var self = this;
    var kind = kindOf(clientSecret);
    var action = intent.next_action || {};
    if (intent.status === "requires_action" && action.type === "use_stripe_sdk") {
      return challenge(action.use_stripe_sdk.stripe_js).then(function () {
        return self._retrieve(clientSecret).then(function (r) {
          return r.error ? { error: r.error } : resultOf(kind, r.object);
        });
      });
    }
    if (intent.status === "requires_action" && action.type === "redirect_to_url" && redirect !== "if_required_no_redirect") {
      window.location.assign(action.redirect_to_url.url);
      return new Promise(function () {});
    }
    return Promise.resolve(resultOf(kind, intent));
  };

  Stripe.prototype._confirm = function (clientSecret, pmData, extra, redirect) {
    var self = this;
    var kind = kindOf(clientSecret);
    var path = (kind === "setup_intent" ? "/v1/setup_intents/" : "/v1/payment_intents/") + idOf(clientSecret) + "/confirm";
    var element = null;
    var billing;
    var pm = null;
    if (pmData && typeof pmData === "object") {
      element = pmData.card || pmData.element || null;
      billing = pmData.billing_details;
    } else if (typeof pmData === "string") {
      pm = pmData;
    }
    var start = element ? this._paymentMethod(null, element, billing) : Promise.resolve(pm ? { id: pm } : null);
    return start.then(function (made) {
      if (made && made.error) return { error: made.error };
      var params = Object.assign({ client_secret: clientSecret }, extra || {});
      if (made) params.payment_method = made.id;
      return api(self.key, "POST", path, params).then(function (r) {
        if (r.error) return { error: r.error };
        return self._afterAction(clientSecret, r.object, redirect);
      });
    });
  };

  Stripe.prototype.confirmCardSetup = function (clientSecret, data) {
    return this._confirm(clientSecret, data && data.payment_method, {}, "always");
  };
  Stripe.prototype.confirmCardPayment = function (clientSecret, data) {
    var extra = {};
    if (data && data.setup_future_usage) extra.setup_future_usage = data.setup_future_usage;
    return this._confirm(clientSecret, data && data.payment_method, extra, "always");
  };

  /* Payment Element flows: confirmSetup / confirmPayment with {elements, confirmParams, redirect}. */
  Stripe.prototype._confirmWithElements = function (kind, options) {
    var self = this;
    var clientSecret = options.clientSecret || (options.elements && options.elements.options.clientSecret);
    if (!clientSecret) {
      return Promise.resolve({ error: validationError("missing_client_secret", "Pass clientSecret to elements() or to this call.") });
    }
    var element = options.elements && options.elements.getElement("payment");
    var params = options.confirmParams || {};
    var returnUrl = params.return_url;
    var ifRequired = options.redirect === "if_required";
    if (!returnUrl && !ifRequired) {
      return Promise.resolve({ error: validationError("missing_return_url", "confirmParams.return_url is required.") });
    }
    var billing = params.payment_method_data && params.payment_method_data.billing_details;
    var bank = element && element.tab === "us_bank_account";
    var extra = {};
    if (bank) extra.mandate_data = { customer_acceptance: { type: "online", online: { ip_address: "127.0.0.1", user_agent: navigator.userAgent } } };
    return this._confirm(clientSecret, element ? { element: element, billing_details: billing } : params.payment_method, extra, "if_required_no_redirect").then(function (result) {
      if (result.error) return result;
      var intent = result.setupIntent || result.paymentIntent;
      var done = intent.status === "succeeded" || intent.status === "processing" || intent.status === "requires_capture" ||
        (intent.status === "requires_action" && intent.next_action && intent.next_action.type === "verify_with_microdeposits");
      if (!ifRequired || !done) {
        if (intent.status === "requires_action" && intent.next_action && intent.next_action.type === "redirect_to_url") {
          window.location.assign(intent.next_action.redirect_to_url.url);
          return new Promise(function () {});
        }
        if (returnUrl) {
          var key = kind === "setup_intent" ? "setup_intent" : "payment_intent";
          var url = new URL(returnUrl, window.location.href);
          url.searchParams.set(key, intent.id);
          url.searchParams.set(key + "_client_secret", clientSecret);
          url.searchParams.set("redirect_status", done ? "succeeded" : "failed");
          window.location.assign(url.toString());
          return new Promise(function () {});
        }
      }
      return result;
    });
  };
  Stripe.prototype.confirmSetup = function (options) {
    return this._confirmWithElements("setup_intent", options || {});
  };
  Stripe.prototype.confirmPayment = function (options) {
    return this._confirmWithElements("payment_intent", options || {});
  };

  Stripe.prototype.handleNextAction = function (options) {
    var self = this;
    var clientSecret = options && options.clientSecret;
    return this._retrieve(clientSecret).then(function (r) {
      if (r.error) return { error: r.error };
      return self._afterAction(clientSecret, r.object, "always");
    });
  };
  Stripe.prototype.handleCardAction = function (clientSecret) {
    return this.handleNextAction({ clientSecret: clientSecret });
  };
  Stripe.prototype.handleCardSetup = function (clientSecret) {
    return this.handleNextAction({ clientSecret: clientSecret });
  };

  /* ACH: bank details typed in a modal (the sandbox has no Financial Connections), kept for
     the confirmation that follows, as Stripe.js attaches the account it collected. */
  var collected = {};
  Stripe.prototype._collectBankAccount = function (options) {
    var self = this;
    var clientSecret = options.clientSecret;
    var data = (options.params && options.params.payment_method_data) || {};
    var billing = data.billing_details || {};
    return bankForm(billing.name).then(function (typed) {
      if (!typed) {
        return self._retrieve(clientSecret).then(function (r) {
          return r.error ? { error: r.error } : resultOf(kindOf(clientSecret), r.object);
        });
      }
      if (typed.account_number !== typed.confirm) {
        return { error: validationError("account_number_mismatch", "The account numbers do not match.") };
      }
      return api(self.key, "POST", "/v1/payment_methods", {
        type: "us_bank_account",
        us_bank_account: {
          routing_number: typed.routing_number,
          account_number: typed.account_number,
          account_holder_type: "individual",
        },
        billing_details: Object.assign({}, billing, { name: typed.name || billing.name }),
      }).then(function (r) {
        if (r.error) return { error: r.error };
        collected[clientSecret] = r.object.id;
        return self._retrieve(clientSecret).then(function (got) {
          if (got.error) return { error: got.error };
          var intent = Object.assign({}, got.object, { status: "requires_confirmation", payment_method: r.object.id });
          return resultOf(kindOf(clientSecret), intent);
        });
      });
    });
  };
  Stripe.prototype.collectBankAccountForSetup = function (options) {
    return this._collectBankAccount(options || {});
  };
  Stripe.prototype.collectBankAccountForPayment = function (options) {
    return this._collectBankAccount(options || {});
  };
  Stripe.prototype._confirmBank = function (clientSecret, data) {
    var pm = (data && data.payment_method) || collected[clientSecret];
    var extra = { mandate_data: { customer_acceptance: { type: "online", online: { ip_address: "127.0.0.1", user_agent: navigator.userAgent } } } };
    return this._confirm(clientSecret, pm, extra, "if_required_no_redirect");
  };
  Stripe.prototype.confirmUsBankAccountSetup = function (clientSecret, data) {
    return this._confirmBank(clientSecret, data);
  };
  Stripe.prototype.confirmUsBankAccountPayment = function (clientSecret, data) {
    return this._confirmBank(clientSecret, data);
  };
  Stripe.prototype._verify = function (clientSecret, data) {
    var kind = kindOf(clientSecret);
    var path = (kind === "setup_intent" ? "/v1/setup_intents/" : "/v1/payment_intents/") + idOf(clientSecret) + "/verify_microdeposits";
    var params = { client_secret: clientSecret };
    if (data && data.descriptor_code) params.descriptor_code = data.descriptor_code;
    if (data && data.amounts) params.amounts = data.amounts;
    return api(this.key, "POST", path, params).then(function (r) {
      return r.error ? { error: r.error } : resultOf(kind, r.object);
    });
  };
  Stripe.prototype.verifyMicrodepositsForSetup = function (clientSecret, data) {
    return this._verify(clientSecret, data);
  };
  Stripe.prototype.verifyMicrodepositsForPayment = function (clientSecret, data) {
    return this._verify(clientSecret, data);
  };

  /* Checkout: the session's hosted page. */
  Stripe.prototype.redirectToCheckout = function (options) {
    if (!options || !options.sessionId) {
      return Promise.resolve({ error: validationError("missing_session_id", "Pass a sessionId.") });
    }
    window.location.assign(BASE + "/checkout/pay/" + encodeURIComponent(options.sessionId));
    return new Promise(function () {});
  };

  window.Stripe = Stripe;
})();
