// A deterministic corpus of generated job records (JSON text, ~560 bytes each, ~80% valid) for
// the benchmark and for the JS tests' cross-check against the native build. The invalid ~20%
// break one rule each, in proportion; some valid ones use spellings the core accepts but
// libraries may not (lowercase t/z, +02:00 offsets, numeric strings in metadata).

/** Mulberry32: small, fast, and the same sequence on every machine. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const HEX = "0123456789abcdef";
const STATUSES = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
const TYPES = ["BUILD", "TEST", "DEPLOY", "SCAN"];
const ARCHES = ["x86_64", "arm64", "amd64", "aarch64", "riscv64"];
const TEAMS = ["core", "web", "infra", "data", "mobile"];

/** The ways an invalid job breaks the rules (one each), and how often relative to each other. */
export const BREAKAGES = [
  "hostname_underscore",
  "urn_uuid",
  "feb_30",
  "leap_second",
  "offset_without_colon",
  "terminal_without_completed_at",
  "cpu_cores_zero",
  "unknown_status",
  "bad_email",
  "project_name_too_long",
  "unknown_field",
  "bad_digest",
];

/**
 * The corpus with `k` more doubles in each job's metadata, as `JSON.stringify` writes
 * `Math.random() * 1000` (17 significant digits: numbers off the JSON reader's fast path).
 */
export function withNumbers(corpus, k, seed = 7) {
  if (!k) return corpus;
  const r = rng(seed);
  return corpus.map((s) => {
    const job = JSON.parse(s);
    job.metadata = { ...job.metadata, samples: Array.from({ length: k }, () => r() * 1000) };
    return JSON.stringify(job);
  });
}

export function generate(n = 10_000, seed = 42) {
  const r = rng(seed);
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const hex = (k) => {
    let s = "";
    for (let i = 0; i < k; i++) s += HEX[Math.floor(r() * 16)];
    return s;
  };
  const uuid7 = (ms) => {
    const t = ms.toString(16).padStart(12, "0");
    return `${t.slice(0, 8)}-${t.slice(8, 12)}-7${hex(3)}-${pick(["8", "9", "a", "b"])}${hex(3)}-${hex(12)}`;
  };
  const iso = (ms) => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
  const out = [];
  for (let i = 0; i < n; i++) {
    const created = Date.UTC(2024, 0, 1) + Math.floor(r() * 150 * 86_400_000);
    const status = pick(STATUSES);
    const terminal = status === "SUCCEEDED" || status === "FAILED" || status === "CANCELLED";
    const updated = created + Math.floor(r() * 3_600_000);
    const job = {
      id: uuid7(created),
      workspace_id: r() < 0.6 ? uuid7(created - 86_400_000) : null,
      user_id: uuid7(created - 2 * 86_400_000),
      status,
      type: pick(TYPES),
      project_name: `${pick(["api", "web", "worker", "billing", "search"])}-svc-${i % 97}`,
      hostname: `build-${String(i % 50).padStart(2, "0")}.example.com`,
      arch: pick(ARCHES),
      user_email: `dev${i % 211}@example.com`,
      error_message: status === "FAILED" ? "exit code 1: tests failed" : null,
      metadata: {
        cpuCores: pick([2, 4, 8, 16]),
        memoryGb: pick([4, 8, 15.5, 32]),
        team: pick(TEAMS),
      },
      created_at: iso(created),
      updated_at: iso(updated),
      completed_at: terminal ? iso(updated) : null,
      version: Math.floor(r() * 20),
    };
    if (r() < 0.75) job.metadata.dockerImageId = `sha256:${hex(64)}`;
    // Spellings the core accepts (RFC 3339 allows them; the corpus pins them).
    const variant = r();
    if (variant < 0.05) job.created_at = job.created_at.replace("T", "t").replace("Z", "z");
    else if (variant < 0.1) job.metadata.cpuCores = String(job.metadata.cpuCores);
    else if (variant < 0.15) {
      const d = new Date(created + 2 * 3_600_000).toISOString().slice(0, 19);
      job.created_at = `${d}+02:00`;
    }
    if (r() < 0.2) {
      switch (BREAKAGES[i % BREAKAGES.length]) {
        case "hostname_underscore":
          job.hostname = "build_01.example.com";
          break;
        case "urn_uuid":
          job.id = `urn:uuid:${job.id}`;
          break;
        case "feb_30":
          job.created_at = "2024-02-30T10:00:00Z";
          job.updated_at = "2024-03-01T10:00:00Z";
          if (terminal) job.completed_at = job.updated_at;
          break;
        case "leap_second":
          job.updated_at = `${job.updated_at.slice(0, 11)}23:59:60Z`;
          break;
        case "offset_without_colon":
          job.updated_at = `${job.updated_at.slice(0, 19)}+0000`;
          break;
        case "terminal_without_completed_at":
          job.status = "SUCCEEDED";
          job.error_message = null;
          job.completed_at = null;
          break;
        case "cpu_cores_zero":
          job.metadata.cpuCores = 0;
          break;
        case "unknown_status":
          job.status = "DONE";
          break;
        case "bad_email":
          job.user_email = "dev at example.com";
          break;
        case "project_name_too_long":
          job.project_name = "p".repeat(256);
          break;
        case "unknown_field":
          job.projectName = job.project_name;
          break;
        case "bad_digest":
          job.metadata.dockerImageId = `sha256:${hex(63)}`;
          break;
      }
    }
    out.push(JSON.stringify(job));
  }
  return out;
}
