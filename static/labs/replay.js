// Plays an asciicast v2 recording into an xterm.js terminal, with pause, seek and speed.
// Header line {width, height, timestamp}; then [seconds, "o", text] and [seconds, "r", "COLSxROWS"].
// The timeline carries markers at check results and step changes (/api/sessions/<id>/markers),
// and "When they got stuck" seeks to the moment the dashboard's stuck rule first held.
(function () {
  "use strict";
  var box = document.querySelector('[data-testid="replay-terminal"]');
  var playButton = document.querySelector('[data-testid="replay-play"]');
  var speedSelect = document.querySelector('[data-testid="replay-speed"]');
  var status = document.querySelector('[data-testid="replay-status"]');
  var timeline = document.querySelector('[data-testid="replay-timeline"]');
  var markerBox = document.querySelector('[data-testid="replay-markers"]');
  var stuckButton = document.querySelector('[data-testid="replay-stuck"]');
  var labels = JSON.parse(document.getElementById("replay-labels").textContent);
  var events = [];
  var header = null;
  var term = null;
  var duration = 0;
  var pos = 0;        // seconds into the recording, as shown
  var next = 0;       // index of the first event not written yet
  var playing = false;
  var lastTick = 0;
  var timer = null;

  function parse(text) {
    var lines = text.split("\n").filter(function (l) { return l.trim() !== ""; });
    header = JSON.parse(lines[0]);
    events = lines.slice(1).map(function (l) { return JSON.parse(l); });
    duration = events.length ? events[events.length - 1][0] : 0;
  }

  function clock(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
  }

  function apply(ev) {
    if (ev[1] === "o") term.write(ev[2]);
    else if (ev[1] === "r") {
      var size = ev[2].split("x");
      term.resize(Number(size[0]), Number(size[1]));
    }
  }

  /** Write every event up to `pos` (after a seek back: from a reset terminal). */
  function catchUp() {
    var chunk = "";
    while (next < events.length && events[next][0] <= pos) {
      var ev = events[next++];
      if (ev[1] === "o") chunk += ev[2];
      else { if (chunk) { term.write(chunk); chunk = ""; } apply(ev); }
    }
    if (chunk) term.write(chunk);
  }

  function show() {
    status.textContent = clock(pos) + " / " + clock(duration);
    timeline.value = String(pos);
    playButton.textContent = playing ? labels.pause : labels.play;
    playButton.setAttribute("aria-pressed", String(playing));
    window.__replayPos = pos;
    window.__replayDone = next >= events.length;
  }

  function seek(seconds) {
    seconds = Math.max(0, Math.min(duration, seconds));
    if (seconds < pos || next === 0) {
      term.reset();
      term.resize(header.width || 80, header.height || 24);
      next = 0;
    }
    pos = seconds;
    catchUp();
    show();
  }

  function tick() {
    timer = null;
    if (!playing) return;
    var now = performance.now();
    var speed = Number(speedSelect.value);
    pos = speed === 0 ? duration : Math.min(duration, pos + (now - lastTick) / 1000 * speed);
    lastTick = now;
    catchUp();
    if (pos >= duration) playing = false;
    show();
    if (playing) {
      var wait = next < events.length ? (events[next][0] - pos) / speed * 1000 : 250;
      timer = setTimeout(tick, Math.max(16, Math.min(250, wait)));
    }
  }

  function setPlaying(on) {
    if (on && pos >= duration) seek(0);
    playing = on;
    lastTick = performance.now();
    if (timer) { clearTimeout(timer); timer = null; }
    show();
    if (on) tick();
  }

  function drawMarkers(data) {
    var t0 = header.timestamp || 0;
    var end = data.ended_at ? data.ended_at - t0 : Infinity;
    var shown = (data.markers || []).filter(function (m) { return m.at - t0 >= 0 && m.at - t0 <= end; });
    // A check prints nothing in the terminal: the timeline runs until the last marker too.
    shown.forEach(function (m) { duration = Math.max(duration, m.at - t0); });
    timeline.max = String(duration);
    show();
    markerBox.replaceChildren();
    shown.forEach(function (m) {
      var at = m.at - t0;
      if (!duration) return;
      var b = document.createElement("button");
      b.type = "button";
      b.className = "replay-marker marker-" + m.kind;
      b.style.left = (at / duration * 100) + "%";
      b.title = clock(at) + " · " + labels[m.kind] + " · " + m.title;
      b.setAttribute("aria-label", b.title);
      b.setAttribute("data-testid", "marker-" + m.kind + "-" + m.step);
      b.addEventListener("click", function () { seek(at); });
      markerBox.appendChild(b);
    });
    if (data.stuck_at && data.stuck_at - t0 >= 0) {
      var stuckAt = Math.min(duration, data.stuck_at - t0);
      stuckButton.hidden = false;
      stuckButton.title = clock(stuckAt);
      stuckButton.addEventListener("click", function () { setPlaying(false); seek(stuckAt); });
    }
  }

  fetch(box.getAttribute("data-src"), { credentials: "same-origin" }).then(function (r) {
    if (!r.ok) return r.json().then(function (b) { throw new Error(b.error || r.statusText); });
    return r.text();
  }).then(function (text) {
    parse(text);
    // The lab page's options (termoptions.js): its line height, font and colours.
    term = new window.Terminal(window.labTermOptions.options({ disableStdin: true, cursorBlink: false }));
    term.open(box);
    window.labTermOptions.followTheme(term, box);
    window.__replayTerm = term;
    timeline.max = String(duration);
    timeline.step = "0.1";
    timeline.addEventListener("input", function () { seek(Number(timeline.value)); });
    playButton.addEventListener("click", function () { setPlaying(!playing); });
    speedSelect.addEventListener("change", function () { lastTick = performance.now(); });
    seek(0);
    setPlaying(true);
    return fetch(box.getAttribute("data-markers"), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { markers: [] }; })
      .then(drawMarkers);
  }).catch(function (err) { status.textContent = err.message; });
})();
