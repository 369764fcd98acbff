/*
 * The inside panel: the sandbox's layers, its container layer (what the trainee
 * added, modified, deleted) and the container itself, live while the panel is open,
 * plus checkpoints, rewind and commit. Protocol: docs/protocol.md ("inside"),
 * API: docs/inside.md. Uses the page's window.labPage (API, strings, session) and
 * window.labTerminal (the session's WebSocket); loaded as an ES module.
 */
const VIEWS = ["layers", "changes", "container"];
const KIND_MARK = { added: "A", modified: "M", deleted: "D", opaque: "O" };

function strings(root) {
  const out = {};
  const tpl = root.querySelector("template[data-inside-strings]");
  for (const el of tpl.content.querySelectorAll("[data-key]")) out[el.dataset.key] = el.textContent;
  return (key, vars = {}) => (out[key] || key).replace(/\{(\w+)\}/g, (_, k) => (k in vars ? vars[k] : ""));
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("data-") || k === "class" || k === "title" || k === "type") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function bytes(n) {
  if (n == null) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  return `${(n / (1 << 30)).toFixed(2)} GiB`;
}

const short = (digest) => (digest || "").replace(/^sha256:/, "").slice(0, 12);

class InsidePanel {
  constructor(root, page, terminal) {
    this.root = root;
    this.page = page;
    this.terminal = terminal;
    this.t = strings(root);
    this.open = false;
    this.tab = "changes";
    this.subscribed = false;
    this.toggle = root.querySelector("[data-inside-toggle]");
    this.body = root.querySelector("[data-inside-body]");
    this.status = root.querySelector("[data-inside-status]");
    this.note = root.querySelector("[data-inside-note]");
    this.tabs = [...root.querySelectorAll("[data-inside-tab]")];
    this.treePath = "/";
    this.views = Object.fromEntries([...root.querySelectorAll("[data-inside-view]")].map((v) => [v.dataset.insideView, v]));
    this.bind();
  }

  bind() {
    this.toggle.addEventListener("click", () => this.setOpen(!this.open));
    for (const tab of this.tabs) tab.addEventListener("click", () => this.show(tab.dataset.insideTab));
    this.root.querySelector("[data-inside-checkpoint]").addEventListener("click", () => this.checkpoint());
    this.root.querySelector("[data-inside-commit]").addEventListener("click", () => this.commit());
    // A new socket (reconnect, rewind, another session) knows nothing of our subscription.
    this.terminal.onConnection((status) => { if (status === "open") { this.subscribed = false; this.sync(); } });
    document.addEventListener("lab:event", (e) => this.onEvent(e.detail || {}));
    document.addEventListener("lab:state", (e) => {
      this.sync();
      if (e.detail && e.detail.state === "ready") this.loadCheckpoints();
    });
    // A step's Markdown can point at a view: [the Container layer tab](#inside-changes).
    document.addEventListener("click", (e) => {
      const link = e.target.closest && e.target.closest('a[href^="#inside-"]');
      const view = link && link.getAttribute("href").slice("#inside-".length);
      if (!view || !(view in this.views)) return;
      e.preventDefault();
      this.tab = view;
      if (!this.open) this.setOpen(true); else this.show(view);
    });
  }

  session() { return this.page.session(); }

  setOpen(open) {
    this.open = open;
    this.toggle.setAttribute("aria-expanded", String(open));
    this.body.hidden = !open;
    for (const tab of this.tabs) tab.hidden = !open;
    if (open) { this.show(this.tab); this.loadCheckpoints(); }
    this.sync();
  }

  show(name) {
    this.tab = name;
    for (const tab of this.tabs) tab.setAttribute("aria-selected", String(tab.dataset.insideTab === name));
    for (const [key, view] of Object.entries(this.views)) view.hidden = key !== name;
  }

