/* Watching a trainee's terminal: LabTerminal (static/labs/terminal.js), read-only.
 * The server never forwards a watcher's input; the page does not even send it. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("watch-data").textContent);
  var container = document.getElementById("watch-terminal");
  var term = new window.LabTerminal(container, {});
  term.term.options.disableStdin = true;
  var state = document.querySelector("[data-testid=watch-state]");
  term.onState(function (s, message) { state.textContent = s + (message ? " · " + message : ""); });
  term.connect(data.session, data.ws);
  window.__watchTerm = term.term;
  window.__watchTerminal = term;
})();
