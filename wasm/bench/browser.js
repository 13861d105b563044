// The same benchmark inside Chromium (Debian's, driven by playwright-core): one page, one corpus,
// the package loaded from /pkg/ as a browser would, ajv/valibot/zod bundled for the page with
// esbuild (bench only; the demo page has no bundler). `node bench/browser.js [--n] [--rounds] [--json]
// [--base DIR] [--numbers K] [--prims]`: --numbers adds K 17-digit doubles to each job's metadata
// (`withNumbers` in jobs.js); with --base, another built package (served as /base/) runs beside it in
// the same rounds as "base validateJob", for a before/after read within one page; --prims measures
// the engine's boundary primitives alone (bench/prims.js).
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { report } from "./run.js";

const { values: args } = parseArgs({
  options: {
    n: { type: "string", default: "10000" },
    rounds: { type: "string", default: "8" },
    json: { type: "boolean", default: false },
    base: { type: "string" },
    numbers: { type: "string", default: "0" },
    prims: { type: "boolean", default: false },
    chromium: { type: "string", default: process.env.CHROMIUM ?? "/usr/bin/chromium" },
  },
});
const WASM = fileURLToPath(new URL("../", import.meta.url));
const libs = await build({
  entryPoints: [fileURLToPath(new URL("./schemas.js", import.meta.url))],
  bundle: true,
  format: "esm",
  minify: true,
  write: false,
  logLevel: "error",
});
const files = {
  "/": ["text/html", '<!doctype html><meta charset="utf-8"><title>bench</title>'],
  "/bench/libs.js": ["text/javascript", libs.outputFiles[0].text],
};
const types = { js: "text/javascript", wasm: "application/wasm", json: "application/json" };

const server = createServer(async (req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  try {
    if (files[path]) {
      res.writeHead(200, { "content-type": files[path][0] }).end(files[path][1]);
      return;
    }
    if (!/^\/(pkg|bench|base)\/[\w./-]+$/.test(path) || path.includes("..")) throw new Error("no");
    const file = path.startsWith("/base/")
      ? `${args.base?.replace(/\/?$/, "/")}${path.slice("/base/".length)}`
      : `${WASM}${path.slice(1)}`;
    if (path.startsWith("/base/") && !args.base) throw new Error("no");
    const body = await readFile(file);
    res.writeHead(200, { "content-type": types[path.split(".").pop()] ?? "application/octet-stream" }).end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const base = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({ executablePath: args.chromium, headless: true });
try {
  const page = await browser.newPage();
  await page.goto(`${base}/`);
  const where = `Chromium ${browser.version()} (headless, ${args.chromium})`;
  if (args.prims) {
    const rows = await page.evaluate(async (n) => {
      const [{ generate }, { prims }] = await Promise.all([import("/bench/jobs.js"), import("/bench/prims.js")]);
      return prims(generate, n);
    }, Number(args.n));
    const { table } = await import("./prims.js");
    console.log(table(rows, where));
  } else {
    const result = await page.evaluate(
      async ({ n, rounds, withBase, numbers }) => {
        const [{ validateJob }, { generate, withNumbers }, libs, { contenders, measure }] = await Promise.all([
          import("/pkg/index.js"),
          import("/bench/jobs.js"),
          import("/bench/libs.js"),
          import("/bench/run.js"),
        ]);
        const validators = { ajv: libs.ajvValidator(), valibot: libs.valibotValidator(), zod: libs.zodValidator() };
        const all = contenders(validateJob, validators);
        if (withBase) {
          const base = (await import("/base/index.js")).validateJob;
          all["base validateJob"] = (s) => base(s, "record");
        }
        return measure(all, withNumbers(generate(n), numbers), rounds);
      },
      { n: Number(args.n), rounds: Number(args.rounds), withBase: Boolean(args.base), numbers: Number(args.numbers) },
    );
    result.where = where;
    console.log(args.json ? JSON.stringify(result) : report(result, result.where));
  }
} finally {
  await browser.close();
  server.close();
}
