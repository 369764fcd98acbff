/*
 * LabTerminal: xterm.js wired to a sandbox over the WebSocket protocol in
 * docs/protocol.md. Binary frames carry terminal bytes both ways, text frames JSON
 * control messages. Reconnects with backoff and resumes from the last rendered
 * stream id, so output has no gap and no duplicate.
 *
 * Needs the vendored globals: Terminal, FitAddon, WebLinksAddon, Unicode11Addon, and
 * termoptions.js (window.labTermOptions).
 */
(function () {
  "use strict";

  // Close codes after which retrying cannot help (docs/protocol.md).
  var FINAL_CLOSE_CODES = [4401, 4403, 4404, 4410];
  var FINAL_STATES = ["stopped", "failed", "lost"];
  var BACKOFF_FIRST_MS = 500;
  var BACKOFF_MAX_MS = 5000;

  var encoder = new TextEncoder();
  // Escape, then Tab within this time, moves the focus out of the terminal (Shift+Tab:
  // backwards), as in CodeMirror; otherwise Tab completes in the shell. docs/learning.md.
  var LEAVE_WINDOW_MS = 2000;

  /** Absolute ws:/wss: URL for a path or URL given by the server. */
  function socketUrl(ws, since) {
    var url = new URL(ws, window.location.href);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    if (since) url.searchParams.set("since", since);
    else url.searchParams.delete("since");
    return url.toString();
  }

  /** Bytes of a binary string from xterm's onBinary (one char = one byte). */
  function binaryStringBytes(s) {
    var bytes = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i) & 0xff;
    return bytes;
  }

  var UNSENT_MAX = 4096;  // bytes typed while disconnected that are kept to send later

  function LabTerminal(container, options) {
    options = options || {};
    this.container = container;
    this.term = new window.Terminal(window.labTermOptions.options({
      allowProposedApi: true, // unicode11 addon sets term.unicode.activeVersion
      cursorBlink: true,
      fontFamily: options.fontFamily,
      fontSize: options.fontSize,
    }));
    this.fit = new window.FitAddon.FitAddon();
    this.term.loadAddon(this.fit);
    if (window.WebLinksAddon) this.term.loadAddon(new window.WebLinksAddon.WebLinksAddon());
    if (window.Unicode11Addon) {
      this.term.loadAddon(new window.Unicode11Addon.Unicode11Addon());
      this.term.unicode.activeVersion = "11";
    }
    this.term.open(container);

    this.ws = null;          // current WebSocket
    this.wsPath = null;      // session's ws path from the API
    this.sessionId = null;
    this.lastId = null;      // last stream id rendered by xterm: `since` on reconnect
    this.replaying = false;  // between hello(replay) and live: drop xterm's answers
    this.live = false;
    this.unsent = [];  // keys typed while the connection is down, sent once it is live again
    this.unsentBytes = 0;
    this.state = null;
    this.lastInputAt = 0;    // when this page last sent a keystroke (Date.now())
    this.stopped = true;     // no reconnects after disconnect() or a final close
    this.backoff = BACKOFF_FIRST_MS;
    this.retryTimer = null;
    this.generation = 0;     // bumps per socket: late callbacks of old ones are ignored

    this._listeners = { state: [], check: [], error: [], connection: [], event: [] };
    this._bindTerminal();
    this._bindResize();
    this._bindKeys();
    this._bindTheme();
  }

  /** Escape then Tab leaves the terminal; everything else goes to the shell. */
  LabTerminal.prototype._bindKeys = function () {
    var escapedAt = 0;
    this.term.attachCustomKeyEventHandler(function (event) {
      if (event.type !== "keydown") return true;
      if (event.key === "Escape") {
        escapedAt = Date.now();
        return true; // the shell still gets its Escape (vi, less…)
      }
      var leave = event.key === "Tab" && !event.ctrlKey && !event.altKey && !event.metaKey &&
        Date.now() - escapedAt < LEAVE_WINDOW_MS;
      if (event.key !== "Shift") escapedAt = 0;
      // false: xterm ignores the key and does not prevent its default, so the browser
      // moves the focus to the next (Shift: previous) control, as Tab does elsewhere.
      return !leave;
    });
  };

  /** The terminal's colours follow the page's light or dark theme. */
  LabTerminal.prototype._bindTheme = function () {
    window.labTermOptions.followTheme(this.term, this.container);
  };

  LabTerminal.prototype._emit = function (kind, a, b, c, d) {
    this._listeners[kind].forEach(function (cb) {
      try { cb(a, b, c, d); } catch (e) { console.error(e); }
    });
  };

  /** cb(state, message, reason, who) on every session state the server reports; reason is
   *  a code the page words itself (instructor, idle, lifetime, lost, exited, reset), who
   *  the instructor or admin who did it. */
  LabTerminal.prototype.onState = function (cb) { this._listeners.state.push(cb); };
  /** cb({step, passed, message}) on automatic check results. */
  LabTerminal.prototype.onCheck = function (cb) { this._listeners.check.push(cb); };
  /** cb(message) on server error messages. */
  LabTerminal.prototype.onError = function (cb) { this._listeners.error.push(cb); };
  /** cb(status, detail): connecting | open | reconnecting | closed ({code, reason}). */
  LabTerminal.prototype.onConnection = function (cb) { this._listeners.connection.push(cb); };
  /** cb(message) on every other control message (warning, expiry, …): the page decides. */
  LabTerminal.prototype.onEvent = function (cb) { this._listeners.event.push(cb); };

  /**
   * Type text into the shell as if the trainee had: UTF-8 bytes, each line ended
   * with Enter ("\r", what the key sends). False when the terminal is not live.
   */
  LabTerminal.prototype.send = function (text) {
    if (this.replaying || !this.live || !this._isOpen()) return false;
    var lines = String(text).replace(/\r\n?/g, "\n").replace(/\n+$/, "").split("\n");
    this.lastInputAt = Date.now();
    this.ws.send(encoder.encode(lines.join("\r") + "\r"));
    return true;
  };

  LabTerminal.prototype._bindTerminal = function () {
    var self = this;
    this.term.onData(function (data) {
      self._sendInput(encoder.encode(data));
    });
    this.term.onBinary(function (data) {
      self._sendInput(binaryStringBytes(data));
    });
    this.term.onResize(function (size) {
      self._sendJson({ type: "resize", cols: size.cols, rows: size.rows });
    });
  };

  LabTerminal.prototype._bindResize = function () {
    var self = this;
    var pending = false;
    function refit() {
      pending = false;
      // A hidden or zero-sized container has no geometry to fit to.
      if (!self.container.offsetWidth || !self.container.offsetHeight) return;
      try { self.fit.fit(); self._fitted = true; } catch (e) { /* not rendered yet */ }
    }
    this._refit = function () {
      if (pending) return;
      pending = true;
      window.requestAnimationFrame(refit);
    };
    if (window.ResizeObserver) {
      this._resizeObserver = new ResizeObserver(this._refit);
      this._resizeObserver.observe(this.container);
    } else {
      window.addEventListener("resize", this._refit);
    }
    this._refit();
  };

  LabTerminal.prototype._isOpen = function () {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  };

  LabTerminal.prototype._sendInput = function (bytes) {
    if (!this._isOpen()) {
      // The connection is down (a web server restarting, a network blip): what the
      // trainee types waits, up to UNSENT_MAX bytes, and goes once the terminal is live.
      if (this.unsentBytes + bytes.length <= UNSENT_MAX) {
        this.unsent.push(bytes);
        this.unsentBytes += bytes.length;
      }
      return;
    }
    // xterm answers queries (DA, DSR) found in replayed output: never to the shell.
    if (this.replaying || !this.live) return;
    this.lastInputAt = Date.now(); // the idle limit restarts with every keystroke
    this.ws.send(bytes);
  };

  LabTerminal.prototype._flushUnsent = function () {
    var waiting = this.unsent;
    this.unsent = [];
    this.unsentBytes = 0;
    for (var i = 0; i < waiting.length; i++) this._sendInput(waiting[i]);
  };

  LabTerminal.prototype._sendJson = function (message) {
    if (!this._isOpen()) return;
    this.ws.send(JSON.stringify(message));
  };

  /**
   * Open the terminal of a session. A different session starts from a clean screen;
   * the same one resumes after the last id rendered.
   */
  LabTerminal.prototype.connect = function (sessionId, wsPath) {
    if (sessionId !== this.sessionId) {
      this.lastId = null;
      this.term.reset();
      this.unsent = [];  // keys meant for another sandbox
      this.unsentBytes = 0;
    }
    this.sessionId = sessionId;
    this.wsPath = wsPath;
    this.state = null;
    this.stopped = false;
    this.backoff = BACKOFF_FIRST_MS;
    this._closeSocket();
    this._open();
  };

  /** Close the socket and do not reconnect. */
  LabTerminal.prototype.disconnect = function () {
    this.stopped = true;
    this.unsent = [];
    this.unsentBytes = 0;
    this._closeSocket();
  };

  LabTerminal.prototype.focus = function () { this.term.focus(); };

  /** A new font size: the grid is fitted again and the shell told its new size. */
  LabTerminal.prototype.setFontSize = function (size) {
    if (this.term.options.fontSize === size) return;
    this.term.options.fontSize = size;
    this._refit();
  };

  /** The terminal's geometry fitted to its container now: what a new sandbox starts with. */
  LabTerminal.prototype.size = function () {
    if (this.container.offsetWidth && this.container.offsetHeight) {
      try { this.fit.fit(); this._fitted = true; } catch (e) { /* not rendered yet */ }
    }
    return { cols: this.term.cols, rows: this.term.rows };
  };

  LabTerminal.prototype._closeSocket = function () {
    if (this.retryTimer !== null) {
      window.clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    this.generation++;
    this.live = false;
    this.replaying = false;
    if (this.ws) {
      var ws = this.ws;
      this.ws = null;
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000); } catch (e) { /* already closing */ }
    }
  };

  LabTerminal.prototype._open = function () {
    var self = this;
    var generation = ++this.generation;
    this._emit("connection", "connecting");
    // Let xterm render everything queued first, so lastId is truly the last byte
    // shown and the resumed stream neither repeats nor skips output.
    this.term.write("", function () {
      if (generation !== self.generation || self.stopped) return;
      self._openSocket(generation);
    });
  };

  LabTerminal.prototype._openSocket = function (generation) {
    var self = this;
    var since = this.lastId;
    var ws = new WebSocket(socketUrl(this.wsPath, since));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.live = false;
    this.replaying = false;

    ws.onmessage = function (event) {
      if (generation !== self.generation) return;
      if (typeof event.data === "string") self._onControl(event.data, since, generation);
      else self.term.write(new Uint8Array(event.data));
    };
    ws.onclose = function (event) {
      if (generation !== self.generation) return;
      self._onClose(event);
    };
  };

  LabTerminal.prototype._onControl = function (text, since, generation) {
    var self = this;
    var msg;
    try { msg = JSON.parse(text); } catch (e) { return; }
    switch (msg.type) {
      case "hello":
        this.backoff = BACKOFF_FIRST_MS;
        if (msg.replay && (!since || msg.reset)) this.term.reset();
        this.replaying = Boolean(msg.replay);
        this.live = !msg.replay;
        this._emit("connection", "open");
        this._sendSize();
        if (msg.state) this._setState(msg.state, msg.message || "");
        if (this.live) this._flushUnsent();  // a resumed connection is live at once
        // The terminal tabs open in this sandbox (tabs.js brings them back after a reload).
        if (msg.tabs) this._emit("event", { type: "tabs", tabs: msg.tabs });
        break;
      case "live":
        // Wait for the replay to be parsed: xterm answers queries while it parses.
        this.term.write("", function () {
          if (generation !== self.generation) return;
          self.replaying = false;
          self.live = true;
          self._flushUnsent();
        });
        break;
      case "pos":
        // Written after the bytes it follows: the callback runs once they are rendered.
        this.term.write("", function () {
          if (generation !== self.generation) return;
          self.lastId = msg.id;
          self._sendJson({ type: "ack", id: msg.id });
        });
        break;
      case "state":
        this._setState(msg.state, msg.message || "", msg.reason || "", msg.who || "");
        break;
      case "check":
        this._emit("check", { step: msg.step, passed: Boolean(msg.passed), message: msg.message || "", by: msg.by || "" });
        break;
      case "error":
        this._emit("error", msg.message || "");
        break;
      default:
        this._emit("event", msg); // warning, expiry, …; unknown ones are ignored by the page
        break;
    }
  };

  LabTerminal.prototype._sendSize = function () {
    // A terminal never shown yet (a tab restored behind another) has no size of its own:
    // not xterm's 80x24 but its real size goes to the shell, once it is shown.
    if (!this.container.offsetWidth && !this.term.element.offsetWidth && !this._fitted) return;
    this._refit();
    this._sendJson({ type: "resize", cols: this.term.cols, rows: this.term.rows });
  };

  LabTerminal.prototype._setState = function (state, message, reason, who) {
    this.state = state;
    if (FINAL_STATES.indexOf(state) !== -1) {
      // The session is over: nothing to reconnect to.
      this.stopped = true;
    }
    this._emit("state", state, message, reason || "", who || "");
  };

  LabTerminal.prototype._onClose = function (event) {
    this.ws = null;
    this.live = false;
    this.replaying = false;
    if (FINAL_CLOSE_CODES.indexOf(event.code) !== -1) {
      this.stopped = true;
      this._emit("connection", "closed", { code: event.code, reason: event.reason });
      if (event.code === 4410 && FINAL_STATES.indexOf(this.state) === -1) {
        this._setState("stopped", "");
      }
      return;
    }
    if (this.stopped) {
      this._emit("connection", "closed", { code: event.code, reason: event.reason });
      return;
    }
    var self = this;
    var delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this._emit("connection", "reconnecting", { code: event.code, delay: delay });
    this.retryTimer = window.setTimeout(function () {
      self.retryTimer = null;
      if (!self.stopped) self._open();
    }, delay);
  };

  /** Try now instead of waiting for the backoff (e.g. the browser came back online). */
  LabTerminal.prototype.reconnectNow = function () {
    if (this.stopped || this.ws !== null || this.retryTimer === null) return;
    window.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this._open();
  };

  window.LabTerminal = LabTerminal;
})();
