// The demo page: a job form checked on every keystroke by the package (the server's rules in
// WASM), creation through POST /v1/jobs, and a search over GET /v1/jobs. No framework.

const $ = (id) => document.getElementById(id);
const FIELDS = ["project_name", "type", "hostname", "arch", "email", "metadata"];
const form = $("job-form");
const token = $("token");

// Until the package has loaded (and for good if it cannot), the forms submit nothing: a plain
// form submission would put the form's fields, e-mail included, in the address.
let ready = false;
for (const f of [form, $("search-form")]) f.addEventListener("submit", (ev) => ev.preventDefault());

let validateJob, jobTypes, jobStatuses, canonicalArches, newJobId;
try {
  ({ validateJob, jobTypes, jobStatuses, canonicalArches, newJobId } = await import("/pkg/index.js"));
  ready = true;
} catch (e) {
  $("load-error").textContent = `The rules package (/pkg/index.js) did not load, so nothing can be checked or sent: ${e.message}`;
  $("load-error").hidden = false;
}

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

if (ready) {
  fillSelect($("type"), jobTypes());
  fillSelect($("f-type"), jobTypes());
  fillSelect($("f-status"), jobStatuses());
  for (const a of canonicalArches()) $("arches").append(new Option(a));
}
// A token given in the address is taken, then dropped from it (and from the history).
const address = new URL(location.href);
token.value = address.searchParams.get("token") ?? "";
if (address.searchParams.has("token")) {
  address.searchParams.delete("token");
  history.replaceState(null, "", address);
}

/**
 * The create request the form describes, as JSON text, or the problems found before the rules
 * run. The metadata goes as typed (not through `JSON.parse` and back, which would round
 * 9007199254740993 and turn 1e400 into null), so the rules judge what the server will receive.
 */
function request() {
  const parts = [`"type":${JSON.stringify($("type").value)}`, `"project_name":${JSON.stringify($("project_name").value)}`];
  const problems = [];
  for (const f of ["hostname", "arch"]) {
    const v = $(f).value.trim();
    if (v !== "") parts.push(`"${f}":${JSON.stringify(v)}`);
  }
  const raw = $("metadata").value.trim();
  let metadata; // the metadata's JSON text, when there is one to send
  let parsed;
  if (raw !== "") {
    try {
      parsed = JSON.parse(raw);
      metadata = raw;
    } catch (e) {
      problems.push({ path: "metadata", code: "invalid_json", message: `not valid JSON: ${e.message}` });
    }
    // JSON that JavaScript reads but the server's reader refuses (1e400, an escaped lone
    // surrogate, nesting past its depth) is the metadata's problem, placed beside it, with
    // positions in the text as typed: the text is read alone, as a whole document.
    const unreadable = (text) => {
      const r = validateJob(text, "create");
      return r.ok ? undefined : r.errors.find((e) => e.path === "" && e.code === "invalid_json");
    };
    let bad = metadata === undefined ? undefined : unreadable(raw);
    // In the request the metadata is one level down: as deep as the reader allows alone is
    // one too deep there.
    if (metadata !== undefined && !bad && unreadable(`[${raw}]`)) {
      bad = { code: "invalid_json", message: "nested too deeply: at most 127 levels inside a job" };
    }
    if (bad) {
      problems.push({ ...bad, path: "metadata" });
      metadata = parsed = undefined;
    }
  }
  const email = $("email").value.trim();
  if (email !== "") {
    const r = validateJob(JSON.stringify({ ...EMAIL_PROBE, user_email: email }), "record");
    if (!r.ok) for (const e of r.errors) if (e.path === "user_email") problems.push({ ...e, path: "email" });
    const member = `"notifyEmail":${JSON.stringify(email)}`;
    if (raw === "" || parsed === null) {
      metadata = `{${member}}`;
    } else if (typeof parsed === "object" && !Array.isArray(parsed)) {
      // Appended last: of a key given twice the last counts, so the form's e-mail wins.
      const inner = raw.slice(1, -1);
      metadata = inner.trim() === "" ? `{${member}}` : `{${inner},${member}}`;
    }
  }
  if (metadata !== undefined) parts.push(`"metadata":${metadata}`);
  return { text: `{${parts.join(",")}}`, problems };
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
  // Written only when changed: each message is a live region, and rewriting the same text
  // would have a screen reader say every field's problem again at each keystroke.
  const put = (el, text) => {
    if (el.textContent !== text) el.textContent = text;
  };
  for (const [f, msgs] of byField) {
    const input = $(f);
    const out = $(`${f}-error`);
    input.setAttribute("aria-invalid", msgs.length ? "true" : "false");
    put(out, msgs.join("; "));
    out.dataset.codes = problems.filter((p) => fieldOf(p.path) === f).map((p) => p.code).join(" ");
  }
  put($("form-error"), general.join("; "));
}

