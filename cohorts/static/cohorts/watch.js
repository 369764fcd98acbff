/* Watching a trainee's terminal: LabTerminal (static/labs/terminal.js), read-only.
 * The server never forwards a watcher's input; the page does not even send it, and its
 * cursor is a hollow outline that never blinks (nothing here can be typed). Beside it:
 * the trainee's step, last check and hints, refreshed on their checks and every 10 s. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("watch-data").textContent);
  var L = data.labels;
  var container = document.getElementById("watch-terminal");
  var term = new window.LabTerminal(container, {});
  var xterm = term.term;
  xterm.options.disableStdin = true;
  xterm.options.cursorBlink = false;
  xterm.options.cursorInactiveStyle = "outline";
  if (xterm.textarea) xterm.textarea.disabled = true; // never focused: the cursor stays the inactive outline
  var state = document.querySelector("[data-testid=watch-state]");
  term.onState(function (s, message) { state.textContent = (L.states[s] || s) + (message ? " · " + message : ""); });

  function byTestId(id) { return document.querySelector("[data-testid=" + id + "]"); }

  function show(ctx) {
    byTestId("watch-step").textContent = ctx.step ? ctx.step.number + " / " + ctx.step.of + " · " + ctx.step.title : (ctx.done ? L.done : "");
    var last = byTestId("watch-last-check");
    last.replaceChildren();
    if (ctx.last_check) {
      last.dataset.passed = String(ctx.last_check.passed);
      last.appendChild(document.createTextNode(ctx.last_check.title + ": " + (ctx.last_check.passed ? L.passed : L.failed) +
        " (" + ctx.last_check.attempts + "×)"));
      last.appendChild(document.createElement("br"));
      var code = document.createElement("code");
      code.textContent = ctx.last_check.message;
      last.appendChild(code);
    } else {
      last.dataset.passed = "";
      last.textContent = L.none;
    }
    byTestId("watch-hints").textContent = ctx.hints.used + " / " + ctx.hints.total + (ctx.solution_used ? " · " + L.solution : "");
  }

  function refresh() {
    fetch(data.context, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (ctx) { if (ctx) show(ctx); });
  }

  term.onCheck(refresh);
  window.setInterval(refresh, 10000);
  term.connect(data.session, data.ws);
  window.__watchTerm = xterm;
  window.__watchTerminal = term;
  window.__watchRefresh = refresh;
})();
