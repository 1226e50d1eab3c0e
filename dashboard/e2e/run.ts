// End to end in real headless Chromium (Debian's package, driven by playwright-core
// through its executablePath) against a running gateway seeded with a month of usage.
// Started by tests/test_dashboard_e2e.py, which passes the gateway and the accounts in
// the environment. Steps run in order and share one browser; each is a node:test test.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { formatCompact, formatMoney, formatPercent, formatTokens } from "../lib/format.ts";
import { cards } from "../lib/report.ts";
import type { Page as ListPage, ModelMapping, QuotaState, TopUser, UsageReport, User, UserSession } from "../lib/api.ts";
import { formatUtilization } from "../lib/quota.ts";

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (tests/test_dashboard_e2e.py sets it)`);
  return v;
};
const BASE = env("E2E_GATEWAY_URL");
const ADMIN = { user: env("E2E_ADMIN_USER"), pass: env("E2E_ADMIN_PASSWORD") };
const VIEWER = { user: env("E2E_VIEWER_USER"), pass: env("E2E_VIEWER_PASSWORD") };
const SEEDED_USER = env("E2E_SEEDED_USER"); // a user with a month of usage, Bedrock included
const ARTIFACTS = env("E2E_ARTIFACTS");
const TIMEOUT = 15_000;

let browser: Browser;
let admin: BrowserContext;
let page: Page;
let token = "";
// Every answer for the dashboard's own files that was not a success (navigations fetch
// RSC payloads by path: a wrong fallback in gateway/dashboard.py shows up here).
const failedAssets: string[] = [];

async function api<T>(path: string, init: RequestInit = {}, bearer = token): Promise<T> {
  const r = await fetch(`${BASE}${path}`, { ...init, headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json", ...(init.headers ?? {}) } });
  if (!r.ok) throw new Error(`${init.method ?? "GET"} ${path}: ${r.status} ${await r.text()}`);
  const type = r.headers.get("content-type") ?? "";
  return (type.includes("json") ? await r.json() : await r.text()) as T;
}

async function login(p: Page, who: { user: string; pass: string }) {
  await p.goto(`${BASE}/dashboard/login/`);
  await p.getByLabel("Username").fill(who.user);
  await p.getByLabel("Password").fill(who.pass);
  await p.getByRole("button", { name: "Sign in" }).click();
  await p.getByTestId("whoami").filter({ hasText: who.user }).waitFor({ timeout: TIMEOUT });
}

async function cardValue(p: Page, id: string): Promise<string> {
  return (await p.getByTestId(id).locator("[data-value]").innerText()).trim();
}

/** The next answer of the page's own call to `path` (what it asked for, and the URL). */
function nextResponse(p: Page, match: (url: URL) => boolean) {
  return p.waitForResponse((r) => match(new URL(r.url())) && r.request().method() === "GET", { timeout: TIMEOUT });
}

function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (cell += '"'), i++;
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") row.push(cell), (cell = "");
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell), rows.push(row), (row = []), (cell = "");
    } else cell += c;
  }
  if (cell || row.length) row.push(cell), rows.push(row);
  return rows;
}

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  admin = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true, timezoneId: "Europe/Berlin" });
  admin.setDefaultTimeout(TIMEOUT);
  admin.on("response", (r) => {
    if (new URL(r.url()).pathname.startsWith("/dashboard/") && r.status() >= 400) failedAssets.push(`${r.status()} ${r.url()}`);
  });
  page = await admin.newPage();
});

after(async () => {
  await browser?.close();
});

test("1. login: no session goes to the login page, a wrong password is refused, the right one opens the overview", async () => {
  await page.goto(`${BASE}/dashboard/`);
  await page.waitForURL(/\/dashboard\/login\/\?reason=required/);
  await page.getByTestId("login-reason").waitFor();
  await page.getByLabel("Username").fill(ADMIN.user);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "Wrong username or password." }).waitFor();
  await login(page, ADMIN);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  token = (await page.evaluate(() => window.localStorage.getItem("ccproxy.session"))) ?? "";
  assert.ok(token.length > 20, "the session token is in localStorage");
  const stored = await page.evaluate(() => Object.keys(window.localStorage));
  assert.deepEqual(stored, ["ccproxy.session"], "nothing but the session token is kept");
});

test("1b. an expired or revoked token lands on login with a message, not a blank page", async () => {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  await p.goto(`${BASE}/dashboard/login/`);
  await p.evaluate(() => window.localStorage.setItem("ccproxy.session", "eyJhbGciOiJIUzI1NiJ9.e30.invalid"));
  await p.goto(`${BASE}/dashboard/users/`);
  await p.waitForURL(/\/dashboard\/login\/\?reason=expired/, { timeout: TIMEOUT });
  const message = await p.getByTestId("login-reason").innerText();
  assert.match(message, /expired or was revoked/);
  assert.equal(await p.evaluate(() => window.localStorage.getItem("ccproxy.session")), null);
  await ctx.close();
});

test("2. the overview's cards show the admin API's numbers for the same range", async () => {
  await page.getByTestId("card-requests").or(page.locator("main [role=alert]")).first().waitFor();
  assert.deepEqual(await page.locator("main [role=alert]").allInnerTexts(), [], "the overview loads without an error");
  // 30D is the default: go to 7D and back, and catch the page's own calls for 30D.
  const sevenDays = nextResponse(page, (u) => u.pathname === "/admin/usage" && !u.searchParams.has("model") && !u.searchParams.has("provider"));
  await page.getByRole("button", { name: "7D", exact: true }).click();
  assert.equal(new URL((await sevenDays).url()).searchParams.get("granularity"), "hour", "7D is shown by hour");
  const usageCall = nextResponse(page, (u) => u.pathname === "/admin/usage" && !u.searchParams.has("model") && !u.searchParams.has("provider"));
  const topCall = nextResponse(page, (u) => u.pathname === "/admin/usage/top-users");
  await page.getByRole("button", { name: "30D", exact: true }).click();
  const [usageResponse, topResponse] = await Promise.all([usageCall, topCall]);
  const asked = new URL(usageResponse.url());
  assert.equal(asked.searchParams.get("granularity"), "day", "30D is shown by day");
  assert.ok(!asked.search.includes(token), "no token in the URL");
  // Ask the API ourselves, with the page's own query, and compare every card.
  const report = await api<UsageReport>(asked.pathname + asked.search);
  const top = await api<ListPage<TopUser>>(new URL(topResponse.url()).pathname + new URL(topResponse.url()).search);
  assert.ok(report.totals.requests > 500, `the seeded month has traffic (${report.totals.requests} requests)`);
  // The cards change once every call of the new range has answered (the per-model ones
  // too): wait for the full request count of 30D, which no other range shares.
  await page.getByTestId("card-requests").getByText(formatTokens(report.totals.requests), { exact: true }).waitFor();
  const c = cards(report.totals, top.items);
  assert.equal(await cardValue(page, "card-requests"), formatCompact(report.totals.requests));
  assert.equal(await page.getByTestId("card-requests").locator("div").nth(2).innerText(), formatTokens(report.totals.requests));
  assert.equal(await cardValue(page, "card-input-tokens"), formatCompact(report.totals.input_tokens));
  assert.equal(await cardValue(page, "card-output-tokens"), formatCompact(report.totals.output_tokens));
  assert.equal(await cardValue(page, "card-total-tokens"), formatCompact(c.totalTokens));
  assert.equal(await cardValue(page, "card-bedrock-cost"), formatMoney(report.totals.cost_usd));
  assert.equal(await cardValue(page, "card-fallback-rate"), formatPercent(report.totals.fallback_requests / report.totals.requests));
  assert.equal(await cardValue(page, "card-top-user"), formatPercent(top.items[0].share));
  assert.equal(await cardValue(page, "card-cost-per-request"), formatMoney(Number(report.totals.cost_usd) / report.totals.bedrock_requests));
  // The charts are drawn, and the top users link to their pages.
  assert.ok((await page.locator(".recharts-surface").count()) >= 5, "five charts");
  const link = page.getByRole("link", { name: top.items[0].user_name, exact: true });
  assert.equal(await link.getAttribute("href"), `/dashboard/users/view/?id=${top.items[0].user_id}`);
});

test("2b. the plan value card shows the plan rows' list price and the Bedrock spend the admin API reports", async () => {
  const panel = page.getByTestId("plan-value");
  await panel.waitFor();
  // Ask for exactly what the overview shows (30D, by day), split by provider.
  // (7D is by hour, 30D by day: only 30D's call matches.)
  const usageCall = nextResponse(page, (u) => u.pathname === "/admin/usage" && u.searchParams.get("provider") === "plan" && u.searchParams.get("granularity") === "day");
  await page.getByRole("button", { name: "7D", exact: true }).click();
  await page.getByRole("button", { name: "30D", exact: true }).click();
  const asked = new URL((await usageCall).url());
  const plan = await api<UsageReport>(asked.pathname + asked.search);
  asked.searchParams.set("provider", "bedrock");
  const bedrock = await api<UsageReport>(asked.pathname + asked.search);
  assert.ok(Number(plan.totals.list_cost_usd) > 0, "the seeded plan rows have a list price");
  await page.getByTestId("plan-value-plan").getByText(formatMoney(plan.totals.list_cost_usd), { exact: true }).waitFor();
  assert.equal(await cardValue(page, "plan-value-plan"), formatMoney(plan.totals.list_cost_usd));
  assert.equal(await cardValue(page, "plan-value-bedrock"), formatMoney(bedrock.totals.cost_usd));
  assert.equal(await panel.locator(".recharts-wrapper").count(), 1, "one chart: plan value and Bedrock spend over time");
  assert.ok((await panel.locator(".recharts-bar-rectangle").count()) > 0, "its bars are drawn");
});

let createdId = 0;
test("3. create a user", async () => {
  await page.getByRole("link", { name: "Users", exact: true }).click();
  await page.getByRole("heading", { name: "Users" }).waitFor();
  await page.getByLabel("Name").fill("e2e-dana");
  await page.getByLabel("Description").fill("made by the browser test");
  await page.getByLabel("Monthly budget (USD)").fill("20");
  await page.getByRole("button", { name: "Create user" }).click();
  await page.getByRole("status").filter({ hasText: "Created e2e-dana." }).waitFor();
  await page.getByRole("link", { name: "e2e-dana", exact: true }).waitFor();
  const found = await api<ListPage<User>>("/admin/users?search=e2e-dana");
  assert.equal(found.total, 1);
  assert.equal(found.items[0].description, "made by the browser test");
  assert.equal(Number(found.items[0].monthly_budget_usd), 20);
  createdId = found.items[0].id;
  // A duplicate name is refused with the server's message, and nothing is created.
  await page.getByLabel("Name").fill("e2e-dana");
  await page.getByRole("button", { name: "Create user" }).click();
  await page.locator("form ~ p[role=alert]").waitFor();
  assert.equal((await api<ListPage<User>>("/admin/users?search=e2e-dana")).total, 1);
});

let firstKey = "";
test("4. issue a key and see it exactly once", async () => {
  await page.getByRole("link", { name: "e2e-dana", exact: true }).click();
  await page.getByRole("heading", { name: "e2e-dana" }).waitFor();
  await page.getByRole("button", { name: "Issue key" }).click();
  firstKey = (await page.getByTestId("raw-key").innerText()).trim();
  assert.match(firstKey, /^ak_[A-Za-z0-9_-]{43,}$/);
  await page.getByRole("button", { name: "Done" }).click();
  await page.getByTestId("one-time-key").waitFor({ state: "detached" });
  assert.ok(!(await page.content()).includes(firstKey), "gone from the page after Done");
  await page.reload();
  await page.getByTestId("key-row").first().waitFor();
  assert.ok(!(await page.content()).includes(firstKey), "never shown again");
  const storage = await page.evaluate(() => JSON.stringify({ ...window.localStorage, ...window.sessionStorage }));
  assert.ok(!storage.includes(firstKey), "never stored in the browser");
  assert.match(await page.getByTestId("key-row").first().innerText(), new RegExp(`${firstKey.slice(0, 9)}…`));
});

test("5. rotate the key (the new one shown once), then revoke it", async () => {
  const row = page.getByTestId("key-row").first();
  await row.getByRole("button", { name: "Rotate" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Rotate" }).click();
  const second = (await page.getByTestId("raw-key").innerText()).trim();
  assert.match(second, /^ak_/);
  assert.notEqual(second, firstKey);
  await page.getByRole("button", { name: "Done" }).click();
  await page.getByText(/rotated · stops/).waitFor();
  const keys = await api<ListPage<{ id: number; prefix: string; status: string; expires_at: string | null; replaced_by: number | null }>>(`/admin/users/${createdId}/access-keys`);
  assert.equal(keys.total, 2);
  const successor = keys.items.find((k) => second.startsWith(k.prefix));
  assert.ok(successor, "the new key is listed by its prefix");
  const successorRow = page.locator(`[data-testid=key-row][data-key-id="${successor.id}"]`);
  await successorRow.getByRole("button", { name: "Revoke" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Revoke" }).click();
  await page.locator(`[data-testid=key-row][data-key-id="${successor.id}"][data-status=revoked]`).waitFor();
  const after = await api<{ status: string }>(`/admin/access-keys/${successor.id}`);
  assert.equal(after.status, "revoked");
});

test("6. set a budget, then make it unlimited", async () => {
  await page.getByRole("button", { name: "Edit budget" }).click();
  await page.getByLabel("Monthly budget (USD)").fill("75.5");
  await page.getByRole("button", { name: "Save budget" }).click();
  await page.getByTestId("budget-limit").filter({ hasText: "$75.50" }).waitFor();
  assert.ok(await page.getByRole("progressbar").isVisible());
  assert.equal(Number((await api<{ monthly_budget_usd: string }>(`/admin/users/${createdId}/budget`)).monthly_budget_usd), 75.5);
  await page.getByRole("button", { name: "Edit budget" }).click();
  await page.getByRole("button", { name: "Unlimited" }).click();
  await page.getByTestId("budget-limit").filter({ hasText: "Unlimited" }).waitFor();
  assert.equal((await api<{ monthly_budget_usd: string | null }>(`/admin/users/${createdId}/budget`)).monthly_budget_usd, null);
  // A bad amount is refused in the form, naming the problem.
  await page.getByRole("button", { name: "Edit budget" }).click();
  await page.getByLabel("Monthly budget (USD)").fill("lots");
  await page.getByRole("button", { name: "Save budget" }).click();
  await page.getByRole("alert").filter({ hasText: "A budget is an amount in USD" }).waitFor();
  await page.getByRole("button", { name: "Cancel" }).click();
});

test("7. filter usage and download the CSV: its rows are exactly the filtered events", async () => {
  await page.getByRole("link", { name: "Usage", exact: true }).click();
  await page.getByRole("heading", { name: "Usage explorer" }).waitFor();
  await page.getByRole("button", { name: "30D", exact: true }).click();
  const users = await api<ListPage<User>>(`/admin/users?search=${encodeURIComponent(SEEDED_USER)}`);
  const seeded = users.items.find((u) => u.name === SEEDED_USER);
  assert.ok(seeded);
  let eventsCall = nextResponse(page, (u) => u.pathname === "/admin/usage/events" && u.searchParams.get("user") === String(seeded.id));
  await page.getByLabel("User").selectOption(String(seeded.id));
  await eventsCall;
  eventsCall = nextResponse(page, (u) => u.pathname === "/admin/usage/events" && u.searchParams.get("provider") === "bedrock");
  await page.getByLabel("Provider").selectOption("bedrock");
  const filtered = await eventsCall;
  const asked = new URL(filtered.url());
  const events = (await filtered.json()) as ListPage<{ request_id: string }>;
  assert.ok(events.total > 0, "the seeded user has Bedrock events this month");
  await page.getByTestId("pager").filter({ hasText: `of ${events.total}` }).waitFor();
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download CSV" }).click()]);
  const path = `${ARTIFACTS}/usage.csv`;
  await download.saveAs(path);
  const rows = parseCsv(readFileSync(path, "utf8"));
  const header = rows[0];
  const data = rows.slice(1).filter((r) => r.length > 1);
  assert.equal(data.length, events.total, "one CSV row per filtered event");
  const col = (name: string) => header.indexOf(name);
  assert.ok(col("request_id") >= 0 && col("provider") >= 0);
  assert.ok(data.every((r) => r[col("provider")] === "bedrock"));
  // The same filters asked of the API directly give the same rows, in the same order.
  asked.searchParams.delete("limit");
  asked.searchParams.delete("offset");
  const direct = parseCsv(await api<string>(`/admin/usage/export.csv${asked.search}`)).slice(1).filter((r) => r.length > 1);
  assert.deepEqual(data.map((r) => r[col("request_id")]), direct.map((r) => r[col("request_id")]));
  const firstPage = events.items.map((e) => e.request_id);
  assert.deepEqual(data.slice(0, firstPage.length).map((r) => r[col("request_id")]), firstPage);
});

const WRITE_CONTROLS = /^(Create user|Create team|Issue key|Rotate|Revoke|Edit|Edit budget|Edit models|Save.*|Delete.*|Deactivate.*|Reset|Reload prices|Region \/ model|Register Bedrock key|Replace Bedrock key|Remove Bedrock key|Unlimited|Change)$/;

test("8. a viewer sees every page and no write control; the server refuses a viewer's write anyway", async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  ctx.setDefaultTimeout(TIMEOUT);
  const p = await ctx.newPage();
  await login(p, VIEWER);
  const seeded = (await api<ListPage<User>>(`/admin/users?search=${encodeURIComponent(SEEDED_USER)}`)).items[0];
  const pages: [string, string][] = [
    ["/dashboard/", "Overview"],
    ["/dashboard/users/", "Users"],
    [`/dashboard/users/view/?id=${seeded.id}`, seeded.name],
    ["/dashboard/teams/", "Teams"],
    ["/dashboard/usage/", "Usage explorer"],
    ["/dashboard/cost/", "Cost"],
    ["/dashboard/pricing/", "Pricing"],
    ["/dashboard/models/", "Models"],
    ["/dashboard/circuits/", "Circuit states"],
    ["/dashboard/audit/", "Audit log"],
  ];
  for (const [path, heading] of pages) {
    await p.goto(`${BASE}${path}`);
    await p.getByRole("heading", { name: heading, exact: true }).waitFor();
    await p.waitForLoadState("networkidle");
    await p.locator("[role=status].animate-pulse").first().waitFor({ state: "detached" }).catch(() => undefined);
    const labels = await p.getByRole("button").allInnerTexts();
    const writes = labels.map((l) => l.trim()).filter((l) => WRITE_CONTROLS.test(l));
    assert.deepEqual(writes, [], `no write control on ${path}`);
    const alerts = await p.locator("main [role=alert]").allInnerTexts();
    assert.deepEqual(alerts, [], `no error on ${path}`);
  }
  const viewerToken = (await p.evaluate(() => window.localStorage.getItem("ccproxy.session"))) ?? "";
  const r = await fetch(`${BASE}/admin/users`, { method: "POST", headers: { authorization: `Bearer ${viewerToken}`, "content-type": "application/json" }, body: JSON.stringify({ name: "viewer-made" }) });
  assert.equal(r.status, 403);
  await ctx.close();
});

test("9. the open circuit is listed, and reset closes it", async () => {
  await page.goto(`${BASE}/dashboard/circuits/`);
  const row = page.getByTestId("circuit-row").filter({ hasText: env("E2E_OPEN_CIRCUIT_USER") });
  await row.waitFor();
  assert.match(await row.innerText(), /open/);
  assert.match(await row.innerText(), /rate_limit/);
  await row.getByRole("button", { name: "Reset" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Reset" }).click();
  await page.getByText("Every circuit is closed").waitFor();
  assert.equal((await api<ListPage<unknown>>("/admin/circuits")).total, 0);
});

test("9b. the models page lists the model map; an admin maps a name, sees it, and deletes it", async () => {
  const shipped = await api<ListPage<ModelMapping>>("/admin/models?limit=500");
  assert.ok(shipped.total > 0, "the shipped defaults are listed");
  await page.goto(`${BASE}/dashboard/models/`);
  await page.getByRole("heading", { name: "Models", exact: true }).waitFor();
  const first = shipped.items[0];
  const row = page.locator(`[data-testid=model-row][data-model="${first.anthropic_name}"]`);
  await row.waitFor();
  assert.ok((await row.innerText()).includes(first.bedrock_model_id), `${first.anthropic_name} → ${first.bedrock_model_id}`);
  const unmapped = page.getByTestId("unmapped-row").filter({ hasText: "claude-experimental-9" });
  await unmapped.waitFor();
  assert.match(await unmapped.innerText(), /\b7\b/, "the seeded unmapped name with its 7 requests");
  await page.getByLabel("Requested name").fill("e2e-model");
  await page.getByLabel("Bedrock model id").fill("us.anthropic.e2e-model-v1:0");
  await page.getByRole("button", { name: "Save mapping" }).click();
  const mine = page.locator(`[data-testid=model-row][data-model="e2e-model"]`);
  await mine.waitFor();
  assert.match(await mine.innerText(), /us\.anthropic\.e2e-model-v1:0/);
  assert.match(await mine.innerText(), /operator/);
  const after = await api<ListPage<ModelMapping>>("/admin/models?limit=500");
  assert.equal(after.items.find((m) => m.anthropic_name === "e2e-model")?.bedrock_model_id, "us.anthropic.e2e-model-v1:0");
  await mine.getByRole("button", { name: "Delete" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
  await mine.waitFor({ state: "detached" });
  const gone = await api<ListPage<ModelMapping>>("/admin/models?limit=500");
  assert.equal(gone.items.find((m) => m.anthropic_name === "e2e-model"), undefined);
});

test("9c. the user page shows the seeded user's latest session with its tokens and cost, and sets the user's routing", async () => {
  const seeded = (await api<ListPage<User>>(`/admin/users?search=${encodeURIComponent(SEEDED_USER)}`)).items[0];
  const sessions = await api<ListPage<UserSession>>(`/admin/users/${seeded.id}/sessions?days=30&limit=20`);
  assert.ok(sessions.total > 0, "the seeded month has sessions");
  const latest = sessions.items[0];
  await page.goto(`${BASE}/dashboard/users/view/?id=${seeded.id}`);
  const row = page.locator(`[data-testid=session-row][data-session-id="${latest.group_key}"]`);
  await row.waitFor();
  const text = await row.innerText();
  assert.ok(text.includes(formatTokens(latest.input_tokens)), `input tokens ${formatTokens(latest.input_tokens)} in ${text}`);
  assert.ok(text.includes(formatTokens(latest.output_tokens)), `output tokens in ${text}`);
  assert.ok(text.includes(latest.cost_usd === null ? "not priced" : formatMoney(latest.cost_usd)), `cost in ${text}`);
  // Routing: inherited until set; "Plan first" is saved through the API.
  const routing = page.getByTestId("user-routing");
  await routing.getByRole("button", { name: "Change" }).click();
  await routing.getByRole("combobox").selectOption("plan_first");
  await routing.getByRole("button", { name: "Save routing" }).click();
  await routing.locator("[data-routing=plan_first]").waitFor();
  assert.equal((await api<User>(`/admin/users/${seeded.id}`)).routing, "plan_first");
  await routing.getByRole("button", { name: "Change" }).click();
  await routing.getByRole("combobox").selectOption("");
  await routing.getByRole("button", { name: "Save routing" }).click();
  await routing.locator("[data-routing='']").waitFor();
  assert.equal((await api<User>(`/admin/users/${seeded.id}`)).routing, null);
});

test("9d. the Users list shows each user's highest 5h / 7d utilization, and the User page each key's windows", async () => {
  const states = await api<ListPage<QuotaState>>("/admin/quota?limit=500");
  const alice = states.items.find((q) => q.user === "alice");
  assert.ok(alice, "the seeded quota reading of alice");
  await page.goto(`${BASE}/dashboard/users/`);
  const row = page.getByTestId("user-row").filter({ has: page.getByRole("link", { name: "alice", exact: true }) });
  const cell = row.getByTestId("quota-cell");
  await cell.waitFor();
  assert.equal(await cell.innerText().then((t) => t.replace(/\s+/g, " ").trim()), `5h ${formatUtilization(alice.windows["5h"].utilization)} 7d ${formatUtilization(alice.windows["7d"].utilization)}`);
  await row.getByRole("link", { name: "alice", exact: true }).click();
  const key = page.locator(`[data-testid=key-row][data-key-id="${alice.access_key_id}"]`).getByTestId("key-quota");
  await key.waitFor();
  assert.match(await key.innerText(), new RegExp(`7d ${formatUtilization(alice.windows["7d"].utilization)}`));
});

test("10. every dashboard file the browser asked for was served", () => {
  assert.deepEqual(failedAssets, []);
});
