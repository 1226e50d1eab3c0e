// PNGs of every page at desktop (1280 px) and phone (390 px) width into docs/screenshots/,
// against the seeded gateway that tests/test_dashboard_e2e.py starts
// (`npm run screenshots` runs it).

import { mkdirSync } from "node:fs";
import { after, before, test } from "node:test";
import { chromium, type Browser, type Page } from "playwright-core";

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (tests/test_dashboard_e2e.py sets it)`);
  return v;
};
const BASE = env("E2E_GATEWAY_URL");
const OUT = env("E2E_SCREENSHOTS");
const WIDTHS = [1280, 390];

let browser: Browser;

async function settle(p: Page) {
  await p.waitForLoadState("networkidle");
  await p.locator("[role=status].animate-pulse").first().waitFor({ state: "detached", timeout: 10_000 }).catch(() => undefined);
  await p.waitForTimeout(300); // layout settles (charts draw without animation)
}

before(async () => {
  mkdirSync(OUT, { recursive: true });
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium", headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"] });
});

after(async () => browser?.close());

for (const width of WIDTHS) {
  test(`every page at ${width} px`, async () => {
    const ctx = await browser.newContext({ viewport: { width, height: width > 500 ? 900 : 844 }, deviceScaleFactor: 1, timezoneId: "UTC" });
    const p = await ctx.newPage();
    await p.goto(`${BASE}/dashboard/login/?reason=expired`);
    await p.getByLabel("Username").waitFor();
    await p.screenshot({ path: `${OUT}/login-${width}.png`, fullPage: true });
    await p.getByLabel("Username").fill(env("E2E_ADMIN_USER"));
    await p.getByLabel("Password").fill(env("E2E_ADMIN_PASSWORD"));
    await p.getByRole("button", { name: "Sign in" }).click();
    await p.getByTestId("whoami").waitFor();
    const token = await p.evaluate(() => window.localStorage.getItem("ccproxy.session"));
    const r = await fetch(`${BASE}/admin/users?search=${encodeURIComponent(env("E2E_SEEDED_USER"))}`, { headers: { authorization: `Bearer ${token}` } });
    const userId = ((await r.json()) as { items: { id: number }[] }).items[0].id;
    const pages: [string, string][] = [
      ["overview", "/dashboard/"],
      ["users", "/dashboard/users/"],
      ["user", `/dashboard/users/view/?id=${userId}`],
      ["teams", "/dashboard/teams/"],
      ["usage", "/dashboard/usage/"],
      ["cost", "/dashboard/cost/"],
      ["pricing", "/dashboard/pricing/"],
      ["models", "/dashboard/models/"],
      ["circuits", "/dashboard/circuits/"],
      ["audit", "/dashboard/audit/"],
    ];
    for (const [name, path] of pages) {
      await p.goto(`${BASE}${path}`);
      await settle(p);
      await p.screenshot({ path: `${OUT}/${name}-${width}.png`, fullPage: true });
    }
    await ctx.close();
  });
}
