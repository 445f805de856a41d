// The operator dashboard (issue 11 §4) in a real headless Chromium: Debian's `chromium` (installed
// by scripts/setup.sh) driven by puppeteer-core, against ONE stack of the real Workers in workerd
// with local D1 and Queues (no stand-in: the dashboard needs no remote service, the tracker is the
// built-in one). An incident is made the production way: TraceItems handed to the tail Worker's
// tail() (tests/e2e/replayer), spread over the last hours so the chart has bars, with hostile
// markup in the error message; the cron tickets it.
//
// Checked: a wrong token is refused (401, no cookie); signing in with the API token sets an
// HttpOnly, SameSite=Strict session cookie that page scripts cannot read; the incident list shows
// the incident and its chart, and filters by status; its page renders the ticket with the hostile
// text as text; the resolve button changes its status on the page and writes the history row in
// D1; a POST without the CSRF token, or from another origin, is 403 and changes nothing; a token
// in a query string is 400; no URL the browser visited carries the token; signing out ends the
// session. A screenshot of the incident's page is kept at .selfheal/dashboard.png.
//
// No chromium (not root, no apt) → the suite is SKIPPED, and says so.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { LOCAL_API_TOKEN, ROOT, d1, startStack, until } from "../../scripts/lib/stack.mjs";
import { traceItem } from "../../scripts/lib/traceitems.mjs";

const stateDir = join(ROOT, `.selfheal/e2e-dashboard-${process.pid}`);
const SCREENSHOT = join(ROOT, ".selfheal/dashboard.png");
const CHROMIUM = [process.env.SELFHEAL_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].find(
  (p) => p && existsSync(p),
);
let puppeteer = null;
try {
  puppeteer = (await import("puppeteer-core")).default;
} catch {}
const skip = !CHROMIUM
  ? "SKIPPED: no chromium (scripts/setup.sh installs Debian's chromium when run as root)"
  : !puppeteer
    ? "SKIPPED: puppeteer-core is not installed (npm install)"
    : false;
if (skip) console.log(`dashboard browser test ${skip}`);

const HOSTILE = `<img src=x onerror="window.__xss=1"> cart total`;
const SCRIPT = "dash-shop";
const HOUR = 3_600_000;

let stack;
let browser;
let page;
let incident;
const visited = [];

