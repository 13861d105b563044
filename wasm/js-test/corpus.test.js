// The conformance corpus (core/tests/data/corpus.ndjson) against the built npm package in Node:
// verdicts, (path, code) sets and outputs must be what the native run checks.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { validateJob, validateJobObject } from "../pkg/node.js";

const CORPUS = new URL("../../core/tests/data/corpus.ndjson", import.meta.url);
/** The clock the corpus was written for (patches that end a job without completed_at use it). */
const NOW = Date.parse("2024-06-01T00:00:00Z");

const cases = readFileSync(CORPUS, "utf8")
  .split("\n")
  .filter((l) => l.trim() !== "")
  .map((l, i) => {
    try {
      return JSON.parse(l);
    } catch (e) {
      throw new Error(`corpus line ${i + 1}: ${e.message}`);
    }
  });

/** Distinct (path, code) pairs, sorted: from `[{path, code}]` results or the corpus's `[[path, code]]`. */
const pairs = (errors) =>
  [...new Set(errors.map((e) => (Array.isArray(e) ? `${e[0]}\u0000${e[1]}` : `${e.path}\u0000${e.code}`)))].sort();

function check(c, r) {
  assert.equal(typeof r, "object");
  assert.equal(Object.getPrototypeOf(r), Object.prototype, "a plain object, not a Map");
  if (c.ok) {
    assert.equal(r.ok, true, `rejected: ${JSON.stringify(r.errors)}`);
    assert.deepEqual(Object.keys(r).sort(), ["job", "ok"]);
    if (c.output !== undefined) assert.deepEqual(r.job, c.output);
  } else {
    assert.equal(r.ok, false, `accepted: ${JSON.stringify(r.job)}`);
    assert.deepEqual(Object.keys(r).sort(), ["errors", "ok"]);
    assert.deepEqual(pairs(r.errors), pairs(c.errors));
    for (const e of r.errors) {
      assert.deepEqual(Object.keys(e).sort(), ["code", "message", "path"]);
      assert.ok(e.message.length > 0 && !e.message.endsWith("."), `message ${JSON.stringify(e.message)}`);
    }
  }
}

test("the corpus is there and covers every kind", () => {
  assert.ok(cases.length >= 80, `${cases.length} cases`);
  assert.deepEqual([...new Set(cases.map((c) => c.kind))].sort(), ["create", "patch", "record"]);
});

for (const c of cases) {
  test(`validateJob: ${c.kind}: ${c.name}`, () => {
    const text = c.raw ?? JSON.stringify(c.input);
    check(c, validateJob(text, c.kind, NOW));
  });
}

// The object entry point is JSON.stringify + validateJob: same verdicts for every case that is a
// JSON value (raw cases are text that no JS value stringifies to).
for (const c of cases.filter((c) => c.raw === undefined)) {
  test(`validateJobObject: ${c.kind}: ${c.name}`, () => {
    check(c, validateJobObject(c.input, c.kind, NOW));
  });
}
