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

/** A token for a fresh user, minted by `jobsctl token`. */
function mint(user) {
  const minted = spawnSync(JOBSCTL, ["token", "--user", user, "--email", "e2e@example.com"], { env, encoding: "utf8" });
  assert.equal(minted.status, 0, minted.stderr);
  return minted.stdout.trim();
}

test("invalid hostname -> error beside the field; fixed -> created -> listed", { skip, timeout: 90_000 }, async () => {
  const user = randomUUID();
  const token = mint(user);
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  let posts = 0;
  page.on("request", (r) => {
    if (r.method() === "POST" && new URL(r.url()).pathname === "/v1/jobs") posts++;
  });
  await page.goto(`${base}/?token=${encodeURIComponent(token)}`);
  await page.locator("#type option").first().waitFor({ state: "attached" });
  assert.ok(!page.url().includes("token="), `the token is dropped from the address: ${page.url()}`);

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
  assert.equal(posts, 0, "an invalid form sends nothing");

  await hostname.fill("Build-07.Example.com");
  assert.equal(await hostError.textContent(), "");
  assert.equal(await hostname.getAttribute("aria-invalid"), "false");
  await form.getByLabel("Architecture").fill("amd64");
  // The metadata goes as typed: an integer past 2^53 is not rounded on the way.
  await form.getByLabel("Metadata (JSON)").fill('{"cpuCores": 4, "seed": 9007199254740993}');
  // Keyboard only: Enter in a field submits the form; pressed twice while the first request
  // is on its way, it still makes one job.
  await page.route("**/v1/jobs", async (route) => {
    if (route.request().method() === "POST") await new Promise((r) => setTimeout(r, 400));
    await route.continue();
  });
  await form.getByLabel("Architecture").press("Enter");
  await form.getByLabel("Architecture").press("Enter");
  const created = page.locator("#submit-status");
  await created.getByText(/Created job/).waitFor({ timeout: 10_000 });
  await page.unroute("**/v1/jobs");
  assert.equal(posts, 1, "one create for two presses");
  const id = await created.getAttribute("data-job-id");
  assert.match(id, /^[0-9a-f-]{36}$/);
  const stored = await (await fetch(`${base}/v1/jobs/${id}`, { headers: { Authorization: `Bearer ${token}` } })).text();
  assert.match(stored, /"seed":9007199254740993[,}]/, stored);

  // Another job of the same user, in another project: the project filter leaves it out.
  const other = await fetch(`${base}/v1/jobs`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify({ type: "BUILD", project_name: `${project}-other` }),
  });
  assert.equal(other.status, 201);

  // The list: search by project (pressing Search) until the job shows up, synced when an
  // engine is configured (`jobsctl serve` writes through and runs the sync).
  const want = process.env.SEARCH_URL ? "synced" : "pending";
  await page.locator("#f-project").fill(project);
  const row = page.locator(`#results tr[data-job-id="${id}"]`);
  const status = page.locator("#search-status");
  const deadline = Date.now() + 15_000;
  for (;;) {
    await page.getByRole("button", { name: "Search" }).click();
    await status.getByText(/job\(s\) from|failed/).waitFor({ timeout: 10_000 });
    if ((await row.count()) && (await row.locator("td").nth(6).getAttribute("data-state")) === want) break;
    assert.ok(Date.now() < deadline, `job ${id} not listed as ${want} within 15 s: ${await status.textContent()}`);
    await page.waitForTimeout(500);
  }
  const cells = await row.locator("td").allTextContents();
  assert.deepEqual(cells.slice(0, 5), [project, "TEST", "QUEUED", "build-07.example.com", "x86_64"]);
  assert.equal(cells[6], want === "synced" ? "synced (v0)" : "pending");
  assert.equal(await page.locator("#results tr").count(), 1, "the other project's job is filtered out");
  // Either source (the engine may miss its deadline on a loaded machine); the state is Postgres's.
  const source = await status.getAttribute("data-source");
  assert.ok(["search", "database"].includes(source), `source ${source}`);

  // A filter the server refuses is marked, and its problem named.
  await page.locator("#f-hostname").fill("bad_host");
  await page.getByRole("button", { name: "Search" }).click();
  await status.getByText(/Search failed \(400\)/).waitFor({ timeout: 10_000 });
  assert.match(await status.textContent(), /hostname: .*\(invalid_hostname\)/);
  assert.equal(await page.locator("#f-hostname").getAttribute("aria-invalid"), "true");
  await page.locator("#f-hostname").fill("");

  // The server's refusals and a lost connection are said, and the button comes back.
  await page.route("**/v1/jobs", (route) =>
    route.request().method() === "POST"
      ? route.fulfill({ status: 503, contentType: "application/json", body: '{"code":"unavailable","message":"database unavailable"}' })
      : route.continue(),
  );
  await form.getByLabel("Architecture").press("Enter");
  await created.getByText("Not created (503): database unavailable").waitFor({ timeout: 5000 });
  await page.unroute("**/v1/jobs");
  await page.route("**/v1/jobs", (route) => (route.request().method() === "POST" ? route.abort() : route.continue()));
  await form.getByLabel("Architecture").press("Enter");
  await created.getByText(/Not created: no answer from the server/).waitFor({ timeout: 5000 });
  await page.unroute("**/v1/jobs");
  assert.equal(await page.getByRole("button", { name: "Create job" }).isDisabled(), false);

  // The server made the job but its answer was lost: sent again as it was, the same id makes
  // no second job (409), and the page says it was created.
  let lost = null;
  let intercepted;
  const seen = new Promise((resolve) => (intercepted = resolve));
  await page.route("**/v1/jobs", async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    lost = JSON.parse(route.request().postData()).id;
    await route.fetch();
    await route.abort();
    intercepted();
  });
  await form.getByLabel("Architecture").press("Enter");
  await seen;
  // (The status said "no answer" already, from the step before: wait for this send's.)
  await page.waitForFunction(() => !document.querySelector("#submit-status").textContent.startsWith("Creating"));
  assert.match(await created.textContent(), /Not created: no answer from the server/);
  await page.unroute("**/v1/jobs");
  assert.match(lost ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-7/, "the page names the job (a UUIDv7)");
  await form.getByLabel("Architecture").press("Enter");
  await created.getByText(/the earlier attempt had reached the server/).waitFor({ timeout: 5000 });
  assert.equal(await created.getAttribute("data-job-id"), lost);
  const made = await fetch(`${base}/v1/jobs/${lost}`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(made.status, 200);
  assert.equal((await made.json()).project_name, project);

  // Under another token the same form is another create: not the earlier id, whose 409 would
  // be another user's job, not a success.
  await page.route("**/v1/jobs", async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    await route.fetch();
    await route.abort();
  });
  await form.getByLabel("Architecture").press("Enter");
  await page.waitForFunction(() => /no answer/.test(document.querySelector("#submit-status").textContent));
  await page.unroute("**/v1/jobs");
  const otherUser = randomUUID();
  await page.locator("#token").fill(mint(otherUser));
  await form.getByLabel("Architecture").press("Enter");
  await page.waitForFunction((id) => document.querySelector("#submit-status").dataset.jobId !== id, lost);
  const theirs = await created.getAttribute("data-job-id");
  assert.match(await created.textContent(), /^Created job [0-9a-f-]{36}\.$/, "a new job, not the earlier attempt");
  assert.notEqual(theirs, lost);
  const owner = await fetch(`${base}/v1/jobs/${theirs}`, { headers: { Authorization: `Bearer ${mint(otherUser)}` } });
  assert.equal(owner.status, 200, "the job is the second user's");
  await page.locator("#token").fill(token);
  lost = theirs;

  // Created from the keyboard on the button itself, the focus stays there. (Back under the
  // first token, this is the resend of its unanswered create: the earlier attempt's job.)
  await page.getByRole("button", { name: "Create job" }).focus();
  await page.keyboard.press("Enter");
  await page.waitForFunction((id) => document.querySelector("#submit-status").dataset.jobId !== id, lost);
  assert.match(await created.textContent(), /^Created job [0-9a-f-]{36} \(the earlier attempt had reached the server\)\.$/);
  assert.equal(await page.evaluate(() => document.activeElement?.id), "submit");

  // JSON that JavaScript reads but the server's reader refuses is the metadata's problem.
  const metadata = form.getByLabel("Metadata (JSON)");
  await metadata.fill('{"x": 1e400}');
  await page.locator("#metadata-error[data-codes=invalid_json]").waitFor({ timeout: 5000 });
  assert.equal(await metadata.getAttribute("aria-invalid"), "true");
  assert.equal(await page.locator("#form-error").textContent(), "");
  await page.getByRole("button", { name: "Create job" }).click();
  assert.equal(await page.evaluate(() => document.activeElement?.id), "metadata");
  await metadata.fill("{}");

  // Pages: one job a page, then the next through the cursor.
  await page.locator("#f-project").fill("");
  await page.locator("#f-q").fill(project);
  await page.locator("#f-limit").fill("1");
  // (Until search has them all: the newest are a refresh away.)
  const until = Date.now() + 15_000;
  for (;;) {
    await page.getByRole("button", { name: "Search" }).click();
    await status.getByText(/job\(s\) from|failed/).waitFor({ timeout: 10_000 });
    if (/^1 job\(s\) from .*\(more available\)/.test(await status.textContent())) break;
    assert.ok(Date.now() < until, `no second page within 15 s: ${await status.textContent()}`);
    await page.waitForTimeout(500);
  }
  const first = await page.locator("#results tr").getAttribute("data-job-id");
  await page.getByRole("button", { name: "Next page" }).click();
  await status.getByText(/page 2/).waitFor({ timeout: 10_000 });
  const second = await page.locator("#results tr").getAttribute("data-job-id");
  assert.ok(first && second && first !== second, `${first} then ${second}`);
  assert.deepEqual(errors, []);
  await page.close();
});

test("without the package the page says so and sends nothing", { skip, timeout: 30_000 }, async () => {
  const page = await browser.newPage();
  await page.route("**/pkg/index.js", (route) => route.fulfill({ status: 404, body: "not found" }));
  await page.goto(`${base}/`);
  const alert = page.getByRole("alert");
  await alert.getByText(/did not load/).waitFor({ timeout: 5000 });
  await page.locator("#email").fill("someone@example.com");
  await page.locator("#email").press("Enter");
  await page.waitForTimeout(300);
  assert.equal(new URL(page.url()).search, "", "no plain form submission (the e-mail in the address)");
  await page.close();
});
