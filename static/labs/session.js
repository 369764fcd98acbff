/*
 * The sandbox's session on the lab page: the countdown (whichever ends it first, the
 * idle limit or the lifetime, and which), Extend, Reset (asked first, in a dialog) and
 * the warning banner. Uses window.labPage (lab.js) and window.labTerminal (its last
 * keystroke restarts the idle count). Protocol: docs/protocol.md.
 */
(function () {
  "use strict";

  var page = window.labPage;
  if (!page) return;
  var t = page.t;
  var FINAL_STATES = ["stopped", "failed", "lost"];

  function byTestId(id) { return document.querySelector('[data-testid="' + id + '"]'); }
  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (m, k) { return values[k] === undefined ? m : String(values[k]); });
  }
  function clockTime(iso) {
    var d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  var resetButton = byTestId("reset-button");
  var extendButtons = document.querySelectorAll('[data-action="extend"]');
  var countdown = byTestId("countdown");
  var countdownValue = countdown.querySelector("[data-countdown-value]");
  var countdownLabel = countdown.querySelector("[data-countdown-label]");
  var banner = byTestId("session-banner");
  var bannerText = banner.querySelector("[data-banner-text]");
  var busy = false;

  function current() { return page.session(); }
  function isReady() { var s = current(); return Boolean(s && s.state === "ready"); }

  function renderSession() {
    var s = current();
    resetButton.disabled = busy || !isReady();
    extendButtons.forEach(function (b) { b.disabled = busy || !isReady(); });
    var end = s && FINAL_STATES.indexOf(s.state) === -1 ? sessionEnd(s) : null;
    countdown.hidden = !end;
    if (!end) { banner.hidden = true; return; }
    var left = (end.at - Date.now()) / 1000;
    var m = Math.max(0, Math.floor(left / 60)), sec = Math.max(0, Math.floor(left % 60));
    countdownValue.textContent = m + ":" + (sec < 10 ? "0" : "") + sec;
    countdown.classList.toggle("is-low", left < 300);
    if (countdown.getAttribute("data-reason") !== end.reason) {
      countdown.setAttribute("data-reason", end.reason);
      countdownLabel.textContent = t("countdown." + end.reason);
      countdown.title = end.reason === "idle" ? fill(t("countdown.idle.title"), { n: s.idle_minutes || "" }) : t("countdown.lifetime.title");
    }
  }

  /**
   * {reason, at}: what stops the sandbox first unless the trainee acts — the idle limit
   * (restarted by every keystroke this page sends, and by Extend) or the lifetime.
   */
  function sessionEnd(s) {
    var life = s.expires_at ? Date.parse(s.expires_at) : Infinity;
    var idle = s.idle_ends_at ? Date.parse(s.idle_ends_at) : Infinity;
    var term = window.labTerminal;
    if (s.idle_minutes && term && term.lastInputAt) {
      idle = Math.max(idle === Infinity ? 0 : idle, term.lastInputAt + s.idle_minutes * 60000);
    }
    if (life === Infinity && idle === Infinity) return null;
    return idle < life ? { reason: "idle", at: idle } : { reason: "lifetime", at: life };
  }
  window.setInterval(renderSession, 1000);

  /** The banner above the terminal; withExtend shows its Extend button (warnings). */
  function showBanner(text, withExtend) {
    bannerText.textContent = text;
    banner.hidden = !text;
    byTestId("banner-extend").hidden = !withExtend;
  }

  document.addEventListener("lab:session", renderSession);
  document.addEventListener("lab:state", function (event) {
    if (FINAL_STATES.indexOf(event.detail.state) !== -1) showBanner("");
    renderSession();
  });
  document.addEventListener("lab:event", function (event) {
    var msg = event.detail;
    var s = current();
    if (msg.type === "warning" && (msg.reason === "idle" || msg.reason === "lifetime")) {
      showBanner(fill(t("warning." + msg.reason), { time: clockTime(msg.ends_at) }), true);
      banner.setAttribute("data-reason", msg.reason);
      if (msg.reason === "lifetime" && s) s.expires_at = msg.ends_at;
      if (msg.reason === "idle" && s) s.idle_ends_at = msg.ends_at;
      renderSession();
    } else if (msg.type === "expiry" && s) {
      page.setSession({ id: s.id, expires_at: msg.expires_at, idle_ends_at: msg.idle_ends_at });
      if (banner.getAttribute("data-reason") === "lifetime") showBanner("");
      if (msg.message) showBanner(msg.message);  // an instructor or admin extended it: who did it
      renderSession();
    }
  });

  // Reset throws the trainee's files away: it asks first, in a modal dialog (Escape or
  // Cancel keeps everything; the focus returns to Reset).
  var resetDialog = byTestId("reset-dialog");
  resetButton.addEventListener("click", function () {
    if (!current() || busy) return;
    if (resetDialog && resetDialog.showModal) resetDialog.showModal();
    else if (window.confirm(t("reset.confirm"))) resetNow();
  });
  if (resetDialog) {
    resetDialog.addEventListener("close", function () {
      if (resetDialog.returnValue === "reset") resetNow();
      resetButton.focus();
    });
  }

  function resetNow() {
    var s = current();
    if (!s || busy) return;
    busy = true;
    renderSession();
    // Shown before asking: the state events (starting, then ready) may beat the answer.
    showBanner(t("reset.running"));
    banner.setAttribute("data-reason", "reset");
    page.api("POST", "sessions/" + encodeURIComponent(s.id) + "/reset").then(function () {
      page.showMessage("");
    }, function (error) {
      showBanner("");
      page.showMessage(error.message);
    }).then(function () {
      busy = false;
      renderSession();
    });
  }

  extendButtons.forEach(function (button) {
    button.addEventListener("click", function () {
      var s = current();
      if (!s || busy) return;
      busy = true;
      renderSession();
      page.api("POST", "sessions/" + encodeURIComponent(s.id) + "/extend").then(function (response) {
        page.setSession(response.body);
        showBanner(fill(t("extended"), { time: clockTime(response.body.expires_at) }));
        banner.setAttribute("data-reason", "extended");
      }, function (error) {
        showBanner(error.message);
        banner.setAttribute("data-reason", "limit");
      }).then(function () {
        busy = false;
        renderSession();
      });
    });
  });

  document.addEventListener("lab:state", function (event) {
    if (event.detail.state === "ready" && banner.getAttribute("data-reason") === "reset") showBanner("");
  });
  renderSession();
})();
