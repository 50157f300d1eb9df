/*
 * Stand-in Stripe.js, served by the Stripe emulator of stripe-checkout-mw.
 *
 * Not Stripe's code: a small offline imitation of the part of Stripe.js that Embedded
 * Checkout (ui_mode "embedded_page") and Elements (ui_mode "elements") use. See
 * stripe_checkout_mw/testing/stripejs.py for what it implements. Load it from the
 * emulator (its address is printed at start-up), never from a shop in production.
 */
(function () {
  "use strict";

  var CONFIG = /*EMULATOR_CONFIG*/null;
  var API_ORIGIN = new URL(CONFIG.apiBase).origin;
  var embeddedInUse = false;

  function IntegrationError(message) {
    var error = new Error(message);
    error.name = "IntegrationError";
    Object.setPrototypeOf(error, IntegrationError.prototype);
    return error;
  }
  IntegrationError.prototype = Object.create(Error.prototype);
  IntegrationError.prototype.constructor = IntegrationError;
  IntegrationError.prototype.name = "IntegrationError";

  function mask(key) {
    return key.length > 12 ? key.slice(0, 8) + "****" + key.slice(-4) : "****";
  }

  function sessionIdOf(secret) {
    var match = /^(cs_(?:test|live)_[A-Za-z0-9]+)_secret_[A-Za-z0-9]+$/.exec(
      typeof secret === "string" ? secret : "");
    if (!match) {
      throw new IntegrationError("Invalid client secret: expected the Checkout Session's " +
        "client_secret (cs_test_..._secret_...).");
    }
    return match[1];
  }

  function container(target) {
    var element = typeof target === "string" ? document.querySelector(target) : target;
    if (!element || element.nodeType !== 1) {
      throw new IntegrationError("The selector you specified (" + target + ") applies to " +
        "no DOM elements that are currently on the page. Make sure the element exists " +
        "on the page before calling mount().");
    }
    return element;
  }

  function frameUrl(kind, secret, key) {
    var query = new URLSearchParams({client_secret: secret, key: key,
                                     origin: window.location.origin});
    return CONFIG.apiBase + "/" + kind + "/" + sessionIdOf(secret) + "?" + query.toString();
  }

  function fromEmulator(event, frame) {
    return frame !== null && event.source === frame.contentWindow &&
      event.origin === API_ORIGIN && event.data && event.data.source === "stripe-emulator";
  }

  function leaveTo(url) {
    window.top.location.assign(url);
    return new Promise(function () {});  // the page is going away, as with Stripe's
  }

  // -- Embedded Checkout ----------------------------------------------------------------

  function EmbeddedCheckout(key, secret, onComplete) {
    this._key = key;
    this._secret = secret;
    this._onComplete = onComplete;
    this._frame = null;
    this._destroyed = false;
    this._listener = this._receive.bind(this);
    window.addEventListener("message", this._listener);
  }

  EmbeddedCheckout.prototype.mount = function (target) {
    if (this._destroyed) {
      throw new IntegrationError("This Embedded Checkout was destroyed; create a new one.");
    }
    if (this._frame !== null) {
      throw new IntegrationError("Embedded Checkout is already mounted; unmount() it first.");
    }
    var frame = document.createElement("iframe");
    frame.src = frameUrl("embedded", this._secret, this._key);
    frame.name = "embedded-checkout";
    frame.title = "Secure checkout (Stripe emulator)";
    frame.setAttribute("allow", "payment");
    frame.style.cssText = "width:100%;min-height:640px;border:0";
    container(target).appendChild(frame);
    this._frame = frame;
  };

  EmbeddedCheckout.prototype.unmount = function () {
    if (this._frame !== null) {
      this._frame.remove();
      this._frame = null;
    }
  };

  EmbeddedCheckout.prototype.destroy = function () {
    this.unmount();
    if (!this._destroyed) {
      this._destroyed = true;
      window.removeEventListener("message", this._listener);
      embeddedInUse = false;
    }
  };

  EmbeddedCheckout.prototype._receive = function (event) {
    if (!fromEmulator(event, this._frame) || event.data.type !== "embedded.complete") {
      return;
    }
    if (event.data.redirectUrl) {
      leaveTo(event.data.redirectUrl);
    } else if (this._onComplete) {
      this._onComplete();
    }
  };

  // -- Elements -------------------------------------------------------------------------

  function PaymentElement(checkout) {
    this._checkout = checkout;
    this._frame = null;
    this._waiting = {};
    this._next = 1;
    var element = this;
    this._ready = new Promise(function (resolve) { element._setReady = resolve; });
    window.addEventListener("message", this._receive.bind(this));
  }

  PaymentElement.prototype.mount = function (target) {
    if (this._frame !== null) {
      throw new IntegrationError("The Payment Element is already mounted.");
    }
    var frame = document.createElement("iframe");
    frame.name = "payment-element";
    frame.title = "Secure payment input (Stripe emulator)";
    frame.style.cssText = "width:100%;height:150px;border:0";
    container(target).appendChild(frame);
    this._frame = frame;
    var key = this._checkout._key;
    this._checkout._secret.then(function (secret) {
      frame.src = frameUrl("elements", secret, key);
    });
  };

  PaymentElement.prototype.unmount = function () {
    if (this._frame !== null) {
      this._frame.remove();
      this._frame = null;
      var element = this;
      this._ready = new Promise(function (resolve) { element._setReady = resolve; });
    }
  };

  PaymentElement.prototype.destroy = PaymentElement.prototype.unmount;

  PaymentElement.prototype._receive = function (event) {
    if (!fromEmulator(event, this._frame)) { return; }
    if (event.data.type === "elements.ready") {
      this._setReady();
    } else if (event.data.type === "elements.result" && this._waiting[event.data.id]) {
      var resolve = this._waiting[event.data.id];
      delete this._waiting[event.data.id];
      resolve(event.data.result);
    }
  };

  PaymentElement.prototype._confirm = function (email) {
    var element = this;
    return this._ready.then(function () {
      return new Promise(function (resolve) {
        var id = element._next++;
        element._waiting[id] = resolve;
        element._frame.contentWindow.postMessage(
          {source: "stripe-emulator", type: "elements.confirm", id: id, email: email},
          API_ORIGIN);
      });
    });
  };

  function CheckoutElements(key, secret) {
    this._key = key;
    this._secret = Promise.resolve(secret).then(function (value) {
      sessionIdOf(value);
      return value;
    });
    this._payment = null;
    this._email = null;
    this._session = null;
  }

  CheckoutElements.prototype.createPaymentElement = function () {
    if (this._payment !== null) {
      throw new IntegrationError("Can only create one Payment Element per checkout.");
    }
    this._payment = new PaymentElement(this);
    return this._payment;
  };

  CheckoutElements.prototype.getPaymentElement = function () {
    return this._payment;
  };

  CheckoutElements.prototype.loadActions = function () {
    var checkout = this;
    return this._secret.then(function (secret) {
      var query = new URLSearchParams({client_secret: secret, key: checkout._key});
      var url = CONFIG.apiBase + "/elements/" + sessionIdOf(secret) + "/session?" + query;
      return fetch(url).then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) {
            return {type: "error", error: {message: body.error.message}};
          }
          checkout._session = body;
          return {type: "success", actions: checkout._actions()};
        });
      });
    });
  };

  CheckoutElements.prototype._actions = function () {
    var checkout = this;
    return {
      getSession: function () { return checkout._session; },
      updateEmail: function (email) {
        checkout._email = email;
        return Promise.resolve({type: "success", session: checkout._session});
      },
      confirm: function (options) { return checkout._confirm(options || {}); }
    };
  };

  CheckoutElements.prototype._confirm = function (options) {
    var checkout = this;
    var redirect = options.redirect || "always";
    if (redirect !== "always" && redirect !== "if_required") {
      return Promise.reject(new IntegrationError(
        "confirm(): redirect must be 'always' or 'if_required'."));
    }
    if (this._payment === null || this._payment._frame === null) {
      return Promise.resolve({type: "error", error: {
        message: "Mount the Payment Element before calling confirm()."}});
    }
    var email = options.email || this._email || "";
    return this._payment._confirm(email).then(function (result) {
      if (result.type !== "success") {
        return {type: "error", error: {message: result.error.message}};
      }
      checkout._session = result.session;
      var target = result.returnUrl || (options.returnUrl || null);
      if (redirect === "always" && target) {
        return leaveTo(target);
      }
      return {type: "success", session: result.session};
    });
  };

  // -- Stripe(publishableKey) -----------------------------------------------------------

  function StripeInstance(key) {
    this._key = key;
  }

  StripeInstance.prototype.createEmbeddedCheckoutPage = function (options) {
    var key = this._key;
    options = options || {};
    return new Promise(function (resolve) {
      if (embeddedInUse) {
        throw new IntegrationError("You cannot have multiple Embedded Checkout objects; " +
          "call destroy() on the existing one first.");
      }
      if (options.onComplete != null && typeof options.onComplete !== "function") {
        throw new IntegrationError("onComplete must be a function.");
      }
      var secret;
      if (typeof options.fetchClientSecret === "function") {
        secret = Promise.resolve().then(options.fetchClientSecret);
      } else if (options.clientSecret != null) {
        secret = Promise.resolve(options.clientSecret);
      } else {
        throw new IntegrationError("createEmbeddedCheckoutPage: pass fetchClientSecret, " +
          "a function returning a Promise of the Checkout Session's client secret.");
      }
      embeddedInUse = true;
      resolve(secret.then(function (value) {
        sessionIdOf(value);
        return new EmbeddedCheckout(key, value, options.onComplete || null);
      }, function (error) {
        embeddedInUse = false;
        throw error;
      }));
    });
  };

  StripeInstance.prototype.initCheckoutElementsSdk = function (options) {
    options = options || {};
    if (options.fetchClientSecret !== undefined) {
      throw new IntegrationError("initCheckoutElementsSdk takes clientSecret (a string or " +
        "a Promise of one); fetchClientSecret is no longer supported.");
    }
    if (options.clientSecret == null) {
      throw new IntegrationError("initCheckoutElementsSdk: clientSecret is required.");
    }
    return new CheckoutElements(this._key, options.clientSecret);
  };

  StripeInstance.prototype.initEmbeddedCheckout = function () {
    throw new IntegrationError("stripe.initEmbeddedCheckout has been renamed: use " +
      "stripe.createEmbeddedCheckoutPage.");
  };

  StripeInstance.prototype.initCheckout = function () {
    throw new IntegrationError("stripe.initCheckout has been renamed: use " +
      "stripe.initCheckoutElementsSdk.");
  };

  function Stripe(key) {
    if (typeof key !== "string" || key === "") {
      throw new IntegrationError("Please call Stripe() with your publishable key.");
    }
    if (/^(sk|rk)_/.test(key)) {
      throw new IntegrationError("You should not use your secret key with Stripe.js. " +
        "Please pass a publishable key instead.");
    }
    if (key !== CONFIG.publishableKey) {
      throw new IntegrationError("Invalid API Key provided: " + mask(key) + ". This " +
        "Stripe.js is the Stripe emulator's (" + CONFIG.apiBase + "); use the publishable " +
        "key it printed.");
    }
    return new StripeInstance(key);
  }

  window.Stripe = Stripe;
})();
