// The demo page in Debian's Chromium driven by playwright-core, against a real `jobsctl serve`
// (started here on a free port, against DATABASE_URL / SEARCH_URL from the environment): an
// invalid hostname shows its error beside the field; fixed, the job is created through the API
// and shows up in the job list (after the sync, when search answers).
//
// Needs: $CARGO_TARGET_DIR/debug/jobsctl (with `serve`), wasm/pkg (./dev wasm), DATABASE_URL,
// /usr/bin/chromium. Locally a missing piece skips with the reason; under CI=true it fails.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { randomBytes, randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const TARGET = process.env.CARGO_TARGET_DIR ?? `${process.env.HOME}/.cache/jobs/target`;
const JOBSCTL = `${TARGET}/debug/jobsctl`;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

function missing() {
  if (!existsSync(JOBSCTL)) return `no ${JOBSCTL} (cargo build -p jobs-lambda --bin jobsctl)`;
  const help = spawnSync(JOBSCTL, ["serve", "--help"], { encoding: "utf8" });
  if (help.status !== 0) return "this jobsctl has no `serve` yet";
  if (!existsSync(`${ROOT}wasm/pkg/index.js`)) return "no wasm/pkg (./dev wasm)";
  if (!process.env.DATABASE_URL) return "DATABASE_URL is not set (./dev services start; eval $(./dev services env))";
  if (!existsSync(CHROMIUM)) return `no ${CHROMIUM} (apt-get install chromium)`;
  return null;
}

const why = missing();
if (why && process.env.CI === "true") throw new Error(`page test cannot run under CI: ${why}`);
const skip = why ? `skipped: ${why}` : false;

const secret = randomBytes(24).toString("hex");
const env = { ...process.env, JOBS_JWT_SECRET: secret, RUST_LOG: process.env.RUST_LOG ?? "warn" };
let server;
let base;
let browser;

before(async () => {
  if (skip) return;
  const migrate = spawnSync(JOBSCTL, ["migrate"], { env, encoding: "utf8" });
  assert.equal(migrate.status, 0, `jobsctl migrate: ${migrate.stderr}`);
  server = spawn(JOBSCTL, ["serve", "--addr", "127.0.0.1:0", "--web-dir", `${ROOT}wasm/web`, "--pkg-dir", `${ROOT}wasm/pkg`], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`jobsctl serve did not start in 30 s:\n${log}`)), 30_000);
    const read = (chunk) => {
      log += chunk;
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    server.stdout.on("data", read);
    server.stderr.on("data", read);
    server.on("exit", (code) => reject(new Error(`jobsctl serve exited (${code}):\n${log}`)));
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    server.kill("SIGINT");
    await new Promise((r) => {
      const t = setTimeout(() => {
        server.kill("SIGKILL");
        r();
      }, 5000);
      server.on("exit", () => {
        clearTimeout(t);
        r();
      });
    });
  }
});

test("invalid hostname -> error beside the field; fixed -> created -> listed", { skip, timeout: 90_000 }, async () => {
  const user = randomUUID();
  const minted = spawnSync(JOBSCTL, ["token", "--user", user, "--email", "e2e@example.com"], { env, encoding: "utf8" });
  assert.equal(minted.status, 0, minted.stderr);
  const token = minted.stdout.trim();
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${base}/?token=${encodeURIComponent(token)}`);

  const project = `e2e-${user.slice(0, 8)}`;
  const form = page.getByRole("group", { name: "New job" });
  await form.getByLabel("Project").fill(project);
  await form.getByLabel("Type").selectOption("TEST");
  const hostname = form.getByLabel("Hostname");
  await hostname.pressSequentially("bad_host.example.com");
  // The error is beside the field and tied to it.
  const hostError = page.locator("#hostname-error");
  await assert.doesNotReject(hostError.getByText(/dot-separated labels/).waitFor({ timeout: 5000 }));
  assert.equal(await hostname.getAttribute("aria-invalid"), "true");
  assert.equal(await hostname.getAttribute("aria-describedby"), "hostname-error");
  assert.equal(await hostError.getAttribute("data-codes"), "invalid_hostname");
  // Submitting an invalid form sends nothing and moves focus to the field.
  await page.getByRole("button", { name: "Create job" }).click();
  assert.equal(await page.evaluate(() => document.activeElement?.id), "hostname");

  await hostname.fill("Build-07.Example.com");
  assert.equal(await hostError.textContent(), "");
  assert.equal(await hostname.getAttribute("aria-invalid"), "false");
  await form.getByLabel("Architecture").fill("amd64");
  // Keyboard only: Enter in a field submits the form.
  await form.getByLabel("Architecture").press("Enter");
  const created = page.locator("#submit-status");
  await created.getByText(/Created job/).waitFor({ timeout: 10_000 });
  const id = await created.getAttribute("data-job-id");
  assert.match(id, /^[0-9a-f-]{36}$/);

  // The list: search by project until the job shows up (the sync may take a moment).
  await page.locator("#f-project").fill(project);
  const row = page.locator(`#results tr[data-job-id="${id}"]`);
  const deadline = Date.now() + 15_000;
  while (!(await row.count())) {
    assert.ok(Date.now() < deadline, `job ${id} not listed within 15 s: ${await page.locator("#search-status").textContent()}`);
    await page.getByRole("button", { name: "Search" }).click();
    await page.waitForTimeout(500);
  }
  const cells = await row.locator("td").allTextContents();
  assert.deepEqual(cells.slice(0, 5), [project, "TEST", "QUEUED", "build-07.example.com", "x86_64"]);
  const source = await page.locator("#search-status").getAttribute("data-source");
  assert.ok(["search", "database"].includes(source), `source ${source}`);
  assert.deepEqual(errors, []);
  await page.close();
});
