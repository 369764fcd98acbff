// Plays an asciicast v2 recording into an xterm.js terminal.
// Header line {width, height}; then [seconds, "o", text] and [seconds, "r", "COLSxROWS"].
(function () {
  "use strict";
  var box = document.querySelector('[data-testid="replay-terminal"]');
  var playButton = document.querySelector('[data-testid="replay-play"]');
  var speedSelect = document.querySelector('[data-testid="replay-speed"]');
  var status = document.querySelector('[data-testid="replay-status"]');
  var events = [];
  var header = null;
  var term = null;
  var timer = null;

  function parse(text) {
    var lines = text.split("\n").filter(function (l) { return l.trim() !== ""; });
    header = JSON.parse(lines[0]);
    events = lines.slice(1).map(function (l) { return JSON.parse(l); });
  }

  function play() {
    if (timer) clearTimeout(timer);
    term.reset();
    term.resize(header.width || 80, header.height || 24);
    var speed = Number(speedSelect.value);
    var i = 0;
    var started = performance.now();
    function step() {
      var now = (performance.now() - started) / 1000;
      while (i < events.length && (speed === 0 || events[i][0] / speed <= now)) {
        var ev = events[i++];
        if (ev[1] === "o") term.write(ev[2]);
        else if (ev[1] === "r") {
          var size = ev[2].split("x");
          term.resize(Number(size[0]), Number(size[1]));
        }
      }
      status.textContent = i + " / " + events.length;
      if (i < events.length) timer = setTimeout(step, Math.min(250, Math.max(0, events[i][0] / (speed || 1) - now) * 1000));
      else { timer = null; window.__replayDone = true; }
    }
    window.__replayDone = false;
    step();
  }

  fetch(box.getAttribute("data-src"), { credentials: "same-origin" }).then(function (r) {
    if (!r.ok) return r.json().then(function (b) { throw new Error(b.error || r.statusText); });
    return r.text();
  }).then(function (text) {
    parse(text);
    term = new window.Terminal({ convertEol: false, fontSize: 14, scrollback: 5000 });
    term.open(box);
    window.__replayTerm = term;
    playButton.addEventListener("click", play);
    play();
  }).catch(function (err) { status.textContent = err.message; });
})();
