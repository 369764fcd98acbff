/*
 * The lab page's workbench comforts, remembered in localStorage: the terminal's font
 * size (A−/A+ in the toolbar, or Ctrl+Alt+= / Ctrl+Alt+- / Ctrl+Alt+0) and the split
 * between the steps and the terminal (drag the separator, or focus it and use the
 * arrow keys, Home and End). Needs lab.js (window.labTerminal).
 */
(function () {
  "use strict";

  var FONT_KEY = "lab-term-font";
  var SPLIT_KEY = "lab-split";
  var FONT_MIN = 11, FONT_MAX = 24, FONT_DEFAULT = 14;
  var SPLIT_MIN = 22, SPLIT_MAX = 70, SPLIT_DEFAULT = 38, SPLIT_STEP = 2;

  function load(key, fallback, min, max) {
    var value = NaN;
    try { value = Number(window.localStorage.getItem(key)); } catch (e) { /* storage blocked */ }
    return value >= min && value <= max ? value : fallback;
  }
  function save(key, value) {
    try { window.localStorage.setItem(key, String(value)); } catch (e) { /* not remembered */ }
  }
  function byTestId(id) { return document.querySelector('[data-testid="' + id + '"]'); }

  var terminal = window.labTerminal;
  if (!terminal) return;

  // ---- Font size -----------------------------------------------------------------

  var smaller = byTestId("font-smaller"), larger = byTestId("font-larger");
  var shown = byTestId("font-size");

  function setFont(size) {
    size = Math.max(FONT_MIN, Math.min(FONT_MAX, size));
    terminal.setFontSize(size);
    save(FONT_KEY, size);
    if (shown) shown.textContent = String(size);
    if (smaller) smaller.disabled = size <= FONT_MIN;
    if (larger) larger.disabled = size >= FONT_MAX;
  }
  function fontSize() { return terminal.term.options.fontSize; }

  setFont(load(FONT_KEY, FONT_DEFAULT, FONT_MIN, FONT_MAX));
  if (smaller) smaller.addEventListener("click", function () { setFont(fontSize() - 1); });
  if (larger) larger.addEventListener("click", function () { setFont(fontSize() + 1); });
  // Ctrl+Alt, not Ctrl alone: Ctrl+= is the browser's zoom, Ctrl+- (Ctrl+_) readline's undo.
  document.addEventListener("keydown", function (event) {
    if (!event.ctrlKey || !event.altKey || event.metaKey) return;
    var change = { Equal: 1, NumpadAdd: 1, Minus: -1, NumpadSubtract: -1 }[event.code];
    if (change) setFont(fontSize() + change);
    else if (event.code === "Digit0" || event.code === "Numpad0") setFont(FONT_DEFAULT);
    else return;
    event.preventDefault();
    event.stopPropagation();
  }, true);

  // ---- Phones: the steps fold away, so the terminal comes up ---------------------------

  var stepsToggle = byTestId("steps-toggle");
  var stepsPanel = document.querySelector(".lab-steps");
  if (stepsToggle && stepsPanel && window.labPage) {
    stepsToggle.hidden = false;
    stepsToggle.addEventListener("click", function () {
      var open = stepsToggle.getAttribute("aria-expanded") !== "true";
      stepsToggle.setAttribute("aria-expanded", open ? "true" : "false");
      stepsPanel.classList.toggle("is-folded", !open);
      stepsToggle.textContent = window.labPage.t(open ? "steps.hide" : "steps.show");
    });
  }

  // ---- Split between the steps and the terminal -------------------------------------

  var layout = document.querySelector(".lab-layout");
  var handle = byTestId("split-handle");
  if (!layout || !handle) return;

  function setSplit(percent, remember) {
    percent = Math.round(Math.max(SPLIT_MIN, Math.min(SPLIT_MAX, percent)));
    layout.style.setProperty("--steps-width", percent + "%");
    handle.setAttribute("aria-valuenow", String(percent));
    if (remember) save(SPLIT_KEY, percent);
  }
  function split() { return Number(handle.getAttribute("aria-valuenow")) || SPLIT_DEFAULT; }

  setSplit(load(SPLIT_KEY, SPLIT_DEFAULT, SPLIT_MIN, SPLIT_MAX), false);

  handle.addEventListener("keydown", function (event) {
    var next = { ArrowLeft: split() - SPLIT_STEP, ArrowRight: split() + SPLIT_STEP,
                 Home: SPLIT_MIN, End: SPLIT_MAX }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    setSplit(next, true);
  });

  handle.addEventListener("pointerdown", function (event) {
    if (event.button !== 0) return;
    event.preventDefault();
    handle.setPointerCapture(event.pointerId);
    layout.classList.add("is-resizing");
    var box = layout.getBoundingClientRect();
    function move(e) { setSplit((e.clientX - box.left) / box.width * 100, false); }
    function up(e) {
      handle.releasePointerCapture(e.pointerId);
      handle.removeEventListener("pointermove", move);
      handle.removeEventListener("pointerup", up);
      layout.classList.remove("is-resizing");
      setSplit(split(), true);
    }
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", up);
  });
})();
