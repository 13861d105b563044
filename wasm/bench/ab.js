// A/B of two built packages in one Node process (the machine is noisy; ratios within one
// process are what to read): validateJob(string, "record") of `--base` and of `--pkg` against
// ajv (allErrors) and JSON.parse on the same corpus, rounds interleaved with the order reversed
// every other round, medians. Also checks that both packages give the same results.
// `--numbers K` adds K 17-digit doubles to each job's metadata (`withNumbers` in jobs.js).
// `node bench/ab.js --base DIR [--pkg DIR] [--n 10000] [--rounds 25] [--numbers K]`
import { parseArgs } from "node:util";
import { isDeepStrictEqual } from "node:util";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { generate, withNumbers } from "./jobs.js";
import { ajvValidator } from "./schemas.js";

const { values: args } = parseArgs({
  options: {
    base: { type: "string" },
    pkg: { type: "string", default: new URL("../pkg/", import.meta.url).pathname },
    n: { type: "string", default: "10000" },
    rounds: { type: "string", default: "25" },
    numbers: { type: "string", default: "0" },
  },
});
if (!args.base) throw new Error("usage: node bench/ab.js --base DIR [--pkg DIR] [--n 10000] [--rounds 25]");
// Folders as given on the command line, relative to the working directory or absolute.
const load = async (dir) => (await import(pathToFileURL(join(resolve(dir), "node.js")).href)).validateJob;
const base = await load(args.base);
const pkg = await load(args.pkg);
const corpus = withNumbers(generate(Number(args.n)), Number(args.numbers));
for (const s of corpus) {
  if (!isDeepStrictEqual(base(s, "record"), pkg(s, "record"))) throw new Error(`the packages disagree on ${s}`);
}
const contenders = {
  "JSON.parse (floor)": (s) => JSON.parse(s),
  "ajv (allErrors)": ajvValidator(),
  "base validateJob": (s) => base(s, "record"),
  "pkg validateJob": (s) => pkg(s, "record"),
};
const pass = (f) => {
  let sink = 0;
  const t = performance.now();
  for (let i = 0; i < corpus.length; i++) if (f(corpus[i])) sink++;
  if (sink !== corpus.length) throw new Error("a contender returned nothing");
  return corpus.length / ((performance.now() - t) / 1000);
};
const names = Object.keys(contenders);
for (const f of Object.values(contenders)) for (let w = 0; w < 3; w++) pass(f);
const samples = Object.fromEntries(names.map((k) => [k, []]));
for (let r = 0; r < Number(args.rounds); r++) {
  for (const k of r % 2 ? [...names].reverse() : names) samples[k].push(pass(contenders[k]));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ops = Object.fromEntries(names.map((k) => [k, median(samples[k])]));
console.log(`node ${process.version}; ${corpus.length} jobs (${args.numbers} extra numbers each); median of ${args.rounds} rounds (order reversed every other)`);
for (const k of names) console.log(`  ${k.padEnd(20)} ${String(Math.round(ops[k])).padStart(9)} ops/s`);
const ajv = ops["ajv (allErrors)"];
console.log(`base / ajv = ${(ops["base validateJob"] / ajv).toFixed(2)}x, pkg / ajv = ${(ops["pkg validateJob"] / ajv).toFixed(2)}x, pkg / base = ${(ops["pkg validateJob"] / ops["base validateJob"]).toFixed(3)}x`);