  /** Subscribe while the panel is open and the sandbox ready; unsubscribe otherwise. */
  sync() {
    const s = this.session();
    const want = this.open && s && s.state === "ready";
    this.status.textContent = this.open ? (want ? this.t("live") : this.t("waiting")) : "";
    if (want === this.subscribed) return;
    const message = want ? { type: "inside.subscribe", views: VIEWS } : { type: "inside.unsubscribe" };
    const t = this.terminal;
    if (t.ws && t.ws.readyState === WebSocket.OPEN) {
      (t.sendControl ? t.sendControl.bind(t) : t._sendJson.bind(t))(message);
      this.subscribed = want;
    }
  }

  onEvent(msg) {
    if (msg.type !== "inside") return;
    if (msg.view === "error") { this.status.textContent = msg.message || ""; return; }
    if (msg.view === "checkpoints") { this.loadCheckpoints(); return; }
    const render = { layers: this.renderLayers, changes: this.renderChanges, container: this.renderContainer }[msg.view];
    if (render && this.open) {
      render.call(this, msg.data);
      // The file tree follows the container layer while the Layers tab is shown.
      if (msg.view === "changes" && this.tab === "layers") this.loadTree(this.treePath);
    }
  }

  renderLayers(data) {
    const t = this.t;
    const rows = data.layers.map((layer, i) => el("tr", { "data-testid": "inside-layer" },
      el("td", { text: String(i) }), el("td", { class: "mono", text: short(layer.diff_id), title: layer.diff_id }),
      el("td", { class: "mono", text: short(layer.chain_id), title: layer.chain_id }),
      el("td", { text: bytes(layer.size) }), el("td", { class: "mono", text: layer.created_by || "" })));
    rows.push(el("tr", { class: "inside-upper", "data-testid": "inside-upper" },
      el("td", { text: "↑" }), el("td", { text: t("container.layer"), colSpan: 2 }),
      el("td", { text: bytes(data.upper.bytes) }), el("td", { class: "mono", text: "upperdir" })));
    rows.reverse(); // top of the stack first, as overlayfs lists lowerdirs
    const head = el("tr", {}, ...["#", "diff_id", "chain_id", t("size"), t("made.by")].map((h) => el("th", { text: h })));
    const table = el("table", { class: "inside-table", "data-inside-layers-table": "" }, el("thead", {}, head), el("tbody", {}, ...rows));
    const old = this.views.layers.querySelector("[data-inside-layers-table]");
    if (old) old.replaceWith(table); else this.views.layers.prepend(table);
    if (!this.views.layers.querySelector("[data-inside-tree]")) this.loadTree(this.treePath);
  }

  /** One directory of the merged root, like dive: each entry's layer and the copies it hides. */
  loadTree(path) {
    const s = this.session();
    if (!s || s.state !== "ready") return;
    const query = `tree?path=${encodeURIComponent(path)}`;
    this.page.api("GET", this.path(query)).then((r) => this.renderTree(r.body), (e) => { this.status.textContent = e.message; });
  }

  renderTree(data) {
    const t = this.t;
    this.treePath = data.path;
    const label = (i) => (i === data.layers - 1 ? "C" : `L${i}`);
    const crumbs = el("p", { class: "inside-crumbs mono", "data-testid": "inside-tree-path" });
    const parts = data.path.split("/").filter(Boolean);
    [["/", "/"], ...parts.map((p, i) => [p, "/" + parts.slice(0, i + 1).join("/")])].forEach(([name, target], i) => {
      const a = el("a", { href: "#", text: name });
      a.addEventListener("click", (e) => { e.preventDefault(); this.loadTree(target); });
      crumbs.append(i > 1 ? " / " : "", a);
    });
    const items = data.entries.map((e) => {
      const name = e.type === "dir" ? el("a", { href: "#", text: `${e.name}/` }) : el("span", { text: e.name });
      if (e.type === "dir") name.addEventListener("click", (ev) => { ev.preventDefault(); this.loadTree(`${data.path.replace(/\/$/, "")}/${e.name}`); });
      return el("li", { class: `inside-change is-${e.deleted ? "deleted" : e.layer === data.layers - 1 ? "added" : "lower"}`,
        "data-testid": "inside-tree-entry", "data-name": e.name, "data-layer": label(e.layer) },
        el("span", { class: "inside-kind", text: label(e.layer), title: e.layer === data.layers - 1 ? t("container.layer") : `${t("layer")} ${e.layer}` }),
        el("span", { class: "mono" }, name),
        el("span", { class: "muted", text: [e.type === "file" ? bytes(e.size) : "", e.deleted ? t("kind.deleted") : "",
          e.hides.length ? `${t("hides")} ${e.hides.map(label).join(" ")}` : ""].filter(Boolean).join(" · ") }));
    });
    const box = el("div", { class: "inside-tree", "data-inside-tree": "" }, el("h3", { text: t("files") }), crumbs,
      el("ul", { class: "inside-list" }, ...items));
    const old = this.views.layers.querySelector("[data-inside-tree]");
    if (old) old.replaceWith(box); else this.views.layers.append(box);
  }

