/*
 * Terminal tabs (docs/protocol.md, "Terminal tabs"): more shells into the same sandbox,
 * each a LabTerminal on its own WebSocket /ws/terminal/<sid>/tabs/<n>/. The bar above
 * the terminal has a tab per terminal, a close button per extra tab and "+". Tabs the
 * server says are open (the main terminal's hello) come back after a reload.
 *
 * Needs terminal.js and lab.js (window.labTerminal, window.labPage). Keyboard: the tabs
 * are toggle buttons in a group, each with its close button beside it (so not an ARIA
 * tablist, which may hold tabs only); Left/Right/Home/End move between the tabs,
 * Delete closes the focused one, Enter/Space show it;
 * Ctrl+Alt+T opens a tab, Ctrl+Alt+W closes the current one.
 */
(function () {
  "use strict";

  var MAX_TABS = 4; // the sandbox's own terminal included; the server enforces it too
  var FINAL_STATES = ["stopped", "failed", "lost"];
  var main = window.labTerminal;
  var page = window.labPage;
  var bar = document.querySelector('[data-testid="term-tabs"]');
  if (!main || !page || !bar) return;
  var frame = main.container.parentNode;
  var addButton = bar.querySelector('[data-testid="term-tab-add"]');
  var list = bar.querySelector("[data-tab-list]");

  function t(key, n) { return page.t(key).replace("{n}", String(n)).replace("{max}", String(MAX_TABS)); }

  var tabs = {};        // n -> {term: LabTerminal, panel, tab, close}
  var current = 0;      // 0: the sandbox's own terminal
  var sessionId = null;

  function sessionWs() {
    var s = page.session();
    return s && s.ws;
  }

  function live() {
    var s = page.session();
    return Boolean(s && s.state === "ready");
  }

  function tabButton(n) { return list.querySelector('[data-tab="' + n + '"]'); }

  function openNumbers() {
    return Object.keys(tabs).map(Number).sort();
  }

  function render() {
    var count = openNumbers().length + 1;
    addButton.disabled = !live() || count >= MAX_TABS;
    addButton.title = count >= MAX_TABS ? t("tabs.full") : t("tabs.add");
    addButton.setAttribute("aria-label", addButton.title);
    bar.hidden = !live() && count === 1;
    Array.prototype.forEach.call(list.querySelectorAll("[data-tab]"), function (button) {
      var n = Number(button.getAttribute("data-tab"));
      var selected = n === current;
      button.setAttribute("aria-pressed", selected ? "true" : "false");
      button.tabIndex = selected ? 0 : -1;
    });
    main.container.hidden = current !== 0;
    Object.keys(tabs).forEach(function (key) { tabs[key].panel.hidden = Number(key) !== current; });
  }

  /** Show terminal n (0: the sandbox's own) and give it the keyboard. */
  function select(n, focus) {
    if (n !== 0 && !tabs[n]) n = 0;
    current = n;
    render();
    var term = n === 0 ? main : tabs[n].term;
    if (focus !== false) term.focus();
    term._refit(); // a terminal that was hidden has no size yet: fit it now that it shows
    fitShown(term);
  }

  /** A terminal that was hidden missed every change of its box meanwhile: fit it once the
   *  layout has settled (two frames: what showing it changed is laid out by then) and tell
   *  its shell the size even when xterm's grid did not change (xterm says so only on a
   *  change, and the shell may have been left with another one). */
  function fitShown(term) {
    window.requestAnimationFrame(function () {
      window.requestAnimationFrame(function () {
        if (term.container.hidden || !term.container.offsetHeight) return;
        term.size();  // fits now; a change is sent to the shell by xterm's onResize
        term._sendJson({ type: "resize", cols: term.term.cols, rows: term.term.rows });
      });
    });
  }

  function makeTabButton(n) {
    var item = document.createElement("span");
    item.className = "term-tab";
    item.setAttribute("data-tab-item", String(n));
    var button = document.createElement("button");
    button.type = "button";
    button.className = "term-tab-button";
    button.setAttribute("data-tab", String(n));
    button.setAttribute("data-testid", "term-tab-" + n);
    button.setAttribute("aria-controls", "terminal-tab-" + n);
    button.textContent = t("tabs.name", n + 1);
    button.addEventListener("click", function () { select(n); });
    // A click gives the terminal the keyboard, not the tab (the keyboard reaches the tab with Tab).
    button.addEventListener("mousedown", function (event) { event.preventDefault(); });
    item.appendChild(button);
    var close = document.createElement("button");
    close.type = "button";
    close.className = "term-tab-close";
    close.setAttribute("data-testid", "term-tab-close-" + n);
    close.setAttribute("aria-label", t("tabs.close", n + 1));
    close.title = t("tabs.close", n + 1);
    close.textContent = "×";
    close.addEventListener("click", function () { closeTab(n); });
    item.appendChild(close);
    list.appendChild(item);
    return { tab: button, item: item };
  }

  /** Open tab n: a new one (`fresh`: shown at once, its shell gets this tab's size), or
   *  one the server has open already (after a reload, or opened in another window). */
  function addTab(n, fresh) {
    if (tabs[n] || n < 1 || n >= MAX_TABS) return;
    var panel = document.createElement("div");
    panel.className = "terminal terminal-tab";
    panel.id = "terminal-tab-" + n;
    panel.setAttribute("data-testid", "terminal-tab-" + n);
    frame.insertBefore(panel, main.container.nextSibling);
    var made = makeTabButton(n);
    var term = new window.LabTerminal(panel, { fontSize: main.term.options.fontSize });
    if (term.term.textarea && document.getElementById("terminal-hint")) {
      term.term.textarea.setAttribute("aria-describedby", "terminal-hint");
    }
    tabs[n] = { term: term, panel: panel, tab: made.tab, item: made.item };
    term.onError(function (message) { page.showMessage(message); });
    term.onCheck(function () { /* the sandbox's own terminal shows check results */ });
    term.onConnection(function (status, detail) {
      if (status === "closed") removeTab(n);  // 4410: the tab ended; 44xx: refused
      void detail;
    });
    var path = sessionWs() + "tabs/" + n + "/";
    if (fresh) {
      // Visible before it connects: the shell starts with this tab's own geometry.
      current = n;
      render();
      var size = term.size();
      path += "?cols=" + size.cols + "&rows=" + size.rows;
    }
    term.connect(sessionId, path);
    if (fresh) select(n);
    else render();
  }

  function removeTab(n) {
    var tab = tabs[n];
    if (!tab) return;
    delete tabs[n];
    tab.term.disconnect();
    if (tab.term._resizeObserver) tab.term._resizeObserver.disconnect();
    tab.term.term.dispose();
    tab.panel.remove();
    tab.item.remove();
    if (current === n) select(0, bar.contains(document.activeElement) ? false : undefined);
    else render();
  }

  /** Ask the server to end tab n (its shell gets a hangup); the tab goes when it says so. */
  function closeTab(n) {
    var tab = tabs[n];
    if (!tab) return;
    if (tab.term._isOpen()) tab.term._sendJson({ type: "tab.close" });
    else removeTab(n);
  }

  function newTab() {
    if (!live()) return;
    for (var n = 1; n < MAX_TABS; n++) {
      if (!tabs[n]) { addTab(n, true); return; }
    }
    page.showMessage(t("tabs.full"));
  }

  function removeAll() {
    openNumbers().forEach(removeTab);
    select(0, false);
  }

  addButton.addEventListener("click", newTab);

  // The main tab's button is in the markup; arrows move between the tabs.
  tabButton(0).addEventListener("click", function () { select(0); });
  tabButton(0).addEventListener("mousedown", function (event) { event.preventDefault(); });
  list.addEventListener("keydown", function (event) {
    var buttons = Array.prototype.slice.call(list.querySelectorAll("[data-tab]"));
    var at = buttons.indexOf(document.activeElement);
    if (at === -1) return;
    var to = null;
    if (event.key === "ArrowRight") to = (at + 1) % buttons.length;
    else if (event.key === "ArrowLeft") to = (at - 1 + buttons.length) % buttons.length;
    else if (event.key === "Home") to = 0;
    else if (event.key === "End") to = buttons.length - 1;
    else if (event.key === "Delete" && at > 0) { closeTab(Number(buttons[at].getAttribute("data-tab"))); event.preventDefault(); return; }
    if (to === null) return;
    event.preventDefault();
    var n = Number(buttons[to].getAttribute("data-tab"));
    select(n, false);
    tabButton(n).focus();
  });
  document.addEventListener("keydown", function (event) {
    if (!event.ctrlKey || !event.altKey || event.metaKey) return;
    var key = event.key.toLowerCase();
    if (key === "t") { event.preventDefault(); event.stopPropagation(); newTab(); }
    else if (key === "w" && current !== 0) { event.preventDefault(); event.stopPropagation(); closeTab(current); }
  }, true);

  // The server says which tabs are open (the terminal's hello after a reload, and an
  // event when one opens in another window): they come, each replaying its output.
  main.onEvent(function (message) {
    if (message.type !== "tabs" || !live()) return;
    (message.tabs || []).forEach(function (n) { if (!tabs[n]) addTab(Number(n), false); });
  });

  document.addEventListener("lab:session", function (event) {
    var s = event.detail && event.detail.session;
    if (s && s.id !== sessionId) { removeAll(); sessionId = s.id; }
    render();
  });
  document.addEventListener("lab:state", function (event) {
    var state = event.detail && event.detail.state;
    // A sandbox that ended or is being reset (starting again) has no tabs: the server
    // closes them; a page that missed it lets them go itself.
    if (FINAL_STATES.indexOf(state) !== -1) removeAll();
    render();
  });

  // The font size (workbench.js) applies to every terminal.
  var setFontSize = main.setFontSize;
  main.setFontSize = function (size) {
    setFontSize.call(main, size);
    Object.keys(tabs).forEach(function (key) { tabs[key].term.setFontSize(size); });
  };

  var s = page.session();
  sessionId = s ? s.id : null;
  window.labTabs = {
    terminals: function () { var out = {}; Object.keys(tabs).forEach(function (k) { out[k] = tabs[k].term; }); return out; },
    open: newTab,
    close: closeTab,
    select: select,
    current: function () { return current; },
  };
  render();
})();
