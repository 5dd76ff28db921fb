// ITKIT Server status page: server, devices, models, jobs, and a form that segments a volume
// through the job API with a slice preview. Plain browser JavaScript, no libraries; every
// value from the server is inserted as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  key: sessionStorage.getItem("itkit-api-key") || "",
  info: null,
  input: null,    // NIfTI volume of the uploaded image (null: not NIfTI or not read)
  labels: null,   // NIfTI volume of the result
  colors: {},     // label value -> [r, g, b]
  names: {},      // label value -> name
  window: null,   // [level, width] for the preview
  downloadUrl: null,
};

// ------------------------------------------------------------------ helpers

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function fill(tbody, rows, columns, emptyText) {
  tbody.replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { class: "empty", colspan: String(columns) }, emptyText))]));
}

function bytes(n) {
  if (!(n >= 0)) return "?";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; ++i; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}

function bar(fraction, text, cls) {
  const f = Math.max(0, Math.min(1, fraction || 0));
  return el("div", { class: "bar " + (cls || "") }, el("span", { style: `width:${(100 * f).toFixed(1)}%` }),
            el("em", {}, text));
}

function swatch(color) {
  const [r, g, b] = color || [128, 128, 128];
  return el("span", { class: "swatch", style: `background:rgb(${r},${g},${b})` });
}

function showError(message) {
  const f = $("error");
  f.textContent = message || "";
  f.hidden = !message;
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function authHeaders() {
  return state.key ? { Authorization: "Bearer " + state.key } : {};
}

async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (r.ok) return r;
  let message = `${r.status} ${r.statusText}`;
  try { message = (await r.json()).error || message; } catch (e) { /* not JSON */ }
  if (r.status === 401) $("auth").hidden = false;
  throw new ApiError(r.status, message);
}

// ------------------------------------------------------------------ server, devices, models

function renderServer(info) {
  const kv = $("server-info");
  const items = [
    ["server", `${info.name || "ITKIT Inference Server"} (${info.server || "itkit_server"})`],
    ["version", info.version],
    ["CUDA", info.cuda_available ? `available, ${info.cuda_device_count} GPU(s)`
      : `not available${info.cuda_unavailable_reason ? ": " + info.cuda_unavailable_reason : ""}`],
    ["API key", info.auth_required ? "required" : "not required"],
    ["TLS", info.tls ? "on" : "off"],
  ];
  if (info.limits) {
    items.push(["limits", `upload ${info.limits.max_upload_mb} MiB, ` +
      `${Number(info.limits.max_voxels).toLocaleString("en")} voxels, ` +
      `${info.limits.request_timeout_s} s per inference, results kept ${info.limits.job_ttl_s} s`]);
  }
  if (info.model_dir) items.push(["model directory", info.model_dir]);
  kv.replaceChildren(...items.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v ?? "?")]));

  const rows = [el("tr", {}, el("td", {}, "cpu"), el("td", {}, "host CPU"), el("td", {}, "host memory"))];
  for (const d of info.devices || []) {
    const used = d.total_bytes - d.free_bytes;
    rows.push(el("tr", {}, el("td", {}, `cuda:${d.index}`),
      el("td", {}, d.name + (d.compute_capability ? ` (sm ${d.compute_capability})` : "")),
      el("td", {}, bar(used / d.total_bytes, `${bytes(d.free_bytes)} free / ${bytes(d.total_bytes)}`))));
  }
  fill($("devices").tBodies[0], rows, 3, "");
}

function renderModels(info) {
  const models = Object.values(info.models || {}).sort((a, b) => a.name.localeCompare(b.name));
  $("model-count").textContent = `(${models.length} loaded)`;
  const rows = models.map((m) => {
    const labels = el("td", {}, ...(m.labels || []).map((l) =>
      el("span", { class: "chip", title: `value ${l.value}` }, swatch(l.color), `${l.value} ${l.name}`)));
    const norm = typeof m.normalization === "object" ? JSON.stringify(m.normalization) : m.normalization;
    const win = m.window_level !== undefined && m.window_level !== null
      ? `level ${m.window_level}, width ${m.window_width}` : "";
    return el("tr", { "data-model": m.name },
      el("td", {}, el("strong", {}, m.name), m.description ? el("div", { class: "muted" }, m.description) : null),
      el("td", {}, m.backend || "?"), labels,
      el("td", { class: "nowrap" }, (m.patch_size || m.inference_config?.patch_size || ["whole image"]).join(" × ")),
      el("td", {}, [norm, win].filter(Boolean).join(": ")));
  });
  fill($("models").tBodies[0], rows, 5, "No model loaded: start the server with --model-dir, or POST /api/models.");
  const failed = info.failed_models || [];
  $("failed-models").replaceChildren(...failed.map((f) =>
    el("p", { class: "error" }, `failed: ${f.path}: ${f.error}`)));

  const select = $("model");
  const previous = select.value || (info.model && info.model.name) || "";
  select.replaceChildren(...models.map((m) => el("option", { value: m.name }, m.name)));
  if (models.some((m) => m.name === previous)) select.value = previous;
  updateWindowPlaceholders();

  const q = info.queue;
  if (q && q.waiting && q.running) {
    $("queue").textContent = `(waiting: cpu ${q.waiting.cpu ?? 0}, cuda ${q.waiting.cuda ?? 0}; ` +
      `running: cpu ${q.running.cpu ?? 0}, cuda ${q.running.cuda ?? 0})`;
  }
}

