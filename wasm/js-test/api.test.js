// The package's exports from JS, the package itself (npm pack), and a cross-check of the WASM
// build against the native one (`jobsctl validate`) on generated jobs, messages included.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as jobs from "../pkg/node.js";
import { generate } from "../bench/jobs.js";

const PKG = fileURLToPath(new URL("../pkg/", import.meta.url));
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const JOB = {
  id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
  user_id: "0190a1b2-0000-7000-8000-000000000001",
  status: "RUNNING",
  type: "BUILD",
  project_name: "api-server",
  hostname: "Build-01.Example.COM",
  metadata: { cpuCores: "4", team: "core" },
  created_at: "2024-05-01T12:00:00Z",
  updated_at: "2024-05-01T12:00:00Z",
  version: 2,
};

test("lists come from the core", () => {
  assert.deepEqual(jobs.jobStatuses(), ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]);
  assert.deepEqual(jobs.jobTypes(), ["BUILD", "TEST", "DEPLOY", "SCAN"]);
  assert.ok(jobs.errorCodes().includes("invalid_hostname"));
  assert.equal(new Set(jobs.errorCodes()).size, jobs.errorCodes().length);
  assert.ok(jobs.canonicalArches().includes("x86_64"));
});

test("the state machine", () => {
  const allowed = new Set(["QUEUED>RUNNING", "QUEUED>CANCELLED", "RUNNING>SUCCEEDED", "RUNNING>FAILED", "RUNNING>CANCELLED"]);
  for (const from of jobs.jobStatuses()) {
    for (const to of jobs.jobStatuses()) {
      assert.equal(jobs.canTransition(from, to), allowed.has(`${from}>${to}`), `${from} -> ${to}`);
    }
  }
  assert.equal(jobs.canTransition("running", "FAILED"), false);
  assert.deepEqual(jobs.nextStates("QUEUED"), ["RUNNING", "CANCELLED"]);
  assert.deepEqual(jobs.nextStates("FAILED"), []);
  assert.deepEqual(jobs.nextStates("nope"), []);
});

test("newJobId: UUIDv7, distinct, ordered by time", async () => {
  const a = jobs.newJobId();
  await new Promise((r) => setTimeout(r, 3));
  const ids = Array.from({ length: 100 }, () => jobs.newJobId());
  for (const id of [a, ...ids]) assert.match(id, UUID_V7);
  assert.equal(new Set(ids).size, ids.length);
  assert.ok(ids.every((id) => id > a), "later ids sort after earlier ones");
  const ms = parseInt(a.replaceAll("-", "").slice(0, 12), 16);
  assert.ok(Math.abs(ms - Date.now()) < 60_000, "timestamp from Date.now()");
});

test("validateJob normalises and reports every problem", () => {
  const ok = jobs.validateJob(JSON.stringify(JOB), "record");
  assert.equal(ok.ok, true);
  assert.equal(ok.job.hostname, "build-01.example.com");
  assert.deepEqual(ok.job.metadata, { cpuCores: 4, team: "core" });
  assert.equal(ok.job.created_at, "2024-05-01T12:00:00.000000Z");
  const bad = jobs.validateJob(JSON.stringify({ ...JOB, hostname: "bad_host", status: "DONE" }), "record");
  assert.equal(bad.ok, false);
  assert.deepEqual(bad.errors.map((e) => [e.path, e.code]).sort(), [["hostname", "invalid_hostname"], ["status", "unknown_status"]]);
  assert.throws(() => jobs.validateJob("{}", "update"), TypeError);
  assert.throws(() => jobs.validateJob("{}", 5), TypeError);
});

