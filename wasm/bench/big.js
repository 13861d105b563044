// Large inputs: `validateJob(text, "create")` of a job whose metadata object has N keys in
// scrambled order (~10 bytes per key), and a patch adding as many to a job's metadata, for
// growing N, and the linear memory afterwards. Time
// should grow linearly with the input; it is what caught the old allocator's quadratic free
// (BENCHMARKS.md "## WASM"). Each size runs once: this is about growth, not ops/s.
// `node bench/big.js [--pkg DIR] [--max 400000]`
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const { values: args } = parseArgs({
  options: {
    pkg: { type: "string", default: new URL("../pkg/", import.meta.url).pathname },
    max: { type: "string", default: "400000" },
  },
});
const dir = resolve(args.pkg);
const m = await import(pathToFileURL(join(dir, "jobs_wasm.js")).href);
const { memory } = m.initSync({ module: readFileSync(join(dir, "jobs_wasm_bg.wasm")) });

const text = (n) => {
  // i * 7919 mod n visits every key once, far from sorted order.
  const keys = Array.from({ length: n }, (_, i) => `"k${((i * 7919) % n).toString(36)}":1`);
  return `{"type":"BUILD","project_name":"p","metadata":{${keys.join(",")}}}`;
};
// A patch adding N scrambled keys to a job whose metadata already holds 3,000 (~30 KB, within
// the limit): the merge of the two objects must not cost a shift per added key.
const current = {
  id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
  workspace_id: null,
  user_id: "0190a1b2-0000-7000-8000-000000000001",
  status: "RUNNING",
  type: "BUILD",
  project_name: "p",
  hostname: null,
  arch: null,
  user_email: null,
  error_message: null,
  metadata: Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`m${i}`, 1])),
  created_at: "2024-05-01T12:00:00Z",
  updated_at: "2024-05-01T12:00:00Z",
  completed_at: null,
  version: 1,
};
const patch = (n) => `{"current":${JSON.stringify(current)},"patch":${text(n).replace(/"type":"BUILD","project_name":"p",/, "")}}`;

const run = (kind, make) => {
  console.log(`${kind}: keys      MB    ms     ms/MB  memory MB  verdict`);
  for (let n = 1000; n <= Number(args.max); n *= 4) {
    const json = make(n);
    const t = performance.now();
    const r = m.validateJob(json, kind);
    const ms = performance.now() - t;
    const mb = json.length / 1e6;
    const verdict = r.ok ? "ok" : r.errors.map((e) => e.code).join(",");
    console.log(
      `${kind.padEnd(6)}  ${String(n).padEnd(9)} ${mb.toFixed(2).padStart(5)} ${ms.toFixed(1).padStart(7)}` +
        ` ${(ms / mb).toFixed(0).padStart(7)}  ${(memory.buffer.byteLength / 1048576).toFixed(1).padStart(9)}  ${verdict}`,
    );
  }
};
console.log(`node ${process.version}; ${dir}`);
run("create", text);
run("patch", patch);