function selectedModel() {
  return state.info && state.info.models ? state.info.models[$("model").value] : undefined;
}

function updateWindowPlaceholders() {
  const m = selectedModel();
  $("wl").placeholder = m && m.window_level !== undefined && m.window_level !== null ? m.window_level : "";
  $("ww").placeholder = m && m.window_width !== undefined && m.window_width !== null ? m.window_width : "";
}

async function refreshInfo() {
  try {
    const h = await (await fetch("/api/health")).json();
    $("version").textContent = `version ${h.version}`;
    $("health").textContent = h.status === "ok" ? "running" : h.status;
    $("health").className = "badge " + (h.status === "ok" ? "ok" : "bad");
  } catch (e) {
    $("health").textContent = "unreachable";
    $("health").className = "badge bad";
    return;
  }
  try {
    state.info = await (await api("/api/info")).json();
    $("auth").hidden = true;
    renderServer(state.info);
    renderModels(state.info);
    showError("");
  } catch (e) {
    if (e.status !== 401) showError(`GET /api/info: ${e.message}`);
  }
}

// ------------------------------------------------------------------ jobs

async function refreshJobs() {
  let jobs;
  try {
    jobs = (await (await api("/api/jobs")).json()).jobs || [];
  } catch (e) {
    return;  // 401 is shown by the key form; other errors by the next info refresh
  }
  jobs.sort((a, b) => (a.elapsed_s ?? 0) - (b.elapsed_s ?? 0));
  const rows = jobs.slice(0, 20).map((j) => {
    const windows = j.windows_total ? el("div", { class: "muted" }, `${j.windows_done}/${j.windows_total} windows`) : null;
    const cls = j.state === "done" ? "done" : (j.state === "failed" || j.state === "cancelled") ? "failed" : "";
    return el("tr", { "data-job": j.id }, el("td", { title: j.id }, el("code", {}, j.id.slice(0, 8))),
      el("td", {}, j.model),
      el("td", { title: j.error || "" }, j.state + (j.state === "running" ? ` · ${j.stage}` : "")),
      el("td", {}, bar(j.progress, `${Math.round(100 * (j.progress || 0))} %`, cls), windows),
      el("td", { class: "nowrap" }, `${(j.elapsed_s ?? 0).toFixed(1)} s`));
  });
  fill($("jobs").tBodies[0], rows, 5, "No jobs. Synchronous /api/infer requests are not listed.");
}

// ------------------------------------------------------------------ NIfTI reading for the preview

const NIFTI_TYPES = { 2: Uint8Array, 4: Int16Array, 8: Int32Array, 16: Float32Array, 64: Float64Array,
                      256: Int8Array, 512: Uint16Array, 768: Uint32Array };

async function inflateMember(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// A .gz file may hold several gzip members (itkit_server compresses chunks in parallel, like
// bgzip), but DecompressionStream refuses data after the first member: inflate them one by
// one. A member ends where the next header (1f 8b 08) starts and the bytes before it inflate.
async function gunzipIfNeeded(buf) {
  const u8 = new Uint8Array(buf);
  if (u8.length < 18 || u8[0] !== 0x1f || u8[1] !== 0x8b) return buf;
  const parts = [];
  let start = 0;
  while (start < u8.length && u8[start] === 0x1f) {
    let end = u8.length, out = null;
    for (let c = start + 18; c + 3 <= u8.length && !out; ++c) {
      if (u8[c] !== 0x1f || u8[c + 1] !== 0x8b || u8[c + 2] !== 8) continue;
      try { out = await inflateMember(u8.subarray(start, c)); end = c; } catch (e) { /* inside the member */ }
    }
    parts.push(out || await inflateMember(u8.subarray(start)));
    start = end;
  }
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) { all.set(p, off); off += p.length; }
  return all.buffer;
}

