/*
 * The cohort dashboard: a progress matrix (trainee × step), per-lab funnel and medians,
 * quiz answers; charts with the vendored Chart.js, the numbers in tables beside them.
 * Live: /ws/cohorts/<id>/ sends {type: "row", user, username, name, lab, row} when a
 * trainee joins, acts on a step or their sandbox changes; the page replaces (or adds) that
 * row and recomputes the lab's numbers from its rows.
 */
(function () {
  "use strict";

  var FINAL_CLOSE_CODES = [4401, 4403, 4404];
  var COLORS = { not_started: "#c9d1db", working: "#1f6feb", stuck: "#c62828", passed: "#1a7f37" };
  var data = JSON.parse(document.getElementById("cohort-data").textContent);
  var L = data.labels;
  var charts = {};
  var backoff = 500;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    seconds = Math.round(seconds);
    if (seconds < 60) return seconds + "s";
    var m = Math.floor(seconds / 60), h = Math.floor(m / 60);
    if (h) return h + "h" + String(m % 60).padStart(2, "0") + "m";
    return m + "m" + String(seconds % 60).padStart(2, "0") + "s";
  }

  /** The cell as it stands now: time keeps running and "working" turns "stuck" (selectors.py). */
  function current(cell) {
    var now = Date.now() / 1000;
    var c = Object.assign({}, cell);
    if (c.state === "working" || c.state === "stuck") {
      var since = now - c.start;
      c.seconds = Math.max(c.seconds, Math.round(since));
      if (c.attempts >= data.stuck.attempts && since >= data.stuck.minutes * 60) c.state = "stuck";
    }
    return c;
  }

  function csrf() {
    var m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function act(url, button) {
    button.disabled = true;
    fetch(url, { method: "POST", headers: { "X-CSRFToken": csrf(), Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? null : r.json().then(function (j) { throw new Error(j.error || r.status); }); })
      .catch(function (e) { button.title = e.message; button.classList.add("is-error"); })
      .finally(function () { button.disabled = false; });
  }

  function sessionCell(row, labIndex) {
    var lab = row.labs[labIndex], td = el("td", { className: "sandbox-cell" });
    var s = lab.session;
    if (s) {
      td.appendChild(el("span", { className: "tag session-" + s.state, text: L["session_" + s.state] || s.state }));
      if (s.state === "ready") {
        td.appendChild(el("a", { className: "button button-small", href: "/cohorts/" + data.cohort.id + "/watch/" + s.id + "/",
          "data-testid": "watch-" + row.user + "-" + lab.lab, text: L.watch }));
        ["extend", "stop"].forEach(function (action) {
          var b = el("button", { type: "button", className: "button button-small", text: L[action],
            "data-testid": action + "-" + row.user + "-" + lab.lab });
          b.addEventListener("click", function () {
            // Both change a trainee's sandbox while they work in it: ask first (the trainee is told who did it).
            if (!window.confirm(L["confirm_" + action].replace("%(name)s", row.name))) return;
            act(data.api + "sessions/" + s.id + "/" + action, b);
          });
          td.appendChild(b);
        });
      }
    } else {
      td.appendChild(el("span", { className: "muted", text: L.no_sandbox }));
    }
    lab.recordings.forEach(function (r) {
      td.appendChild(el("a", { className: "replay-link", href: "/sessions/" + r.id + "/replay/", text: "▶ " + L.replay,
        "data-testid": "replay-" + r.id }));
    });
    return td;
  }

  /** The one number a cell shows: checks while working or stuck, minutes once passed. */
  function cellNumber(c) {
    if (c.state === "passed") return Math.max(1, Math.round(c.seconds / 60)) + "m";
    if (c.state === "working" || c.state === "stuck") return c.attempts + "×";
    return "";
  }

  function cellDetails(c, step) {
    return step.title + " — " + L[c.state] + (c.state === "not_started" ? "" :
      " · " + c.attempts + " " + L.attempts + " · " + c.hints + " " + L.hints + " · " + duration(c.seconds) +
      (c.solution ? " · " + L.solution : ""));
  }

  var view = { sort: "stuck", filter: "" };

  /** A row's place: stuck first, then least progress; or by progress, or by name. */
  function ordered(rows, i) {
    function score(row) {
      var cells = row.labs[i].steps.map(current);
      return { stuck: cells.filter(function (c) { return c.state === "stuck"; }).length,
        passed: cells.filter(function (c) { return c.state === "passed"; }).length };
    }
    var q = view.filter.trim().toLowerCase();
    var shown = rows.filter(function (r) { return !q || (r.name + " " + r.username).toLowerCase().indexOf(q) !== -1; });
    return shown.map(function (r) { return { row: r, s: score(r) }; }).sort(function (a, b) {
      if (view.sort === "stuck" && a.s.stuck !== b.s.stuck) return b.s.stuck - a.s.stuck;
      if (view.sort === "stuck" || view.sort === "least") { if (a.s.passed !== b.s.passed) return a.s.passed - b.s.passed; }
      if (view.sort === "most" && a.s.passed !== b.s.passed) return b.s.passed - a.s.passed;
      return a.row.name.localeCompare(b.row.name);
    }).map(function (x) { return x.row; });
  }

  function matrix(lab, i) {
    var head = el("tr", {}, [el("th", { text: L.trainee })]);
    lab.steps.forEach(function (s, j) {
      head.appendChild(el("th", { className: "step-head", scope: "col", title: (j + 1) + ". " + s.title,
        "data-testid": "head-" + lab.slug + "-" + s.key }, [el("span", { text: (j + 1) + ". " + s.title })]));
    });
    head.appendChild(el("th", { text: "" }));
    var body = el("tbody");
    ordered(data.progress, i).forEach(function (row) {
      var tr = el("tr", { "data-user": row.user, "data-testid": "row-" + row.user + "-" + lab.slug },
        [el("th", { scope: "row", className: "trainee-name", text: row.name, title: row.username })]);
      row.labs[i].steps.forEach(function (raw, j) {
        var c = current(raw), details = cellDetails(c, lab.steps[j]);
        var td = el("td", { className: "cell state-" + c.state, "data-state": c.state, tabindex: "0",
          "data-testid": "cell-" + row.user + "-" + lab.slug + "-" + c.step, title: details, "aria-label": row.name + ": " + details },
          [el("span", { className: "cell-numbers", text: cellNumber(c) })]);
        if (c.solution) td.classList.add("used-solution");
        tr.appendChild(td);
      });
      tr.appendChild(sessionCell(row, i));
      body.appendChild(tr);
    });
    if (!data.progress.length) body.appendChild(el("tr", {}, [el("td", { colspan: lab.steps.length + 2, className: "muted", text: L.no_trainees })]));
    var table = el("table", { className: "matrix", "data-testid": "matrix-" + lab.slug }, [el("thead", {}, [head]), body]);
    table.style.setProperty("--step-w", stepWidth(lab) + "px");
    return table;
  }

  /** Step columns share the card's width (titles readable, up to 120 px each) and never go
   *  below 56 px; names (≤ 150 px) and the sandbox buttons (~240 px) keep theirs. */
  function stepWidth(lab) {
    var holder = document.querySelector('[data-lab-section="' + lab.slug + '"] .matrix-holder');
    var room = holder ? holder.clientWidth - 150 - 240 : 0;
    return Math.max(56, Math.min(120, Math.floor(room / Math.max(1, lab.steps.length)) - 4));
  }

  function statsTable(lab) {
    var stats = data.stats[lab.slug];
    var head = el("tr", {}, [L.step, L.reached, L.passed, L.working, L.stuck, L.median_time, L.median_attempts]
      .map(function (t) { return el("th", { text: t }); }));
    var body = el("tbody");
    stats.steps.forEach(function (s, j) {
      body.appendChild(el("tr", { "data-testid": "stats-" + lab.slug + "-" + s.step }, [
        (j + 1) + ". " + s.title, s.reached + " / " + stats.trainees, s.passed, s.states.working, s.states.stuck,
        duration(s.median_seconds), s.median_attempts === null ? "—" : s.median_attempts,
      ].map(function (t) { return el("td", { text: String(t) }); })));
    });
    return el("table", { className: "numbers", "data-testid": "stats-" + lab.slug }, [el("thead", {}, [head]), body]);
  }

  function chartData(lab) {
    var steps = data.stats[lab.slug].steps;
    return {
      labels: steps.map(function (s, j) { return (j + 1) + ". " + (s.title.length > 18 ? s.title.slice(0, 17) + "…" : s.title); }),
      funnel: [steps.map(function (s) { return s.reached; }), steps.map(function (s) { return s.passed; })],
      medians: [steps.map(function (s) { return s.median_seconds === null ? null : s.median_seconds / 60; }),
        steps.map(function (s) { return s.median_attempts; })],
    };
  }

  function drawCharts(lab, box) {
    if (!window.Chart) return;
    var d = chartData(lab), existing = charts[lab.slug];
    if (existing) {
      existing.funnel.data.labels = existing.medians.data.labels = d.labels;
      existing.funnel.data.datasets[0].data = d.funnel[0];
      existing.funnel.data.datasets[1].data = d.funnel[1];
      existing.medians.data.datasets[0].data = d.medians[0];
      existing.medians.data.datasets[1].data = d.medians[1];
      existing.funnel.update("none");
      existing.medians.update("none");
      return;
    }
    var common = { animation: false, responsive: true, maintainAspectRatio: false };
    charts[lab.slug] = {
      funnel: new window.Chart(box.querySelector(".chart-funnel"), {
        type: "bar",
        data: { labels: d.labels, datasets: [
          { label: L.reached, data: d.funnel[0], backgroundColor: COLORS.working },
          { label: L.passed, data: d.funnel[1], backgroundColor: COLORS.passed }] },
        options: Object.assign({ scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }, common),
      }),
      medians: new window.Chart(box.querySelector(".chart-medians"), {
        type: "bar",
        data: { labels: d.labels, datasets: [
          { label: L.median_time + " (min)", data: d.medians[0], backgroundColor: "#9a6700", yAxisID: "y" },
          { label: L.median_attempts, data: d.medians[1], backgroundColor: "#5d6b7b", yAxisID: "y1" }] },
        options: Object.assign({ scales: { y: { beginAtZero: true, position: "left" },
          y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, ticks: { precision: 0 } } } }, common),
      }),
    };
  }

  function renderLab(i) {
    var lab = data.labs[i];
    var box = document.querySelector('[data-lab-section="' + lab.slug + '"]');
    if (!box) {
      box = el("article", { className: "card dash-section", "data-lab-section": lab.slug }, [
        el("h2", { text: lab.title }),
        lab.due_at ? el("p", { className: "muted", text: "⏰ " + new Date(lab.due_at * 1000).toLocaleString() }) : null,
        el("div", { className: "matrix-holder" }),
        el("div", { className: "charts" }, [
          el("div", { className: "chart-box" }, [el("canvas", { className: "chart-funnel", "data-testid": "funnel-" + lab.slug })]),
          el("div", { className: "chart-box" }, [el("canvas", { className: "chart-medians", "data-testid": "medians-" + lab.slug })]),
        ]),
        el("div", { className: "stats-holder" }),
      ]);
      document.getElementById("labs-root").appendChild(box);
    }
    box.querySelector(".matrix-holder").replaceChildren(matrix(lab, i));
    box.querySelector(".stats-holder").replaceChildren(statsTable(lab));
    drawCharts(lab, box);
  }

  /** Quizzes that have answers, each collapsed; its chart is drawn when it is opened. */
  function renderQuiz() {
    var root = document.getElementById("quiz-root");
    (data.quiz.steps || []).filter(function (q) { return q.answered > 0; }).forEach(function (q) {
      var body = el("tbody");
      q.choices.forEach(function (c) {
        body.appendChild(el("tr", {}, [el("td", { text: c.id + (c.correct ? " ✓" : "") }), el("td", { text: c.text }), el("td", { text: String(c.count) })]));
      });
      var canvas = el("canvas", { "data-testid": "quiz-chart-" + q.step });
      var box = el("details", { className: "quiz-box", "data-testid": "quiz-" + q.lab + "-" + q.step }, [
        el("summary", { text: q.title + " — " + L.answers + ": " + q.answered + " · " + L.correct + ": " + q.correct }),
        el("p", { text: q.question }),
        q.choices.length ? el("div", { className: "chart-box chart-small" }, [canvas]) : null,
        el("table", { className: "numbers" }, [el("thead", {}, [el("tr", {}, [el("th", { text: L.choice }), el("th", { text: "" }), el("th", { text: L.answers })])]), body]),
      ]);
      root.appendChild(box);
      box.addEventListener("toggle", function () {
        if (!box.open || box.dataset.drawn || !window.Chart || !q.choices.length) return;
        box.dataset.drawn = "1";
        new window.Chart(canvas, {
          type: "bar",
          data: { labels: q.choices.map(function (c) { return c.id; }), datasets: [{ label: L.answers, data: q.choices.map(function (c) { return c.count; }),
            backgroundColor: q.choices.map(function (c) { return c.correct ? COLORS.passed : COLORS.not_started; }) }] },
          options: { animation: false, responsive: true, maintainAspectRatio: false, indexAxis: "y", scales: { x: { beginAtZero: true, ticks: { precision: 0 } } } },
        });
      });
    });
  }

  function renderMatrices() {
    data.labs.forEach(function (lab, i) {
      var box = document.querySelector('[data-lab-section="' + lab.slug + '"]');
      if (box) box.querySelector(".matrix-holder").replaceChildren(matrix(lab, i));
    });
  }

  function tools() {
    var sort = document.querySelector("[data-testid=matrix-sort]"), filter = document.querySelector("[data-testid=matrix-filter]");
    if (sort) sort.addEventListener("change", function () { view.sort = sort.value; renderMatrices(); });
    if (filter) filter.addEventListener("input", function () { view.filter = filter.value; renderMatrices(); });
    var resized = null;  // the step columns follow the window's width
    window.addEventListener("resize", function () { clearTimeout(resized); resized = setTimeout(renderMatrices, 150); });
  }

  function renderAll() { data.labs.forEach(function (_, i) { renderLab(i); }); }

  function applyRow(event) {
    var i = data.labs.findIndex(function (l) { return l.slug === event.lab; });
    if (i < 0) return;
    var row = data.progress.find(function (r) { return r.user === event.user; });
    if (!row) {
      // A trainee who joined after the page loaded: blank rows for the other labs.
      row = { user: event.user, username: event.username, name: event.name, labs: data.labs.map(function (l) {
        return { lab: l.slug, session: null, recordings: [], steps: l.steps.map(function (s) {
          return { step: s.key, state: "not_started", attempts: 0, hints: 0, solution: false, seconds: 0, start: null, passed_at: null };
        }) };
      }) };
      data.progress.push(row);
    }
    row.labs[i] = event.row;
    // Events carry only the changed row: the lab's numbers are recomputed here, from the
    // rows the page holds, so the server's work per event does not grow with the cohort.
    data.stats[event.lab] = event.stats || labStats(i);
    renderLab(i);
  }

  function median(values) {
    if (!values.length) return null;
    var v = values.slice().sort(function (a, b) { return a - b; }), mid = Math.floor(v.length / 2);
    return Math.round((v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2) * 10) / 10;
  }

  /** The funnel and medians of one lab, as cohorts.selectors.progress_stats computes them. */
  function labStats(i) {
    var lab = data.labs[i];
    return { trainees: data.progress.length, steps: lab.steps.map(function (step, j) {
      var cells = data.progress.map(function (row) { return current(row.labs[i].steps[j]); });
      var passed = cells.filter(function (c) { return c.state === "passed"; });
      var states = { not_started: 0, working: 0, stuck: 0, passed: 0 };
      cells.forEach(function (c) { states[c.state] += 1; });
      return { step: step.key, title: step.title, reached: cells.length - states.not_started, passed: passed.length,
        states: states, median_seconds: median(passed.map(function (c) { return c.seconds; })),
        median_attempts: median(passed.map(function (c) { return c.attempts; })) };
    }) };
  }

  function setLive(live) {
    var badge = document.querySelector("[data-testid=live-badge]");
    badge.dataset.live = String(live);
    badge.textContent = live ? "● " + L.live : L.offline;
  }

  /** After a reconnect: take the whole state again, events may have been missed. */
  function resync() {
    fetch(data.api + "progress", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (fresh) {
        if (!fresh) return;
        data.progress = fresh.progress;
        data.stats = fresh.stats;
        renderAll();
      });
  }

  function connect(again) {
    var url = new URL(data.ws, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    var ws = new WebSocket(url.toString());
    ws.onmessage = function (m) {
      var event = JSON.parse(m.data);
      if (event.type === "hello") {
        backoff = 500;
        setLive(true);
        if (again) resync();
      } else if (event.type === "row") {
        applyRow(event);
      }
    };
    ws.onclose = function (e) {
      setLive(false);
      if (FINAL_CLOSE_CODES.indexOf(e.code) !== -1) return;
      window.setTimeout(function () { connect(true); }, backoff);
      backoff = Math.min(backoff * 2, 5000);
    };
    window.__cohortSocket = ws;
  }

  tools();
  renderAll();
  renderQuiz();
  connect(false);
  // Time spent keeps running and "working" turns "stuck" without any event.
  window.setInterval(renderMatrices, 15000);
  // Every change sends an event; the whole state now and then is only a safety net
  // (it is the one request whose cost grows with the cohort).
  window.setInterval(resync, 300000);
})();
