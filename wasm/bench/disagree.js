// Where ajv, valibot and zod (bench/schemas.js) disagree with the core on the corpus's record
// cases and on the format cases the corpus pins (urn:uuid, 2024-02-30, 23:59:60, lowercase t/z,
// +0200). Prints a Markdown table of the disagreements; the core's verdict is the corpus's.
// Then the same on the race's generated corpus (bench/jobs.js), with the built package
// (wasm/pkg) as the core: how far the contenders' verdicts are from ours where they are timed.
import { readFileSync } from "node:fs";
import { generate } from "./jobs.js";
import { ajvValidator, valibotValidator, zodValidator } from "./schemas.js";

const libs = { ajv: ajvValidator(), valibot: valibotValidator(), zod: zodValidator() };
const BASE = {
  id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
  user_id: "0190a1b2-0000-7000-8000-000000000001",
  status: "SUCCEEDED",
  type: "BUILD",
  project_name: "api-server",
  created_at: "2024-05-01T12:00:00Z",
  updated_at: "2024-05-01T12:05:00Z",
  completed_at: "2024-05-01T12:05:00Z",
  version: 3,
};
// [name, change, what the core says]
const FORMATS = [
  ["id urn:uuid:...", { id: `urn:uuid:${BASE.id}` }, false],
  ["id uppercase hex", { id: BASE.id.toUpperCase() }, true],
  ["created_at 2024-02-30", { created_at: "2024-02-30T12:00:00Z" }, false],
  ["updated_at 23:59:60 (leap second)", { created_at: "2024-06-30T23:59:00Z", updated_at: "2024-06-30T23:59:60Z", completed_at: "2024-06-30T23:59:59Z" }, false],
  ["created_at lowercase t and z", { created_at: "2024-05-01t12:00:00z" }, true],
  ["created_at +02:00", { created_at: "2024-05-01T14:00:00+02:00" }, true],
  ["created_at +0200 (no colon)", { created_at: "2024-05-01T14:00:00+0200" }, false],
  ["created_at without offset", { created_at: "2024-05-01T12:00:00" }, false],
  ["created_at with a space", { created_at: "2024-05-01 12:00:00Z" }, false],
  ["created_at 9 fraction digits", { created_at: "2024-05-01T12:00:00.123456789Z" }, true],
  ["hostname with underscore", { hostname: "build_01.example.com" }, false],
  ["user_email quoted local part", { user_email: '"quoted"@example.com' }, false],
  ["user_email single-label domain", { user_email: "dev@localhost" }, true],
  ["completed_at before created_at", { completed_at: "2024-04-01T00:00:00Z" }, false],
];

const cases = readFileSync(new URL("../../core/tests/data/corpus.ndjson", import.meta.url), "utf8")
  .split("\n")
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l))
  .filter((c) => c.kind === "record")
  .map((c) => [c.name, c.raw ?? JSON.stringify(c.input), c.ok]);
for (const [name, change, ok] of FORMATS) cases.push([`format: ${name}`, JSON.stringify({ ...BASE, ...change }), ok]);

const verdict = (ok) => (ok ? "accepts" : "rejects");
const rows = [];
const counts = Object.fromEntries(Object.keys(libs).map((k) => [k, 0]));
for (const [name, text, ok] of cases) {
  const got = Object.fromEntries(Object.entries(libs).map(([k, f]) => [k, f(text).ok]));
  const differ = Object.entries(got).filter(([, v]) => v !== ok);
  for (const [k] of differ) counts[k]++;
  if (differ.length) rows.push(`| ${name} | ${verdict(ok)} | ${Object.values(got).map((v) => (v === ok ? "same" : `**${verdict(v)}**`)).join(" | ")} |`);
}
console.log(`${cases.length} record cases (corpus + formats); disagreements with the core: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(", ")}`);
console.log("\n| case | core | ajv | valibot | zod |\n| --- | --- | --- | --- | --- |");
console.log(rows.join("\n"));

const { validateJob } = await import(new URL("../pkg/node.js", import.meta.url).href);
const race = generate();
const ours = race.map((t) => validateJob(t, "record").ok);
console.log(`\nThe race corpus (${race.length} jobs): the core accepts ${ours.filter(Boolean).length}.`);
console.log("\n| | accepts | agrees with the core | accepts what the core rejects | rejects what the core accepts |\n| --- | ---: | ---: | ---: | ---: |");
for (const [k, f] of Object.entries(libs)) {
  const got = race.map((t) => f(t).ok);
  const more = got.filter((v, i) => v && !ours[i]).length;
  const fewer = got.filter((v, i) => !v && ours[i]).length;
  const agree = (100 * (race.length - more - fewer)) / race.length;
  console.log(`| ${k} | ${got.filter(Boolean).length} | ${agree.toFixed(2)}% | ${more} | ${fewer} |`);
}