test("a json that is not a string is a TypeError, however often, and the module lives on", () => {
  // Each of these once threw inside the module, past wasm-bindgen's epilogues; a few thousand
  // of them broke it for good ("table index is out of bounds").
  for (let i = 0; i < 20_000; i++) {
    for (const json of [123, undefined, null, {}, ["{}"], Symbol("x")]) {
      assert.throws(() => jobs.validateJob(json, "record"), { name: "TypeError", message: "json must be a string" });
    }
  }
  assert.equal(jobs.validateJob(JSON.stringify(JOB), "record").ok, true);
});

test("patch uses Date.now() unless given a clock", () => {
  const before = Date.now();
  const r = jobs.validateJob(JSON.stringify({ current: JOB, patch: { status: "SUCCEEDED" } }), "patch");
  assert.equal(r.ok, true, JSON.stringify(r.errors));
  const done = Date.parse(r.job.completed_at);
  assert.ok(done >= before - 1 && done <= Date.now() + 1, r.job.completed_at);
  assert.equal(r.job.version, 3);
  const pinned = jobs.validateJob(JSON.stringify({ current: JOB, patch: { status: "FAILED" } }), "patch", Date.UTC(2024, 5, 1));
  assert.equal(pinned.job.completed_at, "2024-06-01T00:00:00.000000Z");
});

test("an exception's throwing message getter is an issue, however often, and the module lives on", () => {
  const evil = {
    toJSON() {
      const e = new Error("x");
      Object.defineProperty(e, "message", { get() { throw new Error("gotcha"); } });
      throw e;
    },
  };
  for (let i = 0; i < 20_000; i++) {
    assert.deepEqual(jobs.validateJobObject(evil, "record").errors.map((e) => e.code), ["invalid_json"]);
  }
  assert.equal(jobs.shapeMetadata({ a: 1 }).ok, true);
});

test("every export, any argument: an answer or a JS error, never a trap, and the module lives on", () => {
  const throwing = new Proxy({}, { get() { throw new Error("get"); }, ownKeys() { throw new Error("keys"); } });
  const deep = [];
  for (let d = 0, at = deep; d < 100_000; d++) at = at[0] = [];
  const values = [
    undefined, null, true, 0, -0, NaN, 1e308, 12345678901234567890n, "", "{", "x".repeat(100_000), "\ud800",
    Symbol("s"), {}, [], () => 1, new Date(0), new Map(), throwing, deep, Object.create(null),
    { toJSON() { throw 7; } }, { toJSON: () => undefined }, "RUNNING", "record", "patch",
  ];
  const calls = [
    (v) => jobs.validateJob(v, "record"),
    (v) => jobs.validateJob("{}", v),
    (v) => jobs.validateJob(JSON.stringify({ current: JOB, patch: {} }), "patch", v),
    (v) => jobs.validateJobObject(v, "create"),
    (v) => jobs.validateJobObject({}, v, v),
    (v) => jobs.shapeMetadata(v),
    (v) => jobs.canTransition(v, v),
    (v) => jobs.nextStates(v),
    (v) => jobs.toSearchDocument(v),
  ];
  // ~7,000 calls, most of them errors: the unwinding bug broke the module within ~4,000.
  for (let round = 0; round < 30; round++) {
    for (const call of calls) {
      for (const v of values) {
        try {
          call(v);
        } catch (e) {
          // Errors of the arguments (TypeError, a throwing getter's own Error, RangeError for a
          // BigInt turned into a number), never a RuntimeError: that would be a trap inside.
          if (e instanceof WebAssembly.RuntimeError) assert.fail(`${e} from ${call} (value #${values.indexOf(v)})`);
        }
      }
    }
  }
  assert.equal(jobs.validateJob(JSON.stringify(JOB), "create").ok, false);
  assert.equal(jobs.validateJobObject({ type: "BUILD", project_name: "p" }, "create").ok, true);
  assert.equal(jobs.nextStates("QUEUED").length > 0, true);
});

