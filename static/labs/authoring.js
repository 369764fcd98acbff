/*
 * One lab version's page: the Test button queues `labs test` on a worker host and the
 * table fills in live from /ws/labs/<slug>/versions/<n>/test/ (hello: the stored rows;
 * row: one step; state / done: the test's state). Publish asks for the override box
 * when the last test failed.
 */
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("version-data").textContent);
  var L = data.labels;
  var rows = (data.test && data.test.rows) || [];
  var body = document.querySelector("[data-test-rows]");
  var stateEl = document.querySelector("[data-testid=test-state]");
  var button = document.querySelector("[data-testid=test-button]");
  var override = document.querySelector("[data-override]");
  var backoff = 500;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function draw() {
    body.replaceChildren.apply(body, rows.filter(Boolean).map(function (r) {
      var tr = el("tr", r.ok ? "test-pass" : "test-fail");
      tr.setAttribute("data-testid", "test-row-" + r.step);
      [r.ok ? "PASS" : "FAIL", r.step, String(r.seconds), r.detail].forEach(function (t) { tr.appendChild(el("td", "", t)); });
      return tr;
    }));
  }

  function setState(state) {
    stateEl.dataset.state = state;
    stateEl.textContent = L[state] || state;
    button.disabled = state === "queued" || state === "running";
    if (override) {
      var failed = state === "failed";
      override.hidden = !failed;
      override.querySelector("input").required = failed;
    }
  }

  function csrf() {
    var m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  document.querySelector("[data-test-form]").addEventListener("submit", function (e) {
    e.preventDefault();
    rows = [];
    draw();
    setState("queued");
    fetch(data.api + "test", { method: "POST", credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), Accept: "application/json", "Content-Type": "application/json" }, body: "{}" })
      .then(function (r) { return r.ok ? null : r.json().then(function (j) { throw new Error(j.error || r.status); }); })
      .catch(function (err) { setState("none"); stateEl.textContent = err.message; });
  });

  function connect() {
    var url = new URL(data.ws, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    var ws = new WebSocket(url.toString());
    ws.onmessage = function (m) {
      var event = JSON.parse(m.data);
      if (event.type === "hello") {
        backoff = 500;
        rows = event.rows || [];
        setState(event.state);
      } else if (event.type === "row") {
        rows[event.index] = event.row;
      } else if (event.type === "state") {
        if (event.state === "queued") rows = [];
        setState(event.state);
      } else if (event.type === "done") {
        rows = event.rows;
        setState(event.state);
      }
      draw();
    };
    ws.onclose = function (e) {
      if ([4401, 4403, 4404].indexOf(e.code) !== -1) return;
      window.setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 5000);
    };
  }

  setState(data.test.state);
  connect();
})();
