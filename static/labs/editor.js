/*
 * Editing a lab in place: CodeMirror 6 (static/vendor/codemirror, vendored and pinned),
 * one editor per file (lab.yaml with YAML highlighting and completion of the keys the lab
 * JSON Schema defines; step Markdown with Markdown highlighting), every problem shown
 * inline as you type (the server checks against the schema and the loader, as
 * `labs validate` does), a rendered preview of the open step, and Save as a new version.
 */
const root = document.querySelector("[data-testid=editor]");
const data = JSON.parse(document.getElementById("editor-data").textContent);
const L = data.labels;
const CM = await import(root.dataset.codemirror);

const filesNav = document.querySelector("[data-testid=editor-files]");
const codeBox = document.querySelector("[data-testid=editor-code]");
const previewBox = document.querySelector("[data-testid=editor-preview]");
const statusBox = document.querySelector("[data-testid=editor-status]");
const resultBox = document.querySelector("[data-testid=editor-result]");
const saveButton = document.querySelector("[data-testid=editor-save]");

function csrf() {
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

async function call(url, body) {
  const response = await fetch(url, {
    method: body === undefined ? "GET" : "POST", credentials: "same-origin",
    headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRFToken": csrf() },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(json.error || String(response.status));
  return json;
}

const [{ files }, schema] = await Promise.all([call(data.api), call(data.schema)]);
const docs = {};          // path -> EditorState
let current = null;
let view = null;
let lastDiagnostics = [];

/** Keys the schema allows where the cursor is: the lab's, a step's, a quiz's, limits'. */
function schemaKeys(state, pos) {
  const line = state.doc.lineAt(pos);
  const indent = line.text.match(/^\s*(- )?/)[0].length;
  let context = "lab";
  for (let n = line.number - 1; n >= 1 && indent > 0; n--) {
    const text = state.doc.line(n).text;
    const m = text.match(/^(\s*)(- )?([a-z_]+):\s*$/);
    const own = text.match(/^\s*(- )?/)[0].length;
    if (m && own < indent) { context = m[3]; break; }
  }
  const defs = schema.$defs || {};
  const target = { lab: schema, steps: defs.step, limits: defs.limits, quiz: defs.quiz }[context] || null;
  return target && target.properties ? target.properties : {};
}

function completeKeys(context) {
  if (current !== "lab.yaml") return null;
  const word = context.matchBefore(/[a-z_]*/);
  const before = context.state.doc.sliceString(context.state.doc.lineAt(context.pos).from, word.from);
  if (!/^\s*(- )?$/.test(before)) return null;
  const props = schemaKeys(context.state, context.pos);
  return { from: word.from, options: Object.keys(props).map((key) => ({
    label: key, type: "property", apply: key + ": ", info: props[key].description || "" })) };
}

function toDiagnostics(doc, list) {
  return list.filter((d) => d.file === current).map((d) => {
    const line = doc.line(Math.max(1, Math.min(doc.lines, d.line)));
    const from = Math.min(line.to, line.from + Math.max(0, d.column - 1));
    const to = line.to > from ? line.to : Math.min(from + 1, doc.length);
    return { from, to, severity: "error", message: d.message, source: d.source };
  });
}

function allFiles() {
  const out = {};
  for (const [path, state] of Object.entries(docs)) out[path] = state.doc.toString();
  if (view) out[current] = view.state.doc.toString();
  return out;
}

function showStatus(list) {
  statusBox.textContent = list.length ? L.problems.replace("{n}", list.length) : L.ok;
  statusBox.dataset.problems = String(list.length > 0);
  statusBox.title = list.map((d) => `${d.file}:${d.line}:${d.column}: ${d.message}`).join("\n");
}

const lint = CM.linter(async (v) => {
  const response = await call(data.api + "/check", { files: allFiles() }).catch((e) => ({ diagnostics: [
    { file: current, line: 1, column: 1, message: e.message, source: "server" }] }));
  lastDiagnostics = response.diagnostics;
  showStatus(lastDiagnostics);
  return toDiagnostics(v.state.doc, lastDiagnostics);
}, { delay: 600 });

let previewTimer = null;
function schedulePreview() {
  clearTimeout(previewTimer);
  previewTimer = setTimeout(renderPreview, 300);
}

async function renderPreview() {
  if (!current || !current.endsWith(".md")) {
    previewBox.textContent = L.preview_yaml;
    return;
  }
  const { html } = await call(data.api + "/preview", { markdown: view.state.doc.toString() });
  previewBox.innerHTML = html;  // sanitised by the server (labs.markdown), as on the lab page
}

function stateFor(path, text) {
  const language = path.endsWith(".md") ? CM.markdown() : CM.yaml();
  return CM.EditorState.create({ doc: text, extensions: [
    CM.basicSetup, language, CM.keymap.of([CM.indentWithTab]), CM.lintGutter(), lint,
    CM.autocompletion({ override: [completeKeys] }),
    CM.EditorView.updateListener.of((u) => { if (u.docChanged) { resultBox.hidden = true; schedulePreview(); } }),
  ] });
}

function open(path) {
  if (view && current) docs[current] = view.state;
  current = path;
  if (!view) view = new CM.EditorView({ state: docs[path], parent: codeBox });
  else view.setState(docs[path]);
  for (const b of filesNav.querySelectorAll("button")) b.setAttribute("aria-current", String(b.dataset.path === path));
  window.__editorView = view;
  CM.forceLinting(view);
  renderPreview();
}

for (const [path, text] of Object.entries(files)) {
  docs[path] = stateFor(path, text);
  const b = document.createElement("button");
  b.type = "button";
  b.className = "button button-small";
  b.dataset.path = path;
  b.textContent = path;
  b.setAttribute("data-testid", "editor-file-" + path);
  b.addEventListener("click", () => open(path));
  filesNav.appendChild(b);
}

saveButton.addEventListener("click", async () => {
  saveButton.disabled = true;
  resultBox.hidden = false;
  try {
    const v = await call(data.api + "/save", { files: allFiles() });
    resultBox.replaceChildren(document.createTextNode((v.created === false ? L.unchanged : L.saved).replace("{n}", v.number) + " "));
    const links = [[`/labs/${data.slug}/versions/${v.number}/`, L.versions, "editor-version-link"]];
    if (v.preview) links.push([`/labs/${v.preview}/preview/`, L.preview, "editor-preview-link"]);
    for (const [href, text, id] of links) {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      a.setAttribute("data-testid", id);
      resultBox.append(a, " ");
    }
    resultBox.dataset.state = "saved";
  } catch (e) {
    resultBox.textContent = e.message;
    resultBox.dataset.state = "error";
  } finally {
    saveButton.disabled = false;
  }
});

open("lab.yaml" in files ? "lab.yaml" : Object.keys(files)[0]);
window.__editorReady = true;