test("validateJobObject is validateJob(JSON.stringify(x))", () => {
  const obj = { ...JOB, extra: undefined, metadata: { ...JOB.metadata, big: 2 ** 60 } };
  assert.deepEqual(jobs.validateJobObject(obj, "record"), jobs.validateJob(JSON.stringify(obj), "record"));
  const cyclic = { ...JOB };
  cyclic.self = cyclic;
  const r = jobs.validateJobObject(cyclic, "record");
  assert.equal(r.ok, false);
  assert.deepEqual(r.errors.map((e) => e.code), ["invalid_json"]);
  assert.deepEqual(jobs.validateJobObject(undefined, "create").errors.map((e) => e.code), ["invalid_type"]);
  assert.deepEqual(jobs.validateJobObject(10n, "create").errors.map((e) => e.code), ["invalid_json"]);
});

test("values cross intact: unicode, __proto__ keys, big and float numbers", () => {
  // JSON.parse makes "__proto__" an own key (an object literal would set the prototype).
  const metadata = { ...JSON.parse('{"__proto__": {"x": 1}}'), "ключ": "значение 🚀", "a\u2028b": "é", n: [1.5, -0, 1e300, 2 ** 53 + 2], deep: { t: true, f: false, z: null } };
  const text = JSON.stringify({ ...JOB, project_name: "проект 🚀", metadata });
  const r = jobs.validateJob(text, "record");
  assert.equal(r.ok, true, JSON.stringify(r.errors));
  const want = JSON.parse(text).metadata;
  assert.deepEqual(r.job.metadata, want);
  assert.equal(Object.getPrototypeOf(r.job.metadata), Object.prototype, "__proto__ stays an own key");
  assert.ok(Object.hasOwn(r.job.metadata, "__proto__"));
  assert.deepEqual(r.job.metadata.__proto__, { x: 1 });
  assert.equal(r.job.project_name, "проект 🚀");
  // An escaped lone surrogate is not text: the core (serde_json) refuses it where JSON.parse would not.
  assert.deepEqual(jobs.validateJob(`{"project_name": "\\ud800", "type": "BUILD"}`, "create").errors.map((e) => e.code), ["invalid_json"]);
  // A long input (past the reused buffer) and a lone surrogate in the input text itself.
  const long = jobs.validateJob(JSON.stringify({ ...JOB, metadata: { blob: "x".repeat(20_000) } }), "record");
  assert.equal(long.job.metadata.blob.length, 20_000);
  assert.equal(jobs.validateJob(`{"type":"BUILD","project_name":"a\ud800b"}`, "create").job.project_name, "a\ufffdb");
});

test("numbers read as JSON.parse reads them: the nearest double, every digit", () => {
  // Random doubles over every exponent, and Math.random()-like fractions (a tenth of those
  // changed in the last bit before the reader rounded correctly), written as JavaScript writes
  // them, with 21 significant digits, and long decimals as PostgreSQL's numeric gives them.
  let x = 0x9e3779b97f4a7c15n;
  const next = () => {
    x ^= (x << 13n) & 0xffffffffffffffffn;
    x ^= x >> 7n;
    x ^= (x << 17n) & 0xffffffffffffffffn;
    return x;
  };
  const view = new DataView(new ArrayBuffer(8));
  const texts = [];
  for (let i = 0; i < 1500; i++) {
    view.setBigUint64(0, next() & 0x7fffffffffffffffn);
    const bits = view.getFloat64(0);
    const fraction = Number(next() >> 11n) / 2 ** 53 * 1000;
    for (const f of [bits, fraction]) {
      if (!Number.isFinite(f)) continue;
      texts.push(JSON.stringify(f), f.toPrecision(21));
      if (f >= 1 && f < 1e300) texts.push(BigInt(Math.round(f)).toString());
    }
  }
  texts.push("0." + "0".repeat(300) + "17976931348623157", "4.9406564584124654e-324", "2.4703282292062328e-324", "1.7976931348623158e308");
  for (let i = 0; i < texts.length; i += 500) {
    const chunk = texts.slice(i, i + 500);
    const text = `{"type":"BUILD","project_name":"p","metadata":{"n":[${chunk.join(",")}]}}`;
    const r = jobs.validateJob(text, "create");
    assert.equal(r.ok, true, JSON.stringify(r.errors));
    const want = JSON.parse(text).metadata.n;
    r.job.metadata.n.forEach((got, j) => assert.ok(Object.is(got, want[j]), `${chunk[j]}: ${got} != ${want[j]}`));
  }
});

