// Screenshots of web pages in headless Chromium (the system's browser, never a download), driven
// by playwright-core, and what each page shows. Run by scripts/mlflow_screenshots.py, which
// starts the servers and passes one JSON argument:
//   {"chromium": "/usr/bin/chromium", "out": "<folder>", "timeout_ms": 120000, "width": 1600,
//    "pages": [{"name": "runs", "url": "http://127.0.0.1:PORT/#/...", "height": 900,
//               "ready": "<CSS selector> | text=<text>", "click": ["button[aria-label=Close]"],
//               "expect": ["trial-0000"], "probe": "table | parallel | plotly | width"}]}
// Every wait is on a page state, up to timeout_ms each (a loaded machine is slow, never wrong):
// for each page, open it, wait until "ready" shows, click each "click" selector shown then
// (a pop-up's close button; none shown is fine) and wait for "ready" again, wait until the
// page's text (its frames' too) holds every "expect" string and the probe reads something,
// let the charts settle, save <out>/<name>.png and what the probe read:
//   table: the runs table's column ids ("metrics.`objective`", "params.`sampler.temperature`");
//   parallel: the labels of the chart view's parallel coordinates axes (MLflow's d3 chart);
//   plotly: the number of plotly figures, and the labels of the first parcoords trace's axes;
//   width: the right edge of the widest text block (p, pre, code, li: the description's), and
//     which it is.
// Writes <out>/pages.json: [{name, url, title, text, probe, error}]. Exit status 0 when every
// page opened and showed its "ready" state, else 1 (the caller checks the contents).

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const config = JSON.parse(process.argv[2]);
const timeout = config.timeout_ms ?? 120000;
const browser = await chromium.launch({
  executablePath: config.chromium,
  headless: true,
  timeout,
  // No sandbox (CI runs as root), no proxy (the servers are on 127.0.0.1), no GPU.
  args: ["--no-sandbox", "--no-proxy-server", "--disable-gpu", "--disable-dev-shm-usage"],
});
const results = [];

// What the probes read, in one frame (run in the page).
function probeFrame(kind) {
  const text = (e) => (e.textContent ?? "").trim();
  if (kind === "table") {
    return { columns: [...document.querySelectorAll(".ag-header-cell[col-id]")]
      .map((e) => e.getAttribute("col-id")) };
  }
  if (kind === "parallel") {
    return { axes: [...document.querySelectorAll("svg g.dimension text.label")].map(text) };
  }
  if (kind === "plotly") {
    const figures = [...document.querySelectorAll(".js-plotly-plot")];
    const traces = figures.flatMap((f) => f.data ?? []);
    const parcoords = traces.find((t) => t.type === "parcoords");
    return { plotly: figures.filter((f) => f.querySelector(".main-svg")).length,
             axes: parcoords ? (parcoords.dimensions ?? []).map((d) => d.label) : [] };
  }
  if (kind === "width") {
    let right = 0, widest = "";
    for (const e of document.querySelectorAll("p, pre, code, li")) {
      const box = e.getBoundingClientRect();
      if (box.width > 0 && box.right > right) {
        right = Math.round(box.right);
        widest = `${e.tagName.toLowerCase()}: ${text(e).slice(0, 80)}`;
      }
    }
    return { right, widest, scrollWidth: document.documentElement.scrollWidth };
  }
  return {};
}

// The text of a page and of its frames (MLflow shows an HTML artifact in an iframe), and what
// the probe reads there (the first frame where it reads something).
async function contents(tab, kind) {
  let text = "", probe = null;
  for (const frame of tab.frames()) {
    const found = await frame.evaluate(([k, fn]) => [document.body?.innerText ?? "",
      k ? eval(`(${fn})`)(k) : null], [kind, probeFrame.toString()]).catch(() => ["", null]);
    text += found[0] + "\n";
    if (found[1] && !probe) probe = found[1];
    else if (found[1] && probe?.plotly !== undefined) {  // plotly figures: all frames count
      probe.plotly += found[1].plotly;
      if (!probe.axes.length) probe.axes = found[1].axes;
    }
  }
  return { text, probe };
}

// Whether a probe read what it is for.
function read(kind, probe) {
  if (!kind || !probe) return !kind;
  if (kind === "table") return probe.columns.length > 0;
  if (kind === "parallel") return probe.axes.length > 0;
  if (kind === "plotly") return probe.plotly > 0;
  return true;
}

async function waitReady(tab, ready) {
  if (!ready) return;
  const where = ready.startsWith("text=") ? tab.getByText(ready.slice(5)).first()
    : tab.locator(ready).first();
  await where.waitFor({ state: "attached", timeout });
}

try {
  for (const page of config.pages) {
    const context = await browser.newContext({
      viewport: { width: page.width ?? config.width ?? 1600, height: page.height ?? 900 },
    });
    context.setDefaultTimeout(timeout);
    const tab = await context.newPage();
    const start = Date.now();
    let error = null;
    try {
      await tab.goto(page.url, { waitUntil: "domcontentloaded", timeout });
      await waitReady(tab, page.ready);
      for (const selector of page.click ?? []) {
        const target = tab.locator(selector).first();
        if (await target.isVisible()) await target.click({ timeout });
      }
      await waitReady(tab, page.ready);
      const expect = page.expect ?? [];
      let shown = await contents(tab, page.probe);
      while ((expect.some((s) => !shown.text.includes(s)) || !read(page.probe, shown.probe))
             && Date.now() - start < timeout) {
        await tab.waitForTimeout(500);
        shown = await contents(tab, page.probe);
      }
      await tab.waitForTimeout(2000); // charts animate in (the UI polls: never "network idle")
    } catch (err) {
      error = String(err).split("\n")[0];
    }
    await tab.screenshot({ path: join(config.out, `${page.name}.png`) }).catch(() => {});
    const shown = await contents(tab, page.probe);
    results.push({ name: page.name, url: page.url, title: await tab.title().catch(() => ""),
                   ...shown, error });
    console.error(`${page.name}: ${((Date.now() - start) / 1000).toFixed(1)} s`
                  + (error ? ` (${error})` : ""));
    await context.close();
  }
} finally {
  await browser.close();
}
writeFileSync(join(config.out, "pages.json"), JSON.stringify(results, null, 2));
process.exit(results.some((r) => r.error) ? 1 : 0);
