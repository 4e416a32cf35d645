// Screenshots of MLflow UI pages in headless Chromium (the system's browser, never a download),
// driven by playwright-core. Run by scripts/mlflow_screenshots.py, which starts the MLflow UI and
// passes one JSON argument:
//   {"chromium": "/usr/bin/chromium", "out": "<folder>", "timeout_ms": 60000,
//    "pages": [{"name": "runs", "url": "http://127.0.0.1:PORT/#/...", "expect": ["trial-0000"],
//               "click": ["button[aria-label=Close]"], "width": 1600, "height": 900}]}
// For each page: open it, click the first element matching each CSS selector of "click" (skipped
// when none shows within 10 s), wait until the page text holds every "expect" string, let the
// charts settle, save <out>/<name>.png. Writes
// <out>/pages.json: [{name, url, title, text, missing}] ("missing": expected strings not shown).
// Exit status 0 when every page showed all its expected strings, else 1.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const timeout = config.timeout_ms ?? 60000;
const browser = await chromium.launch({
  executablePath: config.chromium,
  headless: true,
  // No sandbox (CI runs as root), no proxy (the UI is on 127.0.0.1), no GPU.
  args: ["--no-sandbox", "--no-proxy-server", "--disable-gpu", "--disable-dev-shm-usage"],
});
const results = [];
try {
  for (const page of config.pages) {
    const context = await browser.newContext({
      viewport: { width: page.width ?? 1600, height: page.height ?? 900 },
    });
    const tab = await context.newPage();
    const start = Date.now();
    await tab.goto(page.url, { waitUntil: "domcontentloaded", timeout });
    for (const selector of page.click ?? []) {
      await tab.locator(selector).first().click({ timeout: 10000 })
        .catch(() => console.error(`${page.name}: nothing to click at ${selector}`));
    }
    const expect = page.expect ?? [];
    try {
      await tab.waitForFunction(
        (strings) => strings.every((s) => document.body.innerText.includes(s)),
        expect, { timeout },
      );
    } catch (error) {
      console.error(`${page.name}: ${error.message.split("\n")[0]}`);
    }
    await tab.waitForTimeout(page.settle_ms ?? 1500); // charts animate in
    await tab.screenshot({ path: join(config.out, `${page.name}.png`) });
    const text = await tab.evaluate(() => document.body.innerText);
    results.push({ name: page.name, url: page.url, title: await tab.title(), text,
                   missing: expect.filter((s) => !text.includes(s)) });
    console.error(`${page.name}: ${((Date.now() - start) / 1000).toFixed(1)} s`);
    await context.close();
  }
} finally {
  await browser.close();
}
writeFileSync(join(config.out, "pages.json"), JSON.stringify(results, null, 2));
const failed = results.filter((r) => r.missing.length);
for (const r of failed) console.error(`${r.name}: not shown: ${r.missing.join(", ")}`);
process.exit(failed.length ? 1 : 0);