  renderChanges(data) {
    const t = this.t;
    const list = data.changes;
    if (!list.length) {
      this.views.changes.replaceChildren(el("p", { class: "muted", text: t("no.changes") }));
      return;
    }
    const copied = list.reduce((n, c) => n + (c.size || 0), 0);
    const wasted = list.reduce((n, c) => n + (c.lower_size || 0), 0);
    const items = list.map((c) => el("li", { class: `inside-change is-${c.kind}`, "data-testid": "inside-change",
      "data-path": c.path, "data-kind": c.kind, title: t(`kind.${c.kind}`) },
      el("span", { class: "inside-kind", text: KIND_MARK[c.kind] || "?" }),
      el("span", { class: "mono", text: c.path }),
      el("span", { class: "muted", text: c.kind === "deleted" ? `−${bytes(c.lower_size)}` : (c.size ? bytes(c.size) : "") })));
    this.views.changes.replaceChildren(
      el("p", { class: "muted", text: t("summary", { n: list.length, copied: bytes(copied), wasted: bytes(wasted) }) }),
      el("ul", { class: "inside-list" }, ...items));
  }

  renderContainer(data) {
    const t = this.t;
    const ns = el("ul", { class: "inside-chips" }, ...data.namespaces.map((n) => el("li",
      { class: n.shared_with_host ? "is-shared" : "is-own", "data-testid": `inside-ns-${n.type}` },
      el("strong", { text: n.type }), ` ${n.id.replace(/^\w+:/, "")} · ${n.shared_with_host ? t("host") : t("own")}`)));
    const cg = data.cgroups;
    const gauge = (label, cur, max, fmt) => el("li", {}, el("strong", { text: label }),
      ` ${fmt(cur)} / ${max == null ? "∞" : fmt(max)}`,
      max ? el("meter", { min: 0, max: max, value: cur || 0 }) : null);
    const figures = el("ul", { class: "inside-figures" },
      gauge(t("memory"), cg.memory.current, cg.memory.limit, bytes),
      gauge(t("pids"), cg.pids.current, cg.pids.limit, String),
      el("li", {}, el("strong", { text: t("cpu") }), ` ${(cg.cpu.usage_seconds || 0).toFixed(2)} s` +
        (cg.cpu.limit_cpus ? ` · ≤ ${cg.cpu.limit_cpus} CPU` : "")));
    const mounts = el("ul", { class: "inside-list mono" }, ...data.mounts.map((m) => {
      const item = el("li", {}, `${m.target}  ${m.type}  ${m.source}`);
      if (m.overlay) {
        const parts = (m.overlay.lowerdir || []).map((l) => `lowerdir ${l.layer || l.path}`);
        if (m.overlay.upperdir) parts.push(`upperdir ${m.overlay.upperdir.layer}`);
        if (m.overlay.workdir) parts.push(`workdir ${m.overlay.workdir.layer}`);
        item.append(el("ul", { "data-testid": "inside-overlay" }, ...parts.map((p) => el("li", { text: p }))));
      }
      return item;
    }));
    const procs = el("table", { class: "inside-table" },
      el("thead", {}, el("tr", {}, ...["PID", "PPID", "UID", "", "namespaces"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...data.processes.map((p) => el("tr", { "data-testid": "inside-process" },
        el("td", { text: String(p.pid) }), el("td", { text: String(p.ppid) }), el("td", { text: String(p.uid) }),
        el("td", { class: "mono", text: p.cmdline || p.name }),
        el("td", { class: "mono", text: Object.keys(p.namespaces).join(" ") })))));
    this.views.container.replaceChildren(
      el("h3", { text: t("namespaces") }), ns, el("h3", { text: t("cgroups") }), figures,
      el("h3", { text: t("processes") }), procs, el("h3", { text: t("mounts") }), mounts);
  }

  path(what) { return `sessions/${encodeURIComponent(this.session().id)}/${what}`; }

  loadCheckpoints() {
    const s = this.session();
    if (!s || s.state !== "ready") return;
    this.page.api("GET", this.path("checkpoints")).then(
      (r) => this.renderCheckpoints(r.body.checkpoints), (e) => { this.note.textContent = e.message; });
  }

  renderCheckpoints(list) {
    const t = this.t;
    this.stepButtons(list);
    const box = this.root.querySelector("[data-inside-checkpoints]");
    if (!list.length) { box.replaceChildren(el("li", { class: "muted", text: t("no.checkpoints") })); return; }
    box.replaceChildren(...list.slice().reverse().map((cp) => {
      const rewind = el("button", { type: "button", class: "button button-small", text: t("rewind"),
        "data-testid": `inside-rewind-${cp.id}` });
      rewind.addEventListener("click", () => this.rewind(cp.id));
      return el("li", { "data-testid": "inside-checkpoint-item", "data-step": cp.step || "" },
        el("span", { class: "mono", text: `${cp.id} ${short(cp.diff_id)} ${bytes(cp.size)}` }),
        ` ${cp.step ? `${t("step")} ${cp.step}` : ""}${cp.auto ? ` · ${t("auto")}` : ""} `, rewind);
    }));
  }

  /** "Rewind to the start of this step" on each step whose previous step's pass was checkpointed. */
  stepButtons(list) {
    const steps = this.page.steps || [];
    for (const old of document.querySelectorAll("[data-inside-step-rewind]")) old.remove();
    steps.forEach((step, i) => {
      const prev = i > 0 ? steps[i - 1].dataset.step : null;
      const cp = prev && list.filter((c) => c.auto && c.step === prev).pop();
      const footer = step.querySelector(".step-footer");
      if (!cp || !footer) return;
      const button = el("button", { type: "button", class: "button button-quiet", text: this.t("rewind.step"),
        "data-inside-step-rewind": cp.id, "data-testid": `rewind-step-${step.dataset.step}` });
      button.addEventListener("click", () => this.rewind(cp.id));
      footer.append(button);
    });
  }

  checkpoint() {
    this.note.textContent = "";
    this.page.api("POST", this.path("checkpoints"), {}).then(() => this.loadCheckpoints(),
      (e) => { this.note.textContent = e.message; });
  }

  rewind(id) {
    this.note.textContent = this.t("rewinding");
    this.page.api("POST", this.path("rewind"), { checkpoint: id }).catch((e) => { this.note.textContent = e.message; });
  }

  commit() {
    const name = this.root.querySelector("[data-inside-name]").value.trim() || "mine";
    const tag = this.root.querySelector("[data-inside-tag]").value.trim() || "latest";
    this.note.textContent = "";
    this.page.api("POST", this.path("commit"), { name, tag }).then(
      (r) => {
        this.note.textContent = this.t("committed", { image: `${r.body.image} ${short(r.body.digest)}` });
        document.dispatchEvent(new CustomEvent("lab:images"));  // "My images" lists it
      },
      (e) => { this.note.textContent = e.message; });
  }
}

function start() {
  const root = document.querySelector("[data-inside]");
  if (!root || !window.labPage || !window.labTerminal) return;
  window.labInside = new InsidePanel(root, window.labPage, window.labTerminal);
}

// lab.js, a deferred script later in the page, makes labPage and labTerminal: deferred
// scripts and modules run in document order, all before DOMContentLoaded.
if (window.labPage) start();
else document.addEventListener("DOMContentLoaded", start, { once: true });
