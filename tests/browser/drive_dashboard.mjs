// Drives the dashboard in headless Chromium (Debian's, through playwright-core) and
// prints what it saw as JSON on stdout; the Python test compares that with the REST API.
// It asserts nothing itself. Input (JSON on stdin): base, auth, wrongAuth, chromium,
// operatorAuth (the system namespace's), profile (a fresh --user-data-dir), shots
// (directory for screenshots), errorStatus.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const input = JSON.parse(readFileSync(0, "utf8"));
const { chromium } = require(input.playwright);

const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run",
];
const seen = { requests: [], failed: [], console: [] };
const shot = async (page, name, fullPage = true) => {
  const file = path.join(input.shots, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  return file;
};

const context = await chromium.launchPersistentContext(input.profile, {
  executablePath: input.chromium,
  headless: true,
  args: FLAGS,
  viewport: { width: 1280, height: 900 },
});
try {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(20000);
  page.on("request", (r) => seen.requests.push(r.url()));
  page.on("response", (r) => { if (r.status() >= 400) seen.failed.push([r.status(), r.request().method(), r.url()]); });
  // Failed loads are in `failed` already; the console then keeps script errors only.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) seen.console.push(m.text());
  });
  page.on("pageerror", (e) => seen.console.push(String(e)));
  const out = { shots: {} };

  // A wrong key is refused.
  await page.goto(input.base + "/dashboard");
  await page.fill("#auth", input.wrongAuth);
  await Promise.all([page.waitForLoadState("load"), page.click("#signin button")]);
  out.wrong = {
    error: await page.textContent("#signin-error"),
    cookies: (await context.cookies()).map((c) => c.name),
  };
  out.shots.wrong = await shot(page, "1-wrong-key");

  // Sign in, wait for the first figures.
  await page.fill("#auth", input.auth);
  await Promise.all([page.waitForURL(input.base + "/dashboard"), page.click("#signin button")]);
  await page.waitForFunction(() => (window.squallDashboard || {}).refreshed >= 1);
  await page.waitForFunction(() => window.squallDashboard.plots.status.data[0].length > 0);
  const cookie = (await context.cookies()).find((c) => c.name === "squall_session");
  out.signedIn = await page.evaluate(() => {
    const d = window.squallDashboard;
    const text = (id) => document.getElementById(id).textContent;
    const table = (id) => [...document.querySelectorAll(`#${id} tbody tr`)].map(
      (tr) => [...tr.children].map((td) => td.textContent));
    const sum = (xs) => xs.reduce((a, b) => a + (b || 0), 0);
    return {
      url: location.href,
      namespace: text("namespace"),
      tiles: Object.fromEntries(["total", "errors", "pending", "cold", "throttled"].map((id) => [id, text(id)])),
      // What the plots were given: per series (after x), its label and its sum or max.
      statusPlot: d.plots.status.series.slice(1).map((s, i) => [s.label, sum(d.plots.status.data[i + 1])]),
      coldPlot: sum(d.plots.starts.data[1]),
      warmPlot: sum(d.plots.starts.data[2]),
      p99Max: Math.max(...d.plots.latency.data[3].filter((v) => v !== null)),
      busiest: table("busiest"),
      rows: [...document.querySelectorAll("#activations tbody tr")].map((tr) => tr.dataset.id),
      documentCookie: document.cookie,
      localStorage: JSON.stringify(localStorage),
      sessionStorage: JSON.stringify(sessionStorage),
      html: document.documentElement.outerHTML,
    };
  });
  out.cookie = cookie && { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite, expires: cookie.expires };
  out.shots.dashboard = await shot(page, "2-dashboard");

  // Filter by status.
  await page.selectOption("#filter-status", input.errorStatus);
  await page.click("#filters button[type=submit]");
  await page.waitForFunction((status) => {
    const rows = [...document.querySelectorAll("#activations tbody tr")];
    return rows.length > 0 && rows.every((tr) => tr.children[2].textContent === status);
  }, input.errorStatus);
  out.filtered = await page.$$eval("#activations tbody tr", (trs) => trs.map((tr) => tr.dataset.id));
  out.shots.filtered = await shot(page, "3-filtered");

  // Filter by action (the status filter cleared), then by a time range in the future.
  await page.selectOption("#filter-status", "");
  await page.fill("#filter-name", input.nameFilter);
  await page.click("#filters button[type=submit]");
  await page.waitForFunction((name) => {
    const rows = [...document.querySelectorAll("#activations tbody tr")];
    return rows.length > 0 && rows.every((tr) => tr.children[1].textContent.endsWith("/" + name));
  }, input.nameFilter);
  out.byName = await page.$$eval("#activations tbody tr", (trs) => trs.map((tr) => tr.dataset.id));
  await page.fill("#filter-since", "2999-01-01T00:00");
  await page.click("#filters button[type=submit]");
  await page.waitForFunction(() => document.querySelectorAll("#activations tbody tr").length === 0);
  out.future = await page.textContent("#list-note");
  // Back to the status filter for the detail below.
  await page.click("#filter-clear");
  await page.selectOption("#filter-status", input.errorStatus);
  await page.click("#filters button[type=submit]");
  await page.waitForFunction((status) => {
    const rows = [...document.querySelectorAll("#activations tbody tr")];
    return rows.length > 0 && rows.every((tr) => tr.children[2].textContent === status);
  }, input.errorStatus);

  // Open one activation.
  await page.click("#activations tbody tr:first-child");
  await page.waitForSelector("#detail:not([hidden])");
  out.detail = await page.evaluate(() => ({
    id: document.getElementById("detail-id").textContent,
    status: document.getElementById("detail-status").textContent,
    result: document.getElementById("detail-result").textContent,
    logs: document.getElementById("detail-logs").textContent,
    run: document.getElementById("detail-run").textContent,
  }));
  out.shots.detail = await shot(page, "4-detail");

  // Sign out.
  await Promise.all([page.waitForSelector("#signin"), page.click("#signout")]);
  out.signedOut = {
    cookies: (await context.cookies()).map((c) => c.name),
    summary: (await page.evaluate(async () => (await fetch("/dashboard/api/summary")).status)),
  };
  out.shots.signedOut = await shot(page, "5-signed-out");

  // The API reference: authorize, then "try it out" on GET /namespaces.
  await page.goto(input.base + "/api/v1/docs");
  await page.waitForSelector(".swagger-ui .info .title");
  const [uuid, ...rest] = input.auth.split(":");
  await page.click(".btn.authorize");
  await page.fill(".modal-ux input[type=text]", uuid);
  await page.fill(".modal-ux input[type=password]", rest.join(":"));
  await page.click(".modal-ux .auth-btn-wrapper .btn.authorize");
  await page.click(".modal-ux .btn-done");
  const op = page.locator(".opblock-get", { has: page.locator(".opblock-summary-path[data-path='/namespaces']") }).first();
  await op.locator(".opblock-summary").click();
  await op.locator(".try-out__btn").click();
  await op.locator(".execute").click();
  await op.locator(".live-responses-table .response .response-col_status").first().waitFor();
  out.tryItOut = {
    status: (await op.locator(".live-responses-table .response .response-col_status").first().textContent()).trim(),
    body: await op.locator(".live-responses-table .response-col_description pre").first().textContent(),
  };
  await op.scrollIntoViewIfNeeded();
  out.shots.docs = await shot(page, "6-api-docs", false);

  // The operator's view, signed in as the system namespace.
  await page.goto(input.base + "/dashboard");
  await page.fill("#auth", input.operatorAuth);
  await Promise.all([page.waitForURL(input.base + "/dashboard"), page.click("#signin button")]);
  await page.waitForFunction(() => (window.squallDashboard || {}).platform !== undefined);
  out.operator = await page.evaluate(() => ({
    invokers: [...document.querySelectorAll("#invokers tbody tr")].map(
      (tr) => [...tr.children].slice(0, 2).map((td) => td.textContent)),
    memory: document.getElementById("memory").textContent,
  }));
  out.shots.operator = await shot(page, "7-operator");

  // Live: an activation of the system namespace (the catalog's echo, invoked over the
  // REST API from here, not from the page) shows up without the page being reloaded.
  await page.evaluate(() => { window.sameDocument = true; });
  const before = await page.textContent("#total");
  const invoked = await fetch(`${input.base}/api/v1/namespaces/_/actions/utils/echo?blocking=true`, {
    method: "POST",
    headers: {
      authorization: "Basic " + Buffer.from(input.operatorAuth).toString("base64"),
      "content-type": "application/json",
    },
    body: "{}",
  });
  await page.waitForFunction((n) => document.getElementById("total").textContent === n,
    String(Number(before) + 1));
  out.live = {
    invoked: invoked.status,
    before,
    after: await page.textContent("#total"),
    sameDocument: await page.evaluate(() => window.sameDocument === true),
  };

  out.requests = seen.requests;
  out.failed = seen.failed;
  out.console = seen.console;
  process.stdout.write(JSON.stringify(out));
} finally {
  await context.close();
}
