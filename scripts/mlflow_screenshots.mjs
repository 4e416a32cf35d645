// Screenshots of MLflow UI pages in headless Chromium (the system's browser, never a download),
// driven by playwright-core. Run by scripts/mlflow_screenshots.py, which starts the MLflow UI and
// passes one JSON argument:
//   {"chromium": "/usr/bin/chromium", "out": "<folder>", "timeout_ms": 60000,
//    "pages": [{"name": "runs", "url": "http://127.0.0.1:PORT/#/...", "expect": ["trial-0000"],
//               "ready": "matching runs", "click": ["button[aria-label=Close]"],
//               "width": 1600, "height": 900}]}
// For each page: open it, wait for the "ready" text (when given), click the first element
// matching each CSS selector of "click" (skipped when none shows within 5 s), wait until the
// page's text (with its frames') holds every "expect" string, let the charts settle, save
// <out>/<name>.png. Writes <out>/pages.json: [{name, url, title, text, plotly, missing}]
// ("plotly": plotly figures drawn; "missing": expected strings not shown).
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

// The text of a page and of its frames (MLflow shows an HTML artifact in an iframe), and how
// many plotly figures they drew.
async function contents(tab) {
  let text = "", plotly = 0;
  for (const frame of tab.frames()) {
    const found = await frame.evaluate(() => [document.body?.innerText ?? "",
      document.querySelectorAll(".js-plotly-plot .main-svg").length]).catch(() => ["", 0]);
    text += found[0] + "\n";
    plotly += found[1];
  }
  return { text, plotly };
}

// The page's contents once they hold every string of ``expect`` (or when time is up).
async function until(tab, expect, start) {
  let shown = await contents(tab);
  while (expect.some((s) => !shown.text.includes(s)) && Date.now() - start < timeout) {
    await tab.waitForTimeout(250);
    shown = await contents(tab);
  }
  return shown;
}
try {
  for (const page of config.pages) {
    const context = await browser.newContext({
      viewport: { width: page.width ?? 1600, height: page.height ?? 900 },
    });
    const tab = await context.newPage();
    const start = Date.now();
    await tab.goto(page.url, { waitUntil: "domcontentloaded", timeout });
    await until(tab, page.ready ? [page.ready] : [], start);
    for (const selector of page.click ?? []) {
      await tab.locator(selector).first().click({ timeout: 5000 })
        .catch(() => console.error(`${page.name}: nothing to click at ${selector}`));
    }
    const expect = page.expect ?? [];
    let shown = await until(tab, expect, start);
    await tab.waitForTimeout(page.settle_ms ?? 1500); // charts animate in
    await tab.screenshot({ path: join(config.out, `${page.name}.png`) });
    shown = await contents(tab);
    results.push({ name: page.name, url: page.url, title: await tab.title(), ...shown,
                   missing: expect.filter((s) => !shown.text.includes(s)) });
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
