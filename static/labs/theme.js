/*
 * The colour theme, set before the page is drawn (loaded without defer in <head>, so
 * there is no flash of the wrong theme): the trainee's choice from localStorage, else
 * the system's (prefers-color-scheme, in site.css). site.js wires the header toggle.
 */
(function () {
  "use strict";
  var KEY = "lab-theme";
  var stored = null;
  try { stored = window.localStorage.getItem(KEY); } catch (e) { /* storage blocked */ }
  if (stored === "light" || stored === "dark") document.documentElement.setAttribute("data-theme", stored);

  /** "light" or "dark": what the page shows now. */
  function current() {
    var chosen = document.documentElement.getAttribute("data-theme");
    if (chosen === "light" || chosen === "dark") return chosen;
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  /** Show `theme` and remember it; tells listeners (the terminal) through a "lab:theme" event. */
  function set(theme) {
    document.documentElement.setAttribute("data-theme", theme);
    try { window.localStorage.setItem(KEY, theme); } catch (e) { /* not remembered, still shown */ }
    document.dispatchEvent(new CustomEvent("lab:theme", { detail: { theme: theme } }));
  }

  window.labTheme = { current: current, set: set };
  if (window.matchMedia) {
    var query = window.matchMedia("(prefers-color-scheme: dark)");
    var onChange = function () {
      if (!document.documentElement.hasAttribute("data-theme")) {
        document.dispatchEvent(new CustomEvent("lab:theme", { detail: { theme: current() } }));
      }
    };
    if (query.addEventListener) query.addEventListener("change", onChange);
  }
})();