test("shapeMetadata", () => {
  assert.deepEqual(jobs.shapeMetadata({ cpuCores: "8", memoryGb: 16.0, k: [1] }), { ok: true, metadata: { cpuCores: 8, memoryGb: 16, k: [1] } });
  const bad = jobs.shapeMetadata({ cpuCores: 0, dockerImageId: "sha256:xyz" });
  assert.deepEqual(bad.errors.map((e) => [e.path, e.code]).sort(), [["metadata.cpuCores", "out_of_range"], ["metadata.dockerImageId", "invalid_digest"]]);
  assert.deepEqual(jobs.shapeMetadata([1]).errors.map((e) => e.code), ["metadata_not_object"]);
});

test("toSearchDocument", () => {
  const job = jobs.validateJob(JSON.stringify(JOB), "record").job;
  const doc = jobs.toSearchDocument(job);
  assert.equal(doc.id, JOB.id);
  assert.equal(doc.created_at_us, Date.parse(JOB.created_at) * 1000);
  assert.equal(doc.completed_at_us, null);
  assert.deepEqual(doc.metadata, { cpuCores: 4, team: "core" });
  assert.deepEqual(doc.known_metadata, { cpuCores: 4 });
  assert.throws(() => jobs.toSearchDocument({ ...job, status: "DONE" }), (e) => e.errors[0].code === "unknown_status");
});

test("npm pack packs the package with every file it needs", () => {
  const r = spawnSync("npm", ["pack", "--dry-run", "--json"], { cwd: PKG, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const [packed] = JSON.parse(r.stdout);
  const files = packed.files.map((f) => f.path).sort();
  for (const f of ["package.json", "index.js", "index.d.ts", "node.js", "jobs_wasm.js", "jobs_wasm.d.ts", "jobs_wasm_bg.wasm", "README.md"]) {
    assert.ok(files.includes(f), `${f} missing from ${files}`);
  }
  assert.ok(files.some((f) => f.startsWith("snippets/") && f.endsWith("tape.js")), "the tape decoder snippet");
  const pkg = JSON.parse(readFileSync(new URL("../pkg/package.json", import.meta.url), "utf8"));
  assert.notEqual(pkg.version, "0.0.0");
  assert.equal(pkg.type, "module");
});

// The native build's verdicts on the same jobs, through the real CLI (built by `cargo test`).
const jobsctl = `${process.env.CARGO_TARGET_DIR ?? `${process.env.HOME}/.cache/jobs/target`}/debug/jobsctl`;
if (!existsSync(jobsctl) && process.env.CI === "true") throw new Error(`no ${jobsctl} under CI (cargo build -p jobs-lambda)`);
test("same verdicts, codes, messages and outputs as the native build on 3,000 generated jobs", { skip: !existsSync(jobsctl) && `no ${jobsctl} (cargo build -p jobs-lambda)` }, () => {
  const corpus = generate(3000, 7);
  for (const kind of ["record", "create"]) {
    const r = spawnSync(jobsctl, ["validate", "--kind", kind], { input: corpus.join("\n") + "\n", encoding: "utf8", maxBuffer: 1 << 28 });
    assert.ok(r.status === 0 || r.status === 1, r.stderr);
    const native = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(native.length, corpus.length);
    corpus.forEach((text, i) => {
      const { line, ...want } = native[i];
      assert.equal(line, i + 1);
      assert.deepEqual(jobs.validateJob(text, kind), want, `${kind} line ${i + 1}`);
    });
  }
});
