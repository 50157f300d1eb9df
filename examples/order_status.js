// Asks the middleware's status path until the webhook has fulfilled the order.
(function () {
  var sessionId = new URLSearchParams(location.search).get("session_id");
  var status = document.getElementById("status");
  var tries = 0;
  function poll() {
    fetch("/checkout-session?session_id=" + encodeURIComponent(sessionId))
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (order) {
        var list = document.getElementById("items");
        list.textContent = "";
        (order.items || []).forEach(function (item) {
          var li = document.createElement("li");
          li.textContent = item.quantity + " x " + item.name;
          list.appendChild(li);
        });
        if (order.fulfilled) {
          status.textContent = "Payment received, order fulfilled";
          return;
        }
        status.textContent = "Waiting for the payment to be confirmed (" + order.status + ")";
        if (++tries < 60) { setTimeout(poll, 1000); }
      })
      .catch(function () {
        status.textContent = "We could not look up this order.";
      });
  }
  if (sessionId) { poll(); } else { status.textContent = "No order to show."; }
})();
