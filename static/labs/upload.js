// The upload page follows its import (a Celery task): phase by phase, then on to the
// preview when it is done, or the page again (with every error) when it failed.
const box = document.querySelector("[data-testid=upload-state]");
const words = JSON.parse(document.getElementById("upload-phases").textContent);

async function follow() {
  let view;
  try {
    const resp = await fetch(box.dataset.url, { headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error(String(resp.status));
    view = await resp.json();
  } catch {
    setTimeout(follow, 2000); // the web restarting: look again a little later
    return;
  }
  if (view.state === "done") {
    location.assign(view.preview_url);
    return;
  }
  if (view.state === "failed") {
    location.reload(); // the server renders the errors, file:line:column
    return;
  }
  box.dataset.state = view.state;
  if (view.state === "importing") box.querySelector("[data-testid=upload-message]").textContent = words.importing;
  const phase = box.querySelector("[data-testid=upload-phase]");
  phase.dataset.phase = view.phase;
  phase.textContent = words[view.phase] || "";
  setTimeout(follow, 300);
}

setTimeout(follow, 200);
