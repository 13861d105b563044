// Benchmark in one Node process on one corpus: validateJob(string) from the built package vs
// ajv (allErrors, JSON.parse + validate), valibot and zod on the same strings, and JSON.parse
// alone as the floor. `node bench/node.js [--pkg DIR] [--n 10000] [--rounds 8] [--json]`;
// `--prims`: the engine's boundary primitives alone (bench/prims.js).
import { parseArgs } from "node:util";
import { cpus } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { generate } from "./jobs.js";
import { ajvValidator, valibotValidator, zodValidator } from "./schemas.js";
import { contenders, measure, report } from "./run.js";

const { values: args } = parseArgs({
  options: {
    pkg: { type: "string", default: new URL("../pkg/", import.meta.url).pathname },
    n: { type: "string", default: "10000" },
    rounds: { type: "string", default: "8" },
    json: { type: "boolean", default: false },
    prims: { type: "boolean", default: false },
  },
});
const where = `node ${process.version}, ${cpus().length} cpus (${cpus()[0]?.model})`;
if (args.prims) {
  const { prims, table } = await import("./prims.js");
  console.log(table(prims(generate, Number(args.n)), where));
  process.exit(0);
}
const { validateJob } = await import(pathToFileURL(join(resolve(args.pkg), "node.js")).href);
const corpus = generate(Number(args.n));
const libs = { ajv: ajvValidator(), valibot: valibotValidator(), zod: zodValidator() };
const result = measure(contenders(validateJob, libs), corpus, Number(args.rounds));
result.where = where;
console.log(args.json ? JSON.stringify(result) : report(result, result.where));