/** No lone surrogate (`isWellFormed` where the browser has it: Chromium 111, Firefox 119). */
const wellFormed = (s) => (s.isWellFormed ? s.isWellFormed() : !/\p{Cs}/u.test(s));

/**
 * Checks the whole form with the core's create rules; returns the body's text when it passes.
 * A text field holding a lone surrogate (pasted from a broken source) makes the request text
 * unreadable to the rules (`invalid_json` for the whole): the field is named instead.
 */
function check() {
  const { text, problems } = request();
  const r = validateJob(text, "create");
  const found = r.ok ? [] : r.errors.map((e) => {
    if (e.path !== "" || e.code !== "invalid_json") return e;
    const f = ["project_name", "hostname", "arch", "email"].find((f) => !wellFormed($(f).value));
    return f ? { ...e, path: f, message: "holds a lone surrogate (not valid Unicode text)" } : e;
  });
  const all = [...problems, ...found];
  show(all);
  return all.length === 0 ? text : null;
}

form.addEventListener("input", () => {
  if (!ready) return;
  check();
  $("submit-status").textContent = "";
});

/** A request to the API: `{resp, body}`, or `{error}` when no answer came (network, server down). */
async function api(path, init = {}) {
  const headers = { Accept: "application/json", ...(init.headers ?? {}) };
  if (token.value.trim()) headers.Authorization = `Bearer ${token.value.trim()}`;
  try {
    const resp = await fetch(path, { ...init, headers });
    const body = await resp.json().catch(() => null);
    return { resp, body };
  } catch (e) {
    return { error: e.message || String(e) };
  }
}

/** The API's answer in a sentence: its message and each problem (`hostname: ... (code)`). */
function failure(resp, body) {
  const problems = Array.isArray(body?.errors) ? body.errors.map((e) => `${e.path || "request"}: ${e.message} (${e.code})`) : [];
  const message = body?.message ?? resp.statusText;
  return `(${resp.status}): ${[message, ...problems].join("; ")}`;
}

let creating = false;
// Each create is named here (`newJobId`). A send whose outcome is unknown (no answer, or a 5xx
// after which the job may exist) keeps its id for that form content and token: sent again as
// it was, it cannot make a second job, and the server's 409 for the id says it was made.
const uncertain = new Map(); // token + form text -> id

function created(status, key, id, note = "") {
  uncertain.delete(key);
  status.textContent = `Created job ${id}${note}.`;
  status.dataset.jobId = id;
  search();
}

form.addEventListener("submit", async () => {
  if (!ready || creating) return; // one create at a time: a double click makes one job
  const text = check();
  const status = $("submit-status");
  if (!text) {
    status.textContent = "Fix the marked fields first.";
    form.querySelector('[aria-invalid="true"]')?.focus();
    return;
  }
  const key = `${token.value.trim()}\n${text}`;
  const resent = uncertain.has(key);
  const id = uncertain.get(key) ?? newJobId();
  creating = true;
  // aria-disabled, not disabled: a disabled button loses the keyboard's focus for good.
  $("submit").setAttribute("aria-disabled", "true");
  status.textContent = "Creating…";
  try {
    const { resp, body: out, error } = await api("/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: `{"id":${JSON.stringify(id)},${text.slice(1)}`,
    });
    if (error || resp.status >= 500) {
      uncertain.delete(key); // (re-inserted last: the map keeps the 20 latest)
      uncertain.set(key, id);
      if (uncertain.size > 20) uncertain.delete(uncertain.keys().next().value);
    } else {
      uncertain.delete(key);
    }
    if (error) {
      status.textContent = `Not created: no answer from the server (${error}); the same form sent again cannot make it twice.`;
    } else if (resp.status === 201 && out?.id) {
      created(status, key, out.id);
    } else if (resp.status === 409 && out?.code === "already_exists" && resent) {
      created(status, key, id, " (the earlier attempt had reached the server)");
    } else {
      // The server's problems use the same paths and codes as the page's; shown only if the
      // form still says what was sent (typing goes on while the request is out).
      if (Array.isArray(out?.errors) && request().text === text) show(out.errors);
      status.textContent = `Not created ${failure(resp, out)}`;
    }
  } finally {
    creating = false;
    $("submit").removeAttribute("aria-disabled");
  }
});

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text ?? "—";
  return td;
}

