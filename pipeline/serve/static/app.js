// The page: upload a video, follow its job, show the verdict and its evidence. Plain JavaScript, no build.
// Everything that comes from the server or the user is set as text (textContent), never parsed as HTML.
"use strict";
const $ = (id) => document.getElementById(id);
const POLL_MS = 400;
let token = sessionStorage.getItem("deepfake-token") || "";

function authHeaders() { return token ? { Authorization: "Bearer " + token } : {}; }

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (response.status === 401) { $("token-box").hidden = false; }
  return response;
}

async function detail(response) {
  try { return (await response.json()).detail || response.statusText; } catch (e) { return response.statusText; }
}

function setState(state) { document.body.dataset.state = state; }
function showError(text) { $("error").textContent = text; $("error").hidden = false; setState("error"); }
function setProgress(fraction, text) {
  $("progress").hidden = false;
  $("bar-fill").style.width = Math.round(100 * Math.max(0, Math.min(1, fraction))) + "%";
  $("stage").textContent = text;
}

async function loadModel() {
  const response = await api("/v1/model");
  if (!response.ok) { $("model").textContent = "model description unavailable: " + (await detail(response)); return; }
  const m = await response.json();
  const names = m.members.filter((x) => x.in_ensemble).map((x) => x.name).join(", ");
  $("model").textContent = `run ${m.run}: ${m.members.length} members (${names}), threshold ${m.threshold.toFixed(3)}, ` +
    `${m.frames} frames per video, weights ${m.weights} (sha256 ${m.weights_sha256.slice(0, 12)}…)`;
  $("limit").textContent = `any video format ffmpeg reads, up to ${m.server.max_upload_mb} MB`;
  if (m.random_weights) { $("random-warning").textContent = m.warning; $("random-warning").hidden = false; }
}

function upload(file) {
  $("error").hidden = true; $("result").hidden = true; $("figure").hidden = true;
  setState("uploading");
  setProgress(0, `uploading ${file.name}…`);
  const form = new FormData();
  form.append("file", file);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/videos");
  for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) setProgress(0.1 * e.loaded / e.total, `uploading ${file.name}…`); };
  xhr.onerror = () => showError("the upload failed: the server could not be reached");
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    if (xhr.status === 202) { poll(body.id); return; }
    if (xhr.status === 401) $("token-box").hidden = false;
    const retry = xhr.getResponseHeader("Retry-After");
    showError(`refused (${xhr.status}): ${body.detail || xhr.statusText}` + (retry ? `; retry in ${retry} s` : ""));
  };
  xhr.send(form);
}

async function poll(id) {
  setState("working");
  const response = await api(`/v1/videos/${encodeURIComponent(id)}`);
  if (!response.ok) { showError(`lost the job (${response.status}): ${await detail(response)}`); return; }
  const job = await response.json();
  const where = job.status === "queued" && job.position ? ` (place ${job.position} in the queue)` : "";
  setProgress(0.1 + 0.9 * job.progress, job.status + where + "…");
  if (job.status === "done") { await show(job); return; }
  if (job.status === "failed") { showError("could not judge this video: " + (job.error || "unknown reason")); return; }
  setTimeout(() => poll(id), POLL_MS);
}

function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; }

async function show(job) {
  const r = job.result;
  setProgress(1, `done in ${job.timings.total_s.toFixed(1)} s`);
  const verdict = $("verdict");
  verdict.className = r.label === "fake" ? "fake" : r.label === "real" ? "real" : "noface";
  verdict.textContent = r.label === "no face found" ? "No face found" : r.label.toUpperCase();
  $("summary").textContent = `${job.filename || "video"}: P(fake) = ${r.prob_fake.toFixed(3)} ` +
    `(fake when ≥ ${r.threshold.toFixed(3)}); faces in ${Math.round(100 * r.face_coverage)}% of the sampled frames` +
    (r.label === "no face found" ? "; with no face the probability is 0.5 by rule" : "");
  const body = $("members").tBodies[0];
  body.replaceChildren();
  for (const [name, p] of Object.entries(r.members).sort()) {
    const row = body.insertRow();
    cell(row, name);
    cell(row, p.toFixed(3), "num");
    const meter = document.createElement("span");
    meter.className = "meter";
    meter.style.width = Math.round(120 * p) + "px";
    row.insertCell().appendChild(meter);
  }
  $("result").hidden = false;
  setState("done");
  if (job.explanation) {
    const picture = await api(job.explanation);     // fetched with the token, shown from a blob URL
    if (picture.ok) {
      const img = $("explanation");
      img.onload = () => { document.body.dataset.picture = "loaded"; };
      img.src = URL.createObjectURL(await picture.blob());
      $("figure").hidden = false;
    }
  }
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
});
$("file").addEventListener("change", (e) => { if (e.target.files.length) upload(e.target.files[0]); e.target.value = ""; });
$("token-box").addEventListener("submit", (e) => {
  e.preventDefault();
  token = $("token").value;
  sessionStorage.setItem("deepfake-token", token);
  $("token-box").hidden = true;
  loadModel();
});
loadModel();