describe("the operator dashboard in headless Chromium", { skip, timeout: 90_000 }, () => {
  before(async () => {
    stack = await startStack({ stateDir, extra: { replayer: "tests/e2e/replayer/wrangler.toml" } });
    // 1 + 2 + 3 + 4 occurrences in four different hours of the last day.
    const now = Date.now();
    const items = [];
    for (let h = 0; h < 4; h++) {
      for (let k = 0; k <= h; k++) {
        items.push(
          traceItem({
            script: SCRIPT,
            release: h < 2 ? "r1" : "r2",
            route: `/cart/${100 + items.length}`,
            ts: now - (3 - h) * HOUR - 60_000 - k,
            error: { name: "TypeError", message: HOSTILE, stack: "    at total (cart.js:12:5)" },
          }),
        );
      }
    }
    const res = await fetch(`${stack.urls.replayer}/tail-each`, { method: "POST", body: JSON.stringify(items) });
    assert.equal(res.status, 200, await res.text());
    await stack.settle();
    await stack.cron();
    // Ticketed, and its fix run claimed by the agent-runner: nothing changes its status after this.
    const found = await until(
      async () => (await stack.api("/api/incidents")).find((i) => i.script_name === SCRIPT && i.ticket_id),
      "the incident and its ticket",
    );
    await until(async () => (await stack.api("/api/runs")).some((r) => r.incident_id === found.id), "its fix run");
    incident = (await stack.api("/api/incidents")).find((i) => i.id === found.id);
    assert.equal(incident.occurrence_count, 10);

    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      userDataDir: join(stateDir, "chromium"),
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
    });
    page = await browser.newPage();
    page.on("request", (r) => visited.push(r.url()));
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const signIn = async (token) => {
    await page.goto(`${stack.urls.runner}/`);
    await page.type("input[name=token]", token);
    const [nav] = await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
    return nav;
  };
  const text = (sel) => page.$eval(sel, (e) => e.textContent.trim());
  const session = async () => (await browser.cookies()).find((c) => c.name === "selfheal_session");

  test("a wrong token is refused and sets no cookie", async () => {
    const nav = await signIn("not-the-token");
    assert.equal(nav.status(), 401);
    assert.equal(await text("#error"), "wrong token");
    assert.equal(await session(), undefined);
  });

  test("sign in, open the incident, resolve it, see it change", async () => {
    const nav = await signIn(LOCAL_API_TOKEN);
    assert.equal(nav.status(), 200);
    assert.equal(new URL(page.url()).pathname, "/dashboard");
    const cookie = await session();
    assert.ok(cookie, "session cookie set");
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "Strict");
    assert.equal(await page.evaluate(() => document.cookie), "", "page scripts cannot read the session");
    // The list: the incident, its status and a chart with one bar per hour that had occurrences.
    const row = await page.$eval(`#incidents a[href="/dashboard/incidents/${incident.id}"]`, (a) => {
      const tr = a.closest("tr");
      return { cells: [...tr.cells].map((c) => c.textContent.trim()), bars: tr.querySelectorAll("svg rect.bar").length };
    });
    assert.equal(row.cells[1], incident.status);
    assert.equal(row.cells[4], "10");
    assert.equal(row.bars, 4);
    assert.equal(row.cells[7], "r1 → r2");
    assert.match(await text("#budget"), /\d+\/\d+ attempts used/);

    await Promise.all([page.waitForNavigation(), page.click(`a[href="/dashboard/incidents/${incident.id}"]`)]);
    assert.equal(await text("#status"), incident.status);
    assert.notEqual(incident.status, "resolved");
    // Untrusted text is text: the message shows verbatim, its markup never ran or became elements.
    const body = await page.evaluate(() => document.body.innerText);
    assert.ok(body.includes(HOSTILE), "the hostile message is shown as text");
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    assert.equal(await page.$$eval("img", (imgs) => imgs.length), 0);
    // The ticket, rendered: its title, headings and fenced samples.
    assert.ok((await page.$$eval(".ticket h3, .ticket h4", (h) => h.length)) >= 2);
    assert.ok((await page.$$eval(".ticket pre", (p) => p.length)) >= 1);
    assert.match(await text(".ticket table"), /occurrences\s*10/);
    assert.deepEqual(
      await page.$$eval("#daily tr", (rows) => rows.slice(1).map((r) => r.cells[2].textContent).reduce((a, n) => a + Number(n), 0)),
      10,
    );

    await Promise.all([page.waitForNavigation(), page.click(`form[action$="/${incident.id}/resolve"] button`)]);
    assert.equal(new URL(page.url()).pathname, `/dashboard/incidents/${incident.id}`, "POST-redirect-GET");
    assert.equal(await text("#status"), "resolved");
    const last = await page.$$eval("#history tr", (rows) => [...rows.at(-1).cells].map((c) => c.textContent));
    assert.deepEqual(last.slice(1), [incident.status, "resolved", "operator", "operator_resolve"]);
    const history = await d1(stateDir, `SELECT from_status, to_status, actor, why FROM incident_history WHERE incident_id = ${incident.id} ORDER BY id`);
    assert.deepEqual(history.at(-1), { from_status: incident.status, to_status: "resolved", actor: "operator", why: "operator_resolve" });

    await Promise.all([page.waitForNavigation(), page.click(`form[action$="/${incident.id}/label"] button`)]);
    assert.equal(await text("#label"), "actionable");
    mkdirSync(join(ROOT, ".selfheal"), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    // The list's status filter (as `selfheal incidents --status`).
    const link = `#incidents a[href="/dashboard/incidents/${incident.id}"]`;
    await page.goto(`${stack.urls.runner}/dashboard?status=resolved`);
    assert.ok(await page.$(link), "listed under resolved");
    await page.goto(`${stack.urls.runner}/dashboard?status=${incident.status}`);
    assert.equal(await page.$(link), null, `not listed under ${incident.status}`);
  });

  test("a POST without the CSRF token, or from another origin, is 403 and changes nothing", async () => {
    const cookie = await session();
    const csrf = await page.$eval("input[name=csrf]", (i) => i.value);
    const post = (body, origin = stack.urls.runner, c = `selfheal_session=${cookie.value}`) =>
      fetch(`${stack.urls.runner}/dashboard/incidents/${incident.id}/reopen`, {
        method: "POST",
        redirect: "manual",
        headers: { "content-type": "application/x-www-form-urlencoded", cookie: c, origin },
        body,
      });
    assert.equal((await post("")).status, 403);
    assert.equal((await post("csrf=0000")).status, 403);
    assert.equal((await post(`csrf=${csrf}`, "https://evil.example")).status, 403);
    assert.equal((await post(`csrf=${csrf}`, stack.urls.runner, "selfheal_session=1.forged")).status, 401);
    const [{ status }] = await d1(stateDir, `SELECT status FROM ops_incidents WHERE id = ${incident.id}`);
    assert.equal(status, "resolved");
    // The same request with its token goes through (the refusals above were for the token alone).
    const ok = await post(`csrf=${csrf}`);
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get("location"), `/dashboard/incidents/${incident.id}`);
    const [{ status: after }] = await d1(stateDir, `SELECT status FROM ops_incidents WHERE id = ${incident.id}`);
    assert.equal(after, "open");
  });

  test("no token in any URL; a token in a query string is refused; sign out ends the session", async () => {
    const res = await fetch(`${stack.urls.runner}/dashboard?token=${LOCAL_API_TOKEN}`);
    assert.equal(res.status, 400);
    await Promise.all([page.waitForNavigation(), page.click("form[action='/signout'] button")]);
    assert.equal(new URL(page.url()).pathname, "/");
    assert.ok(await page.$("input[name=token]"), "back on the sign-in page");
    assert.equal(await session(), undefined);
    const nav = await page.goto(`${stack.urls.runner}/dashboard`);
    assert.equal(new URL(page.url()).pathname, "/", `signed out → sign-in page (status ${nav.status()})`);
    assert.ok(visited.length >= 8, visited.join("\n"));
    for (const u of visited) assert.ok(!u.includes(LOCAL_API_TOKEN), `token in a URL: ${u}`);
  });
});
