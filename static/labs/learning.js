/*
 * The learning side of the lab page: Copy/Run on code blocks, hints one at a time,
 * the solution (on request, or after several failed checks), quizzes, the progress
 * bar and completion panel (Reset, Extend and the countdown: session.js). Talks to
 * the JSON API in docs/learning.md; uses window.labPage (lab.js)
 * and window.labTerminal (terminal.js). Only server-sanitised HTML is inserted as
 * markup (hints, explanations); everything else goes in through textContent.
 */
(function () {
  "use strict";

  var page = window.labPage;
  if (!page) return;
  var t = page.t;
  var pageData = JSON.parse(document.getElementById("page-data").textContent);
  var lab = pageData.lab;
  var solutionAfter = pageData.solution_after || 3;

  function byTestId(id) { return document.querySelector('[data-testid="' + id + '"]'); }
  function fill(template, values) {
    return template.replace(/\{(\w+)\}/g, function (m, k) { return values[k] === undefined ? m : String(values[k]); });
  }
  function stepPath(stepId, action) {
    return "labs/" + encodeURIComponent(lab) + "/steps/" + encodeURIComponent(stepId) + "/" + action;
  }
  function duration(seconds) {
    seconds = Math.max(0, Math.round(seconds || 0));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h) return fill(t("time.h"), { h: h, m: m });
    if (m) return fill(t("time.m"), { m: m, s: s });
    return fill(t("time.s"), { s: s });
  }
  function stepBox(stepId) { return page.stepElement(String(stepId)); }
  function failInto(box, error) {
    box.hidden = false;
    box.className = "step-result is-failed";
    box.textContent = "";
    var pre = document.createElement("pre");
    pre.textContent = error.message;
    box.appendChild(pre);
  }

  // ---- Code blocks: Copy and Run ---------------------------------------------------

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } finally { document.body.removeChild(area); }
    return Promise.resolve();
  }

  /** The block's command as a button label says it: its first line, shortened. */
  function commandSummary(code) {
    var lines = String(code || "").split("\n").filter(function (l) { return l.trim(); });
    var first = (lines[0] || "").trim();
    if (first.length > 60) first = first.slice(0, 59) + "…";
    return lines.length > 1 ? first + " …" : first;
  }

  function decorate(block) {
    if (block.querySelector(".code-actions")) return;
    var summary = commandSummary(block.getAttribute("data-code"));
    var bar = document.createElement("div");
    bar.className = "code-actions";
    var copy = document.createElement("button");
    copy.type = "button";
    copy.className = "code-button";
    copy.textContent = t("code.copy");
    copy.setAttribute("data-code-copy", "");
    copy.setAttribute("aria-label", fill(t("code.copy.label"), { cmd: summary }));
    copy.addEventListener("click", function () {
      copyText(block.getAttribute("data-code")).then(function () {
        copy.textContent = t("code.copied");
        window.setTimeout(function () { copy.textContent = t("code.copy"); }, 1500);
      });
    });
    var run = document.createElement("button");
    run.type = "button";
    run.className = "code-button code-run";
    run.textContent = t("code.run");
    run.title = t("code.run.title");
    run.setAttribute("data-code-run", "");
    run.setAttribute("aria-label", fill(t("code.run.label"), { cmd: summary }));
    run.addEventListener("click", function () {
      var term = window.labTerminal;
      if (!term || !term.send(block.getAttribute("data-code"))) {
        page.showMessage(t("code.notready"));
        return;
      }
      term.focus();
    });
    bar.appendChild(copy);
    bar.appendChild(run);
    block.insertBefore(bar, block.firstChild);
  }
  document.querySelectorAll(".codeblock[data-code]").forEach(decorate);

  // ---- Hints ----------------------------------------------------------------------------

  function updateHintButton(step) {
    var button = step.querySelector("[data-hint]");
    if (!button) return;
    var left = Number(step.getAttribute("data-hints")) - Number(step.getAttribute("data-hints-used"));
    button.querySelector("[data-hints-left]").textContent = left > 0 ? fill(t("hints.left"), { n: left }) : "";
    button.disabled = left <= 0;
  }

  page.steps.forEach(function (step) {
    updateHintButton(step);
    var button = step.querySelector("[data-hint]");
    if (!button) return;
    button.addEventListener("click", function () {
      var stepId = step.getAttribute("data-step");
      button.disabled = true;
      page.api("POST", stepPath(stepId, "hint"), {}).then(function (response) {
        var list = step.querySelector("[data-hint-list]");
        var item = document.createElement("li");
        item.className = "hint prose";
        item.innerHTML = response.body.html; // sanitised by the server (labs.markdown)
        list.appendChild(item);
        list.hidden = false;
        step.setAttribute("data-hints-used", String(response.body.index + 1));
        updateHintButton(step);
      }, function (error) {
        failInto(step.querySelector(".step-result"), error);
        updateHintButton(step);
      });
    });
  });

  // ---- Solution ----------------------------------------------------------------------------

  function showSolution(step, automatic) {
    var stepId = step.getAttribute("data-step");
    var button = step.querySelector("[data-show-solution]");
    if (!button || button.hidden) return;
    button.hidden = true;
    page.api("POST", stepPath(stepId, "solution"), {}).then(function (response) {
      var box = step.querySelector("[data-solution]");
      if (automatic) {
        var note = document.createElement("p");
        note.className = "solution-note muted";
        note.textContent = t("solution.auto");
        box.appendChild(note);
      }
      var block = document.createElement("div");
      block.className = "codeblock";
      block.setAttribute("data-code", response.body.solution);
      var pre = document.createElement("pre");
      var code = document.createElement("code");
      code.textContent = response.body.solution;
      pre.appendChild(code);
      var wrap = document.createElement("div");
      wrap.className = "highlight";
      wrap.appendChild(pre);
      block.appendChild(wrap);
      box.appendChild(block);
      decorate(block);
      box.hidden = false;
      step.open = true;
    }, function (error) {
      button.hidden = false;
      failInto(step.querySelector(".step-result"), error);
    });
  }

  page.steps.forEach(function (step) {
    var button = step.querySelector("[data-show-solution]");
    if (button) button.addEventListener("click", function () { showSolution(step, false); });
  });

  document.addEventListener("lab:check-failed", function (event) {
    var step = stepBox(event.detail.step);
    if (!step) return;
    var failures = Number(step.getAttribute("data-attempts") || 0) + 1;
    step.setAttribute("data-attempts", String(failures));
    if (failures >= solutionAfter && step.getAttribute("data-passed") !== "true") showSolution(step, true);
  });

  // ---- Quizzes ---------------------------------------------------------------------------------

  function quizAnswer(form) {
    var kind = form.getAttribute("data-quiz-kind");
    if (kind === "text") {
      var value = form.querySelector(".quiz-text").value.trim();
      return value ? value : null;
    }
    var chosen = Array.prototype.slice.call(form.querySelectorAll('input[name="answer"]:checked'))
      .map(function (input) { return input.value; });
    if (!chosen.length) return null;
    return kind === "single" ? chosen[0] : chosen;
  }

  document.querySelectorAll("form[data-quiz]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var stepId = form.getAttribute("data-quiz");
      var step = stepBox(stepId);
      var feedback = form.querySelector(".quiz-feedback");
      var answer = quizAnswer(form);
      feedback.hidden = false;
      feedback.textContent = "";
      feedback.removeAttribute("data-correct");
      if (answer === null) {
        feedback.className = "quiz-feedback is-failed";
        feedback.textContent = t("quiz.empty");
        return;
      }
      var submit = form.querySelector('button[type="submit"]');
      submit.disabled = true;
      page.api("POST", stepPath(stepId, "answer"), { answer: answer }).then(function (response) {
        var body = response.body;
        feedback.className = "quiz-feedback " + (body.correct ? "is-passed" : "is-failed");
        feedback.setAttribute("data-correct", body.correct ? "true" : "false");
        var verdict = document.createElement("p");
        verdict.className = "quiz-verdict";
        verdict.textContent = body.correct ? t("quiz.right") : t("quiz.wrong");
        feedback.appendChild(verdict);
        if (body.correct && body.explanation_html) {
          var explanation = document.createElement("div");
          explanation.className = "quiz-explanation prose";
          explanation.innerHTML = body.explanation_html; // sanitised by the server
          feedback.appendChild(explanation);
        }
        if (body.correct && step && step.getAttribute("data-passes-by") === "quiz") page.showResult(stepId, true, "", false);
      }, function (error) {
        feedback.className = "quiz-feedback is-failed";
        feedback.textContent = error.message;
      }).then(function () { submit.disabled = false; });
    });
  });

  // ---- Steps passed by reading ----------------------------------------------------------------

  page.steps.forEach(function (step) {
    var button = step.querySelector("[data-read]");
    if (!button) return;
    button.addEventListener("click", function () {
      var stepId = step.getAttribute("data-step");
      button.disabled = true;
      page.api("POST", stepPath(stepId, "read"), {}).then(function () {
        page.showResult(stepId, true, "", false);
      }, function (error) {
        button.disabled = false;
        failInto(step.querySelector(".step-result"), error);
      });
    });
  });

  // ---- Progress and completion -------------------------------------------------------------------

  var total = page.steps.length;
  var fillBar = document.querySelector("[data-progress-fill]");
  var bar = document.querySelector("[data-progress-bar]");
  var completion = byTestId("completion");

  function showProgress(progress) {
    var done = progress ? progress.steps_passed : Object.keys(page.passed).length;
    fillBar.style.width = (total ? Math.round((100 * done) / total) : 0) + "%";
    bar.setAttribute("aria-valuenow", String(done));
    if (progress && progress.completed) {
      completion.querySelector("[data-time-spent]").textContent = duration(progress.seconds);
      if (completion.hidden) {
        completion.hidden = false;
        completion.scrollIntoView({ block: "nearest", behavior: "smooth" });
      }
    }
  }

  /** "I am here": the server starts the current step and polls its auto-check. */
  function reportHere() {
    return page.api("POST", "labs/" + encodeURIComponent(lab) + "/progress", {}).then(
      function (response) { showProgress(response.body); },
      function () { showProgress(null); }
    );
  }

  document.addEventListener("lab:passed", function (event) {
    var step = stepBox(event.detail.step);
    if (step) {
      step.setAttribute("data-passed", "true");
      var read = step.querySelector("[data-read]");
      if (read) read.disabled = true;
    }
    showProgress(null);
    reportHere();
  });
  showProgress(pageData.progress);
  reportHere(); // the page is a read (GET): this starts the current step on the server

  document.addEventListener("lab:state", function (event) {
    if (event.detail.state === "ready") reportHere();
  });
})();
