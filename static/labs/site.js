/* Site-wide behaviour: the language switcher submits itself when changed; the header's
   menu (phones) and the light/dark toggle (remembered; static/labs/theme.js). */
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    var form = select.form;
    var button = form && form.querySelector('button[type="submit"]');
    if (button) button.hidden = true; // without JS the button stays
    select.addEventListener("change", function () { form.submit(); });
  });

  var header = document.querySelector(".site-header");
  var menuButton = document.querySelector("[data-menu-toggle]");
  if (header && menuButton) {
    menuButton.hidden = false; // without JS the menu is simply always open
    header.classList.add("has-menu");
    var setOpen = function (open) {
      header.classList.toggle("is-open", open);
      menuButton.setAttribute("aria-expanded", open ? "true" : "false");
    };
    menuButton.addEventListener("click", function () {
      setOpen(menuButton.getAttribute("aria-expanded") !== "true");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && header.classList.contains("is-open")) {
        setOpen(false);
        menuButton.focus();
      }
    });
  }

  var toggle = document.querySelector("[data-theme-toggle]");
  if (toggle && window.labTheme) {
    toggle.hidden = false;
    var show = function () {
      toggle.setAttribute("aria-pressed", window.labTheme.current() === "dark" ? "true" : "false");
    };
    toggle.addEventListener("click", function () {
      window.labTheme.set(window.labTheme.current() === "dark" ? "light" : "dark");
      show();
    });
    document.addEventListener("lab:theme", show);
    show();
  }
})();
