/* Site-wide behaviour: the language switcher submits itself when changed. */
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    var form = select.form;
    var button = form && form.querySelector('button[type="submit"]');
    if (button) button.hidden = true; // without JS the button stays
    select.addEventListener("change", function () { form.submit(); });
  });
})();
