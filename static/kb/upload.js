// Upload page of the console: drop or choose files, send them one by one, follow each job live.
"use strict";

const form = document.getElementById("upload-form");
const input = form.querySelector("input[type=file]");
const zone = document.getElementById("drop-zone");
const table = document.getElementById("upload-jobs");
const rows = table.querySelector("tbody");
const csrfToken = form.querySelector("[name=csrfmiddlewaretoken]").value;
const FINISHED = new Set(["done", "failed"]);
const jobs = new Map(); // job id -> table row
let polling = null;

function addRow(name) {
  const row = rows.insertRow();
  row.innerHTML = '<td class="name"></td><td class="state">Uploading…</td>' +
    '<td><div class="kb-bar"><span style="width:0%"></span></div></td><td class="chunks"></td><td class="message"></td>';
  row.querySelector(".name").textContent = name;
  table.hidden = false;
  return row;
}

function show(row, job) {
  const state = row.querySelector(".state");
  state.textContent = job.label;
  state.className = `state kb-state-${job.state}`;
  const share = job.state === "done" ? 100 : job.chunks_total ? (100 * job.chunks_done) / job.chunks_total : 0;
  row.querySelector(".kb-bar span").style.width = `${share}%`;
  row.querySelector(".chunks").textContent = job.chunks_total ? `${job.chunks_done} / ${job.chunks_total}` : "";
  row.querySelector(".message").textContent = job.error || "";
}

async function upload(file) {
  const row = addRow(file.name);
  const body = new FormData();
  body.append("files", file);
  const response = await fetch(form.action || location.href, {
    method: "POST",
    body,
    headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
  });
  const reply = await response.json().catch(() => ({ error: `upload failed (${response.status})` }));
  const result = (reply.results || [])[0] || { error: reply.error };
  if (result.error) {
    show(row, { state: "failed", label: "Rejected", chunks_done: 0, chunks_total: 0, error: result.error });
  } else if (!result.created) {
    show(row, { state: "done", label: "Unchanged", chunks_done: 0, chunks_total: 0, error: "same content as the latest version" });
  } else {
    jobs.set(result.job, row);
    show(row, { state: "queued", label: "Queued", chunks_done: 0, chunks_total: 0, error: "" });
    polling ??= setInterval(poll, 1000);
  }
}

async function poll() {
  const open = [...jobs.keys()];
  if (!open.length) {
    clearInterval(polling);
    polling = null;
    document.getElementById("upload-links").hidden = false;
    return;
  }
  const response = await fetch(`${form.dataset.jobsUrl}?ids=${open.join(",")}`, { headers: { Accept: "application/json" } });
  if (!response.ok) return;
  const { jobs: states } = await response.json();
  for (const [id, job] of Object.entries(states)) {
    const row = jobs.get(Number(id));
    show(row, job);
    if (FINISHED.has(job.state)) jobs.delete(Number(id));
  }
}

async function uploadAll(files) {
  for (const file of files) await upload(file);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  uploadAll([...input.files]);
  input.value = "";
});
input.addEventListener("change", () => {
  uploadAll([...input.files]);
  input.value = "";
});
document.getElementById("upload-submit").hidden = true; // with a script, choosing a file uploads it
for (const name of ["dragenter", "dragover"]) {
  zone.addEventListener(name, (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) {
  zone.addEventListener(name, () => zone.classList.remove("over"));
}
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  uploadAll([...event.dataTransfer.files]);
});
