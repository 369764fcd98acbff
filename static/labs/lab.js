/*
 * The lab page: start / stop the sandbox and check steps through the JSON API,
 * show the terminal (LabTerminal) and the session state. Protocol: docs/protocol.md.
 * All text goes into the DOM through textContent; only the step html (sanitised on
 * the server) is markup.
 */
(function () {
  "use strict";

  var FINAL_STATES = ["stopped", "failed", "lost"];
  var KNOWN_STATES = ["starting", "ready", "stopping", "stopped", "failed", "lost"];

  var pageData = JSON.parse(document.getElementById("page-data").textContent);
  var apiBase = pageData.api || "/api/";
  if (apiBase.charAt(apiBase.length - 1) !== "/") apiBase += "/";

  // Translated strings rendered by the template.
  var strings = {};
  var stringsTemplate = document.getElementById("lab-strings");
  if (stringsTemplate) {
    stringsTemplate.content.querySelectorAll("[data-key]").forEach(function (el) {
      strings[el.getAttribute("data-key")] = el.textContent.trim();
    });
  }
  function t(key, fallback) {
    return Object.prototype.hasOwnProperty.call(strings, key) ? strings[key] : (fallback || key);
  }

  function byTestId(id) { return document.querySelector('[data-testid="' + id + '"]'); }

  var startButton = byTestId("start-button");
  var stopButton = byTestId("stop-button");
  var badge = byTestId("state-badge");
  var messageBox = byTestId("error-message");
  var connectionLabel = document.querySelector("[data-connection]");
  var overlay = document.querySelector("[data-overlay]");
  var progressDone = document.querySelector("[data-progress-done]");
  var steps = Array.prototype.slice.call(document.querySelectorAll("details.step"));

  var session = null;   // {id, state, ws}
  var busy = false;     // a start/stop request is in flight
  var passed = {};      // step id -> true

  // ---- HTTP -----------------------------------------------------------------

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var input = document.querySelector('input[name="csrfmiddlewaretoken"]');
    return input ? input.value : "";
  }

  /** fetch JSON; resolves {status, body}; rejects with an Error whose message is for the user. */
  function api(method, path, body) {
    var init = {
      method: method,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken(), "Accept": "application/json" },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(apiBase + path, init).then(
      function (response) {
        if (response.status === 204) return { status: 204, body: null };
        return response.text().then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
          if (!response.ok) {
            var message = data && typeof data.error === "string" && data.error
              ? data.error
              : t("error.http") + " (" + response.status + ")";
            var error = new Error(message);
            error.status = response.status;
            throw error;
          }
          return { status: response.status, body: data };
        });
      },
      function () { throw new Error(t("error.network")); }
    );
  }

  // ---- Page state -------------------------------------------------------------

  function showMessage(text) {
    messageBox.textContent = text || "";
    messageBox.hidden = !text;
    if (!text) messageBox.removeAttribute("data-reason");
  }

  function setOverlay(key) {
    if (!key) { overlay.hidden = true; return; }
    overlay.hidden = false;
    overlay.querySelector("p").textContent = t(key);
  }

  function isActive() {
    return session !== null && FINAL_STATES.indexOf(session.state) === -1;
  }

  function render() {
    var state = session ? session.state : "none";
    var shown = KNOWN_STATES.indexOf(state) === -1 && state !== "none" ? state : t("state." + state);
    badge.textContent = shown;
    badge.setAttribute("data-state", state);

    var active = isActive();
    startButton.disabled = busy || active;
    startButton.textContent = session && !active ? t("start.again") : t("start");
    stopButton.disabled = busy || !active || state === "stopping";

    var canCheck = active && state === "ready";
    steps.forEach(function (step) {
      var button = step.querySelector("[data-check]");
      if (button && !button.classList.contains("is-checking")) button.disabled = !canCheck;
    });

    if (!session) setOverlay("overlay.idle");
    else if (state === "starting") setOverlay("overlay.starting");
    else if (!active) setOverlay("overlay.ended");
    else setOverlay(null);
  }

  /** The page's own words for a reason code the server gives with a state, if it has them. */
  function reasonText(reason, who) {
    var has = function (key) { return Object.prototype.hasOwnProperty.call(strings, key); };
    if (reason && who && has("ended." + reason + ".who")) return t("ended." + reason + ".who").replace("{who}", who);
    return reason && has("ended." + reason) ? t("ended." + reason) : "";
  }

  function setState(state, message, reason, who) {
    if (!session) return;
    session.state = state;
    // Why it ends (an instructor, the idle limit, a lost host…) is said when it begins
    // to end and stays said when it has ended, in the trainee's language; `who` names
    // the instructor or admin who did it.
    if (reason && reason !== "reset") {
      session.reason = reason;
      session.who = who || "";
    }
    var why = reasonText(session.reason, session.who);
    // Messages explain an end (failed, lost, idle timeout); on other states they are
    // informational and the badge says enough.
    if (why && (state === "stopping" || FINAL_STATES.indexOf(state) !== -1)) {
      showMessage(why);
      messageBox.setAttribute("data-reason", session.reason);
    } else if (state === "failed" || state === "lost") {
      showMessage(message || t("state." + state + ".message"));
    } else if (state === "stopped" && message) {
      showMessage(message);
    }
    if (state === "ready") {
      terminal.focus();
    }
    if (FINAL_STATES.indexOf(state) !== -1) showWatchers([]);
    render();
    emit("lab:state", { state: state, session: session });
  }

  /** Tell learning.js (and anyone listening) what happened on the page. */
  function emit(name, detail) {
    document.dispatchEvent(new CustomEvent(name, { detail: detail }));
  }

  // ---- Terminal ---------------------------------------------------------------

  var terminal = new window.LabTerminal(byTestId("terminal"));
  window.labTerminal = terminal;
  // Screen readers hear how to leave the terminal when they enter it.
  if (terminal.term.textarea && document.getElementById("terminal-hint")) {
    terminal.term.textarea.setAttribute("aria-describedby", "terminal-hint");
  }
  window.__labTerm = terminal.term;

  terminal.onState(function (state, message, reason, who) { setState(state, message, reason, who); });
  // Check results come over the terminal's WebSocket: auto-checks, and a pressed Check
  // (the API answers 202 at once; by: "check").
  terminal.onCheck(function (result) {
    var pressed = result.by === "check";
    showResult(result.step, result.passed, result.message, !pressed);
    if (pressed) checkEnded(result.step, result.passed);
  });
  terminal.onEvent(function (message) {
    if (message.type === "watched") showWatchers(message.watchers || []);
    emit("lab:event", message);
  });

  /** Say, for as long as it lasts, who is watching this terminal (read-only). */
  var watchBadge = byTestId("watch-badge");
  function showWatchers(names) {
    watchBadge.hidden = !names.length;
    watchBadge.querySelector("[data-watchers]").textContent = names.join(", ");
  }
  terminal.onError(function (message) { showMessage(message); });
  terminal.onConnection(function (status, detail) {
    if (status === "open") {
      connectionLabel.hidden = true;
      // A message about the connection itself is stale once it is back.
      if (messageBox.getAttribute("data-source") === "connection") showMessage("");
      messageBox.removeAttribute("data-source");
    } else if (status === "reconnecting") {
      connectionLabel.textContent = t("conn.reconnecting");
      connectionLabel.hidden = false;
    } else if (status === "connecting") {
      if (connectionLabel.hidden) connectionLabel.textContent = t("conn.connecting");
      connectionLabel.hidden = false;
    } else if (status === "closed") {
      connectionLabel.hidden = true;
      var code = detail && detail.code;
      if (code === 4410) {
        setState("stopped", "");
      } else if (code === 4401 || code === 4403 || code === 4404) {
        showMessage(t("close." + code));
        messageBox.setAttribute("data-source", "connection");
        // Nothing to reach any more: let the trainee start a new sandbox.
        if (session && isActive()) setState(code === 4404 ? "lost" : "failed", t("close." + code));
      }
    }
  });

  /** The session's ends as the server says them: lifetime, idle limit (docs/learning.md). */
  function copyTimes(target, data) {
    ["expires_at", "idle_ends_at", "idle_minutes"].forEach(function (key) {
      if (data[key] !== undefined) target[key] = data[key];
    });
  }

  function openSession(data) {
    session = { id: String(data.id), state: data.state || "starting", ws: data.ws };
    copyTimes(session, data);
    render();
    emit("lab:session", { session: session });
    showWatchers([]);
    if (isActive()) terminal.connect(session.id, session.ws);
  }

  window.addEventListener("online", function () { terminal.reconnectNow(); });

  // ---- Start / stop -------------------------------------------------------------

  startButton.addEventListener("click", function () {
    if (busy || isActive()) return;
    busy = true;
    showMessage("");
    render();
    // The sandbox's shell starts with this geometry (docs/protocol.md): its first
    // prompt already wraps where the page does.
    var size = terminal.size();
    api("POST", "sessions/", { lab: pageData.lab, cols: size.cols, rows: size.rows }).then(
      function (response) {
        busy = false;
        openSession(response.body);
      },
      function (error) {
        busy = false;
        showMessage(error.message);
        render();
      }
    );
  });

  stopButton.addEventListener("click", function () {
    if (busy || !isActive()) return;
    busy = true;
    showMessage("");
    var id = session.id;
    session.state = "stopping";
    render();
    api("DELETE", "sessions/" + encodeURIComponent(id) + "/").then(
      function () {
        busy = false;
        if (!session || session.id !== id) return;
        // The socket reports "stopped" and closes with 4410; if it is not connected
        // there is nobody to tell us, and the server has already stopped it.
        if (!terminal.live) { terminal.disconnect(); setState("stopped", ""); }
        render();
      },
      function (error) {
        busy = false;
        if (session && session.id === id && session.state === "stopping") session.state = "ready";
        showMessage(error.message);
        render();
      }
    );
  });

  // ---- Steps and checks -----------------------------------------------------------

  function stepElement(stepId) {
    for (var i = 0; i < steps.length; i++) {
      if (steps[i].getAttribute("data-step") === stepId) return steps[i];
    }
    return null;
  }

  function showResult(stepId, ok, message, automatic) {
    var step = stepElement(String(stepId));
    if (!step) return;
    var box = step.querySelector(".step-result");
    box.textContent = "";
    box.hidden = false;
    box.className = "step-result " + (ok ? "is-passed" : "is-failed");
    box.setAttribute("data-passed", ok ? "true" : "false");

    var head = document.createElement("p");
    head.className = "step-result-head";
    head.textContent = ok ? t("check.passed") : t("check.failed");
    if (automatic) {
      var note = document.createElement("span");
      note.className = "step-result-note";
      note.textContent = " · " + t("check.auto");
      head.appendChild(note);
    }
    box.appendChild(head);
    if (message) {
      var pre = document.createElement("pre");
      pre.textContent = message;
      box.appendChild(pre);
    }

    if (ok && !passed[stepId]) {
      passed[stepId] = true;
      step.classList.add("is-passed");
      progressDone.textContent = String(Object.keys(passed).length);
      openNextStep(step);
      emit("lab:passed", { step: String(stepId), automatic: Boolean(automatic) });
    } else if (!ok && !passed[stepId]) {
      step.classList.remove("is-passed");
    }
  }

  /** After a step passes, open the next one that has not passed yet. */
  function openNextStep(step) {
    var index = steps.indexOf(step);
    for (var i = index + 1; i < steps.length; i++) {
      if (!passed[steps[i].getAttribute("data-step")]) {
        steps[i].open = true;
        steps.forEach(function (s) { s.classList.toggle("is-current", s === steps[i]); });
        steps[i].scrollIntoView({ block: "nearest", behavior: "smooth" });
        return;
      }
    }
  }

  // Steps passed in an earlier visit come marked from the server (data-passed).
  steps.forEach(function (step) {
    if (step.getAttribute("data-passed") === "true") passed[step.getAttribute("data-step")] = true;
  });
  progressDone.textContent = String(Object.keys(passed).length);
  (function markCurrent() {
    var current = steps.filter(function (s) { return !passed[s.getAttribute("data-step")]; })[0] || steps[0];
    if (!current) return;
    current.classList.add("is-current");
    current.open = true;
  })();

  steps.forEach(function (step) {
    var button = step.querySelector("[data-check]");
    if (!button) return;
    button.addEventListener("click", function () {
      if (!session || !isActive()) return;
      var stepId = button.getAttribute("data-check");
      var box = step.querySelector(".step-result");
      button.disabled = true;
      button.classList.add("is-checking");
      box.hidden = false;
      box.className = "step-result is-running";
      box.removeAttribute("data-passed");
      box.textContent = t("check.running");
      api("POST", "sessions/" + encodeURIComponent(session.id) + "/check", { step: stepId }).then(
        function () {
          // 202: the result arrives as a "check" event (terminal.onCheck). If it never
          // does (the socket was down meanwhile), say so rather than spin for ever.
          if (!button.classList.contains("is-checking")) return; // its result came first
          clearTimeout(checkWaits[stepId]);
          checkWaits[stepId] = setTimeout(function () {
            failInto(box, t("check.noanswer"));
            checkEnded(stepId, null);
          }, CHECK_WAIT_MS);
        },
        function (error) {
          failInto(box, error.message);
          checkEnded(stepId, null);
        }
      );
    });
  });

  var CHECK_WAIT_MS = 180000; // longer than any check's time limit on the host
  var checkWaits = {};

  function failInto(box, message) {
    box.className = "step-result is-failed";
    box.textContent = "";
    var pre = document.createElement("pre");
    pre.textContent = message;
    box.appendChild(pre);
  }

  /** A pressed check ended (passed: true / false, or null when no result came). */
  function checkEnded(stepId, passed) {
    clearTimeout(checkWaits[stepId]);
    delete checkWaits[stepId];
    var step = stepElement(String(stepId));
    var button = step && step.querySelector("[data-check]");
    if (button) button.classList.remove("is-checking");
    if (passed === false) emit("lab:check-failed", { step: String(stepId) });
    render();
  }

  // ---- Shared with learning.js ---------------------------------------------------

  window.labPage = {
    api: api,
    t: t,
    session: function () { return session; },
    setSession: function (data) { if (session && data && String(data.id) === session.id) copyTimes(session, data); },
    showResult: showResult,
    showMessage: showMessage,
    stepElement: stepElement,
    steps: steps,
    passed: passed,
    render: render,
    openSession: openSession,  // images.js starts a session on an own image
  };

  // ---- Start up -------------------------------------------------------------------

  if (pageData.session && pageData.session.id) {
    openSession(pageData.session); // a reload: reconnect to the running sandbox
  } else if (pageData.ended && pageData.ended.id) {
    // The last sandbox failed to start or was lost with its host: say so, offer Start again.
    session = { id: String(pageData.ended.id), state: pageData.ended.state, ws: pageData.ended.ws, expires_at: null };
    setState(pageData.ended.state, pageData.ended.message);
  } else {
    render();
  }
})();