// A NIfTI-1 volume {nx, ny, nz, spacing, data, slope, inter}, or null for other formats and
// for images with several components (the preview shows scalar 3D images only).
async function readNifti(buf) {
  buf = await gunzipIfNeeded(buf);
  if (buf.byteLength < 352) return null;
  const dv = new DataView(buf);
  const le = dv.getInt32(0, true) === 348;
  if (!le && dv.getInt32(0, false) !== 348) return null;
  const dim = Array.from({ length: 8 }, (_, i) => dv.getInt16(40 + 2 * i, le));
  const pixdim = Array.from({ length: 8 }, (_, i) => dv.getFloat32(76 + 4 * i, le));
  const T = NIFTI_TYPES[dv.getInt16(70, le)];
  if (!T || dim[0] < 2 || (dim[0] > 3 && dim.slice(4, 1 + dim[0]).some((d) => d > 1))) return null;
  const [nx, ny, nz] = [dim[1], dim[2], dim[0] >= 3 ? Math.max(dim[3], 1) : 1];
  const offset = Math.max(352, Math.round(dv.getFloat32(108, le)));
  const n = nx * ny * nz, size = n * T.BYTES_PER_ELEMENT;
  if (offset + size > buf.byteLength) return null;
  const raw = buf.slice(offset, offset + size);
  if (!le && T.BYTES_PER_ELEMENT > 1) {
    const u8 = new Uint8Array(raw), w = T.BYTES_PER_ELEMENT;
    for (let i = 0; i < u8.length; i += w) u8.subarray(i, i + w).reverse();
  }
  let slope = dv.getFloat32(112, le), inter = dv.getFloat32(116, le);
  if (!slope || !isFinite(slope)) { slope = 1; inter = 0; }
  return { nx, ny, nz, spacing: [pixdim[1] || 1, pixdim[2] || 1, pixdim[3] || 1], data: new T(raw), slope, inter };
}

// The model's window, else the 1st-99th percentile of (a sample of) the image.
function previewWindow(vol) {
  const m = selectedModel();
  const wl = parseFloat($("wl").value), ww = parseFloat($("ww").value);
  if (isFinite(wl) && ww > 0) return [wl, ww];
  if (m && m.window_level !== undefined && m.window_level !== null && m.window_width > 0) {
    return [m.window_level, m.window_width];
  }
  const step = Math.max(1, Math.floor(vol.data.length / 200000)), sample = [];
  for (let i = 0; i < vol.data.length; i += step) sample.push(vol.data[i] * vol.slope + vol.inter);
  sample.sort((a, b) => a - b);
  const lo = sample[Math.floor(0.01 * (sample.length - 1))], hi = sample[Math.floor(0.99 * (sample.length - 1))];
  return [(lo + hi) / 2, Math.max(hi - lo, 1e-6)];
}

// ------------------------------------------------------------------ preview

