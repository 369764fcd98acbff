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
  // Read-only (readOnly below): never focused, the cursor stays the inactive outline.
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

  // Terminal tabs (docs/protocol.md "Terminal tabs"): the trainee's other shells in the
  // same sandbox, read-only too. The server lists them in hello and when one opens.
  var tabBar = byTestId("watch-tabs");
  var views = { 0: { term: term, panel: container } };
  var current = 0;
  function readOnly(t) {
    t.term.options.disableStdin = true;
    t.term.options.cursorBlink = false;
    t.term.options.cursorInactiveStyle = "outline";
    if (t.term.textarea) t.term.textarea.disabled = true;
  }
  readOnly(term);
  function renderTabs() {
    var numbers = Object.keys(views).map(Number).sort();
    tabBar.hidden = numbers.length < 2;
    tabBar.replaceChildren();
    tabBar.setAttribute("aria-label", L.terminals);
    numbers.forEach(function (n) {
      var button = document.createElement("button");
      button.type = "button";
      button.setAttribute("role", "tab");
      button.setAttribute("data-testid", "watch-tab-" + n);
      button.setAttribute("aria-selected", String(n === current));
      button.textContent = L.terminal.replace("{n}", String(n + 1));
      button.addEventListener("click", function () { current = n; renderTabs(); views[n].term._refit(); });
      tabBar.appendChild(button);
      views[n].panel.hidden = n !== current;
    });
  }
  function watchTab(n) {
    if (views[n]) return;
    var panel = document.createElement("div");
    panel.className = "watch-term";
    panel.setAttribute("data-testid", "watch-terminal-" + n);
    container.parentNode.appendChild(panel);
    var t = new window.LabTerminal(panel, {});
    readOnly(t);
    views[n] = { term: t, panel: panel };
    t.onConnection(function (status) {
      if (status !== "closed") return;
      t.disconnect();
      t.term.dispose();
      panel.remove();
      delete views[n];
      if (current === n) current = 0;
      renderTabs();
    });
    t.connect(data.session, data.ws + "tabs/" + n + "/");
    renderTabs();
  }
  term.onEvent(function (message) {
    if (message.type === "tabs") (message.tabs || []).forEach(function (n) { watchTab(Number(n)); });
  });
  window.__watchTabs = views;

  term.onCheck(refresh);
  window.setInterval(refresh, 10000);
  term.connect(data.session, data.ws);
  window.__watchTerm = xterm;
  window.__watchTerminal = term;
  window.__watchRefresh = refresh;
})();
