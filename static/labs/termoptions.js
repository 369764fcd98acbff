/*
 * The options every xterm.js terminal of the site is drawn with: the lab page's
 * terminal and its tabs (terminal.js), the instructor's watch page and the replay page
 * (replay.js). One place, so a fix to how the terminal draws reaches every page.
 */
(function () {
  "use strict";

  // Terminal colours per page theme (static/labs/theme.js). The light one has dark
  // ANSI colours: xterm's defaults (yellow #e5e510…) are unreadable on white.
  var THEMES = {
    dark: {
      background: "#0f1720",
      foreground: "#d8dee9",
      cursor: "#f5c518",
      cursorAccent: "#0f1720",
      selectionBackground: "#3b4b5e",
    },
    light: {
      background: "#fbfcfd",
      foreground: "#1d2733",
      cursor: "#1a5dc9",
      cursorAccent: "#fbfcfd",
      selectionBackground: "#c9dcfb",
      black: "#24292f", red: "#cf222e", green: "#116329", yellow: "#6b4700",
      blue: "#0969da", magenta: "#8250df", cyan: "#1b7c83", white: "#57606a",
      brightBlack: "#57606a", brightRed: "#a40e26", brightGreen: "#1a7f37", brightYellow: "#633c01",
      brightBlue: "#0550ae", brightMagenta: "#6639ba", brightCyan: "#136061", brightWhite: "#424a53",
    },
  };

  /** "light" or "dark": the page's theme now. */
  function pageTheme() {
    return window.labTheme ? window.labTheme.current() : "dark";
  }

  var FONT_FAMILY = '"DejaVu Sans Mono", "Noto Sans Mono CJK SC", "Cascadia Mono", Menlo, Consolas, monospace';

  /** xterm.js options: the site's, with `extra` on top (keys whose value is undefined are ignored). */
  function options(extra) {
    var out = {
      convertEol: false,
      fontFamily: FONT_FAMILY,
      fontSize: 14,
      // At lineHeight 1 the DOM renderer's rows are exactly one glyph box tall and
      // clip what sits at the bottom of it: at 1x, `_` vanished (diff_id read "diff id").
      lineHeight: 1.2,
      scrollback: 5000,
      theme: THEMES[pageTheme()],
    };
    Object.keys(extra || {}).forEach(function (key) {
      if (extra[key] !== undefined) out[key] = extra[key];
    });
    return out;
  }

  /** Keep a terminal's colours on the page's theme (static/labs/theme.js sends lab:theme). */
  function followTheme(term, container) {
    function apply() {
      var theme = pageTheme();
      term.options.theme = THEMES[theme];
      if (container) container.setAttribute("data-term-theme", theme);
    }
    document.addEventListener("lab:theme", apply);
    apply();
  }

  window.labTermOptions = { THEMES: THEMES, pageTheme: pageTheme, options: options, followTheme: followTheme };
})();
