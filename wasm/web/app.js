// The demo page: a job form checked on every keystroke by the package (the server's rules in
// WASM), creation through POST /v1/jobs, and a search over GET /v1/jobs. No framework.
import { validateJob, jobTypes, jobStatuses, canonicalArches } from "/pkg/index.js";

const $ = (id) => document.getElementById(id);
const FIELDS = ["project_name", "type", "hostname", "arch", "email", "metadata"];
const form = $("job-form");
const token = $("token");

// A record that passes every rule, to check an e-mail address with the core's own rule (the
// create request has no e-mail of its own: the page keeps it in metadata.notifyEmail).
const EMAIL_PROBE = {
  id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
  user_id: "0190a1b2-0000-7000-8000-000000000001",
  status: "QUEUED",
  type: "BUILD",
  project_name: "p",
  created_at: "2024-01-01T00:00:00Z",
  updated_at: "2024-01-01T00:00:00Z",
  version: 0,
};

function fillSelect(select, values) {
  for (const v of values) select.append(new Option(v, v));
}

fillSelect($("type"), jobTypes());
fillSelect($("f-type"), jobTypes());
fillSelect($("f-status"), jobStatuses());
for (const a of canonicalArches()) $("arches").append(new Option(a));
token.value = new URLSearchParams(location.search).get("token") ?? "";

/** The create request the form describes, or the problems found before the rules run. */
function request() {
  const body = { type: $("type").value, project_name: $("project_name").value };
  const problems = [];
  for (const f of ["hostname", "arch"]) {
    const v = $(f).value.trim();
    if (v !== "") body[f] = v;
  }
  const raw = $("metadata").value.trim();
  if (raw !== "") {
    try {
      body.metadata = JSON.parse(raw);
    } catch (e) {
      problems.push({ path: "metadata", code: "invalid_json", message: `not valid JSON: ${e.message}` });
    }
  }
  const email = $("email").value.trim();
  if (email !== "") {
    const r = validateJob(JSON.stringify({ ...EMAIL_PROBE, user_email: email }), "record");
    if (!r.ok) for (const e of r.errors) if (e.path === "user_email") problems.push({ ...e, path: "email" });
    if (body.metadata !== null && typeof body.metadata === "object" && !Array.isArray(body.metadata)) {
      body.metadata = { ...body.metadata, notifyEmail: email };
    } else if (body.metadata === undefined) {
      body.metadata = { notifyEmail: email };
    }
  }
  return { body, problems };
}

/** The form field a problem belongs to (`metadata.cpuCores` -> metadata). */
function fieldOf(path) {
  const top = path.split(".")[0];
  return FIELDS.includes(top) ? top : null;
}

function show(problems) {
  const byField = new Map(FIELDS.map((f) => [f, []]));
  const general = [];
  for (const p of problems) {
    const f = fieldOf(p.path);
    const text = p.path.includes(".") ? `${p.path}: ${p.message}` : p.message;
    (f ? byField.get(f) : general).push(`${text} (${p.code})`);
  }
  for (const [f, msgs] of byField) {
    const input = $(f);
    const out = $(`${f}-error`);
    input.setAttribute("aria-invalid", msgs.length ? "true" : "false");
    out.textContent = msgs.join("; ");
    out.dataset.codes = problems.filter((p) => fieldOf(p.path) === f).map((p) => p.code).join(" ");
  }
  $("form-error").textContent = general.join("; ");
}

/** Checks the whole form with the core's create rules; returns the body when it passes. */
function check() {
  const { body, problems } = request();
  const r = validateJob(JSON.stringify(body), "create");
  const all = r.ok ? problems : [...problems, ...r.errors];
  show(all);
  return all.length === 0 ? body : null;
}

form.addEventListener("input", () => {
  check();
  $("submit-status").textContent = "";
});

async function api(path, init = {}) {
  const headers = { Accept: "application/json", ...(init.headers ?? {}) };
  if (token.value.trim()) headers.Authorization = `Bearer ${token.value.trim()}`;
  const resp = await fetch(path, { ...init, headers });
  const body = await resp.json().catch(() => null);
  return { resp, body };
}

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = check();
  const status = $("submit-status");
  if (!body) {
    status.textContent = "Fix the marked fields first.";
    form.querySelector('[aria-invalid="true"]')?.focus();
    return;
  }
  status.textContent = "Creating…";
  const { resp, body: out } = await api("/v1/jobs", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (resp.status === 201 && out?.id) {
    status.textContent = `Created job ${out.id}.`;
    status.dataset.jobId = out.id;
    await search();
  } else {
    // The server's problems use the same paths and codes as the page's.
    if (Array.isArray(out?.errors)) show(out.errors);
    status.textContent = `Not created (${resp.status}): ${out?.message ?? resp.statusText}`;
  }
});

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text ?? "—";
  return td;
}

/** A job's sync state as the API reports it, if it does. */
function syncState(job) {
  const s = job.sync ?? job.sync_state;
  if (s === undefined || s === null) return "—";
  if (typeof s !== "object") return String(s);
  return s.state ?? s.status ?? Object.entries(s).map(([k, v]) => `${k}: ${v}`).join(", ");
}

async function search() {
  const params = new URLSearchParams();
  for (const el of $("search-form").elements) {
    if (el.name && el.value.trim() !== "") params.set(el.name, el.value.trim());
  }
  const status = $("search-status");
  status.textContent = "Searching…";
  const { resp, body } = await api(`/v1/jobs?${params}`);
  const rows = $("results");
  rows.replaceChildren();
  if (!resp.ok || !Array.isArray(body?.items)) {
    status.textContent = `Search failed (${resp.status}): ${body?.message ?? resp.statusText}`;
    status.dataset.source = "";
    return;
  }
  for (const job of body.items) {
    const tr = document.createElement("tr");
    tr.dataset.jobId = job.id;
    tr.append(cell(job.project_name), cell(job.type), cell(job.status), cell(job.hostname), cell(job.arch),
      cell(job.created_at), cell(syncState(job)), cell(job.id));
    rows.append(tr);
  }
  status.dataset.source = body.source ?? "";
  const more = body.next_cursor ? " (more available)" : "";
  const why = body.fallback_reason ? ` (${body.fallback_reason})` : "";
  status.textContent = `${body.items.length} job(s) from ${body.source ?? "?"}${why}${more}.`;
}

$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  search();
});

if (token.value) search();
