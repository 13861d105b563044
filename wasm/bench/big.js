// Large inputs: `validateJob(text, "create")` of a job whose metadata object has N keys in
// scrambled order (~10 bytes per key), for growing N, and the linear memory afterwards. Time
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
console.log(`node ${process.version}; ${dir}`);
console.log("keys      MB    ms     ms/MB  memory MB  verdict");
for (let n = 1000; n <= Number(args.max); n *= 4) {
  const json = text(n);
  const t = performance.now();
  const r = m.validateJob(json, "create");
  const ms = performance.now() - t;
  const mb = json.length / 1e6;
  const verdict = r.ok ? "ok" : r.errors.map((e) => e.code).join(",");
  console.log(
    `${String(n).padEnd(9)} ${mb.toFixed(2).padStart(5)} ${ms.toFixed(1).padStart(7)} ${(ms / mb).toFixed(0).padStart(7)}` +
      `  ${(memory.buffer.byteLength / 1048576).toFixed(1).padStart(9)}  ${verdict}`,
  );
}