function drawSlice() {
  const input = state.input, labels = state.labels, vol = input || labels;
  if (!vol) return;
  const k = Number($("slice-index").value), { nx, ny } = vol, n = nx * ny, base = k * n;
  const canvas = $("slice"), ctx = canvas.getContext("2d");
  canvas.width = nx;
  canvas.height = ny;
  const image = ctx.createImageData(nx, ny), px = image.data;
  const alpha = Number($("opacity").value) / 100;
  const [wl, ww] = state.window || [0, 1], lo = wl - ww / 2, scale = 255 / ww;
  for (let p = 0; p < n; ++p) {
    let g = 0;
    if (input) g = Math.max(0, Math.min(255, ((input.data[base + p] * input.slope + input.inter) - lo) * scale));
    let r = g, gr = g, b = g;
    const c = labels ? labels.data[base + p] : 0;
    if (c) {
      const col = state.colors[c] || [255, 0, 0];
      r = (1 - alpha) * r + alpha * col[0];
      gr = (1 - alpha) * gr + alpha * col[1];
      b = (1 - alpha) * b + alpha * col[2];
    }
    px[4 * p] = r; px[4 * p + 1] = gr; px[4 * p + 2] = b; px[4 * p + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  // Physical aspect ratio; about 512 px wide.
  const widthMm = nx * vol.spacing[0], heightMm = ny * vol.spacing[1];
  const w = Math.min(512, canvas.parentElement.parentElement.clientWidth || 512);
  canvas.style.width = `${w}px`;
  canvas.style.height = `${Math.round(w * heightMm / widthMm)}px`;
  $("slice-label").textContent = `${k + 1} / ${vol.nz}`;
}

function showPreview() {
  const input = state.input, labels = state.labels;
  if (input && labels && (input.nx !== labels.nx || input.ny !== labels.ny || input.nz !== labels.nz)) {
    state.input = null;  // not on the same grid: show the labels alone
  }
  const vol = state.input || labels;
  if (!vol) {
    $("preview").hidden = true;
    return;
  }
  state.window = state.input ? previewWindow(state.input) : [0, 1];
  const slider = $("slice-index");
  slider.max = String(vol.nz - 1);
  slider.value = String(Math.floor(vol.nz / 2));
  const rows = [];
  if (labels) {
    const counts = new Map();
    for (const v of labels.data) counts.set(v, (counts.get(v) || 0) + 1);
    const voxelMl = labels.spacing[0] * labels.spacing[1] * labels.spacing[2] / 1000;
    for (const v of [...counts.keys()].sort((a, b) => a - b)) {
      rows.push(el("tr", { "data-label": String(v) },
        el("td", {}, el("span", { class: "chip" }, swatch(state.colors[v] || [0, 0, 0]), `${v} ${state.names[v] || ""}`)),
        el("td", { class: "count" }, String(counts.get(v))), el("td", {}, (counts.get(v) * voxelMl).toFixed(1))));
    }
  }
  fill($("legend").tBodies[0], rows, 3, "input only (the result is shown for .nii.gz output)");
  $("preview").hidden = false;
  drawSlice();
}

// ------------------------------------------------------------------ segmentation form

function setStatus(text, bad) {
  $("run-status").textContent = text;
  $("run-status").className = "status" + (bad ? " bad" : "");
}

function upload(path, form) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setStatus(`Uploading… ${Math.round(100 * e.loaded / e.total)} %`);
    };
    xhr.onload = () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status === 202 || xhr.status === 200) resolve(body);
      else {
        if (xhr.status === 401) $("auth").hidden = false;
        reject(new ApiError(xhr.status, body.error || `${xhr.status} ${xhr.statusText}`));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, "network error"));
    xhr.send(form);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function segment(event) {
  event.preventDefault();
  const file = $("image").files[0], model = selectedModel();
  if (!file || !model) {
    setStatus(file ? "No model loaded." : "Choose an image file.", true);
    return;
  }
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("model_name", model.name);
  for (const [id, field] of [["wl", "window_level"], ["ww", "window_width"]]) {
    if ($(id).value !== "") form.append(field, $(id).value);
  }
  const format = $("format").value;
  form.append("output_format", format);
  state.colors = Object.fromEntries((model.labels || []).map((l) => [l.value, l.color]));
  state.names = Object.fromEntries((model.labels || []).map((l) => [l.value, l.name]));
  state.input = state.labels = null;
  $("preview").hidden = true;
  $("result").replaceChildren();
  if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
  $("run").disabled = true;
  const inputRead = file.arrayBuffer().then(readNifti).catch(() => null);
  try {
    setStatus("Uploading…");
    let job = await upload("/api/jobs", form);
    refreshJobs();
    while (job.state === "queued" || job.state === "running") {
      await sleep(400);
      job = await (await api(`/api/jobs/${job.id}`)).json();
      const w = job.windows_total ? `, ${job.windows_done}/${job.windows_total} windows` : "";
      setStatus(`Job ${job.id.slice(0, 8)}: ${job.state}, ${job.stage}${w} (${Math.round(100 * job.progress)} %)`);
    }
    if (job.state !== "done") throw new ApiError(0, `job ${job.state}: ${job.error || "no reason given"}`);
    const r = await api(job.result_url || `/api/jobs/${job.id}/result`);
    const blob = await r.blob();
    const name = (/filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "") || [])[1]
      || `segmentation.${format}`;
    state.downloadUrl = URL.createObjectURL(blob);
    $("result").replaceChildren(el("a", { id: "download", href: state.downloadUrl, download: name },
      `Download ${name}`), ` (${bytes(blob.size)}, ${job.elapsed_s.toFixed(1)} s)`);
    setStatus(`Done: ${model.name} segmented ${file.name}.`);
    state.input = await inputRead;
    if (format === "nii.gz") state.labels = await readNifti(await blob.arrayBuffer());
    showPreview();
  } catch (e) {
    setStatus(`Failed: ${e.message}`, true);
  } finally {
    $("run").disabled = false;
    refreshJobs();
    refreshInfo();
  }
}

// ------------------------------------------------------------------ start

function init() {
  $("auth-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = $("api-key").value.trim();
    sessionStorage.setItem("itkit-api-key", state.key);
    refreshInfo();
    refreshJobs();
  });
  $("segment-form").addEventListener("submit", segment);
  $("model").addEventListener("change", updateWindowPlaceholders);
  $("slice-index").addEventListener("input", drawSlice);
  $("opacity").addEventListener("input", drawSlice);
  refreshInfo();
  refreshJobs();
  setInterval(() => { if (!document.hidden) refreshInfo(); }, 5000);
  setInterval(() => { if (!document.hidden) refreshJobs(); }, 1500);
}

init();