/** A job's sync state as `include=sync` reports it. */
function syncState(sync) {
  if (!sync) return "—";
  switch (sync.state) {
    case "synced":
      return `synced (v${sync.version})`;
    case "pending":
      return sync.synced_version === null ? "pending" : `pending (search has v${sync.synced_version})`;
    case "dead_lettered":
      return `dead-lettered (v${sync.version})`;
    default:
      return String(sync.state);
  }
}

// Searches answer in any order (the engine can be slow, then the database answers): only the
// latest one's answer is shown.
let searches = 0;
// The last search's filters and its next page's cursor, for "Next page".
let shown = { params: null, cursor: null, page: 0 };

/** Searches with the filters as they are, or (`next`) the next page of the last search. */
async function search(next = false) {
  const filters = [...$("search-form").elements].filter((el) => el.name);
  let params;
  if (next && shown.cursor) {
    params = new URLSearchParams(shown.params);
    params.set("cursor", shown.cursor);
  } else {
    // A new search: the last one's next page is gone at once (not when this answer comes).
    next = false;
    shown = { params: null, cursor: null, page: 0 };
    $("next-page").hidden = true;
    params = new URLSearchParams({ include: "sync" });
    for (const el of filters) {
      el.setAttribute("aria-invalid", "false");
      if (el.value.trim() !== "") params.set(el.name, el.value.trim());
    }
  }
  const status = $("search-status");
  const mine = ++searches;
  status.textContent = "Searching…";
  const { resp, body, error } = await api(`/v1/jobs?${params}`);
  if (mine !== searches) return;
  const rows = $("results");
  rows.replaceChildren();
  status.dataset.source = "";
  $("next-page").hidden = true;
  if (error) {
    status.textContent = `Search failed: no answer from the server (${error}).`;
    return;
  }
  if (!resp.ok || !Array.isArray(body?.items)) {
    // A refused filter is marked (its problem's path is the parameter's name) and named.
    for (const e of Array.isArray(body?.errors) ? body.errors : []) {
      filters.find((el) => el.name === e.path)?.setAttribute("aria-invalid", "true");
    }
    status.textContent = `Search failed ${failure(resp, body)}`;
    return;
  }
  for (const job of body.items) {
    const tr = document.createElement("tr");
    tr.dataset.jobId = job.id;
    const sync = cell(syncState(body.sync?.[job.id]));
    sync.dataset.state = body.sync?.[job.id]?.state ?? "";
    tr.append(cell(job.project_name), cell(job.type), cell(job.status), cell(job.hostname), cell(job.arch),
      cell(job.created_at), sync, cell(job.id));
    rows.append(tr);
  }
  status.dataset.source = body.source ?? "";
  params.delete("cursor");
  shown = { params: params.toString(), cursor: body.next_cursor ?? null, page: next ? shown.page + 1 : 1 };
  $("next-page").hidden = !shown.cursor;
  const page = shown.page > 1 ? `, page ${shown.page}` : "";
  const more = body.next_cursor ? " (more available)" : "";
  const why = body.fallback_reason ? ` (${body.fallback_reason})` : "";
  status.textContent = `${body.items.length} job(s) from ${body.source ?? "?"}${why}${page}${more}.`;
}

$("search-form").addEventListener("submit", () => {
  if (ready) search();
});
$("next-page").addEventListener("click", () => {
  if (ready) search(true);
});

if (ready && token.value) search();
