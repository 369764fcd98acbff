/*
 * "My images" on the lab page: the user's own committed images (GET /api/images/),
 * each with a button that starts this lab on it (POST /api/sessions/ with "image") and
 * download links (GET /api/images/download?image=…&format=oci|docker, streamed).
 * Uses window.labPage (API, session, openSession); loaded as an ES module.
 */
function strings(root) {
  const out = {};
  for (const el of root.querySelector("template[data-my-images-strings]").content.querySelectorAll("[data-key]")) {
    out[el.dataset.key] = el.textContent;
  }
  return (key) => out[key] || key;
}

const short = (digest) => (digest || "").replace(/^sha256:/, "").slice(0, 12);
const ACTIVE = ["starting", "ready", "stopping"];

class MyImages {
  constructor(root, page) {
    this.root = root;
    this.page = page;
    this.t = strings(root);
    this.list = root.querySelector("[data-my-images-list]");
    this.note = root.querySelector("[data-my-images-note]");
    this.lab = JSON.parse(document.getElementById("page-data").textContent).lab;
    this.images = [];
    document.addEventListener("lab:state", () => this.render());
    document.addEventListener("lab:session", () => this.render());
    document.addEventListener("lab:images", () => this.load());
    this.load();
  }

  active() {
    const session = this.page.session();
    return Boolean(session && ACTIVE.includes(session.state));
  }

  load() {
    this.page.api("GET", "images/").then(
      (r) => { this.images = (r.body && r.body.images) || []; this.render(); },
      () => {},
    );
  }

  render() {
    this.root.hidden = this.images.length === 0;
    this.list.replaceChildren(...this.images.map((image, i) => this.item(image, i)));
  }

  item(image, i) {
    const li = document.createElement("li");
    li.className = "my-image";
    li.setAttribute("data-testid", `my-image-${i}`);
    const name = document.createElement("code");
    name.textContent = image.image;
    const digest = document.createElement("span");
    digest.className = "muted";
    digest.textContent = ` ${short(image.digest)} `;
    const start = document.createElement("button");
    start.type = "button";
    start.className = "button button-small";
    start.textContent = this.t("start");
    start.setAttribute("data-testid", `my-image-start-${i}`);
    start.disabled = this.active();
    if (start.disabled) start.title = this.t("busy");
    start.addEventListener("click", () => this.start(image, start));
    li.append(name, digest, start);
    for (const fmt of ["oci", "docker"]) {
      const link = document.createElement("a");
      link.className = "button button-small";
      link.href = `/api/images/download?${new URLSearchParams({ image: image.image, format: fmt })}`;
      link.setAttribute("download", "");
      link.setAttribute("data-testid", `my-image-download-${fmt}-${i}`);
      link.textContent = this.t(fmt);
      li.append(" ", link);
    }
    return li;
  }

  start(image, button) {
    if (this.active()) return;
    button.disabled = true;
    this.note.textContent = "";
    const size = window.labTerminal && window.labTerminal.size ? window.labTerminal.size() : { cols: 80, rows: 24 };
    this.page.api("POST", "sessions/", { lab: this.lab, image: image.image, cols: size.cols, rows: size.rows }).then(
      (r) => { this.page.openSession(r.body); this.render(); },
      (error) => { this.note.textContent = error.message; this.render(); },
    );
  }
}

function start() {
  const root = document.querySelector("[data-my-images]");
  if (root && window.labPage && window.labPage.openSession) window.labImages = new MyImages(root, window.labPage);
}

// lab.js, a deferred script later in the page, makes labPage: modules run after it.
if (window.labPage) start();
else document.addEventListener("DOMContentLoaded", start, { once: true });
