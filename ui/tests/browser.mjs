// Drives the UI of a running spanflow in Debian's Chromium (headless, through playwright-core)
// and prints one JSON report of what it saw: the Rust test crates/cli/tests/ui.rs starts
// spanflow, sends known traces, runs this script and checks the report against the data.
//
//   node ui/tests/browser.mjs <base-url> <screenshot-dir> '<known>'
//
// <known> is JSON: {"checkout": "<trace id>", "big": "<trace id of 10,000 spans>",
// "detail_span": "<service and name of the span whose detail pane is read>", "workload": "<a
// workload on the map by workload>", "failing_workload": "<the workload whose spans failed>",
// "pod": "<a pod to search by>"}; or
// {"token": "<query token>"} against a spanflow that wants one, to check that the UI asks for
// it. Screenshots of every page go to <screenshot-dir>. The browser is /usr/bin/chromium
// unless SPANFLOW_CHROMIUM names another.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, shots, knownText] = process.argv.slice(2);
if (!base || !shots || !knownText) {
  console.error("usage: node ui/tests/browser.mjs <base-url> <screenshot-dir> '<known traces as JSON>'");
  process.exit(2);
}
const known = JSON.parse(knownText);
mkdirSync(shots, { recursive: true });

const report = { steps: {}, failures: [], console_errors: [], external_requests: [] };
let currentStep = "";
const origin = new URL(base).origin;

const browser = await chromium.launch({
  executablePath: process.env.SPANFLOW_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
const page = await context.newPage();
page.setDefaultTimeout(30_000);
page.on("console", (message) => {
  if (message.type() === "error") report.console_errors.push({ step: currentStep, text: message.text() });
});
page.on("pageerror", (error) => report.console_errors.push({ step: currentStep, text: String(error) }));
page.on("request", (request) => {
  const url = new URL(request.url());
  if (url.protocol !== "data:" && url.origin !== origin) report.external_requests.push(request.url());
});

/** Runs one step; a failure is reported (with a screenshot) and the next step still runs. */
async function step(name, body) {
  const started = Date.now();
  currentStep = name;
  try {
    report.steps[name] = (await body()) ?? {};
  } catch (error) {
    report.failures.push({ step: name, error: String(error?.stack ?? error) });
    report.steps[name] = { failed: true };
    await page.screenshot({ path: join(shots, `failed-${name}.png`) }).catch(() => {});
  }
  report.steps[name].elapsed_ms = Date.now() - started;
}

async function shot(name) {
  const path = join(shots, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

/** The waterfall's rows on screen, in row order. */
async function waterfallRows() {
  return page.$$eval(".wf-row:not([hidden])", (rows) =>
    rows
      .map((row) => ({
        row: Number(row.dataset.row),
        span_id: row.dataset.spanId,
        service: row.querySelector(".wf-service").textContent,
        place: row.querySelector(".wf-place").hidden ? "" : row.querySelector(".wf-place").textContent,
        operation: row.querySelector(".wf-operation").textContent,
        level: Number(row.getAttribute("aria-level")),
        error: row.classList.contains("error"),
        critical: row.classList.contains("critical"),
        critical_marks: row.querySelectorAll(".wf-critical").length,
        bar: !row.querySelector(".wf-bar").hidden,
        selected: row.classList.contains("selected"),
      }))
      .sort((a, b) => a.row - b.row),
  );
}

const waterfallReady = () => page.waitForSelector('[data-testid="waterfall"][data-ready="true"]');

if (known.token) {
  await step("token", async () => {
    await page.goto(`${base}/search`);
    await page.waitForSelector(".message-error");
    const asked = await page.innerText(".message-error");
    await page.fill("#access-token-inline", known.token);
    await page.click(".message-error button[type=submit]");
    await page.waitForSelector('[data-testid="result-list"], .message-info');
    const answered = await page.innerText(".search-results");
    await shot("token");
    return { asked, answered };
  });
  await browser.close();
  console.log(JSON.stringify(report));
  process.exit(0);
}

await step("search", async () => {
  await page.goto(`${base}/search?service=frontend&lookback=1h`);
  await page.waitForSelector('[data-testid="result-list"]');
  const results = await page.$$eval("a.result", (links) =>
    links.map((link) => ({
      trace_id: link.dataset.traceId,
      title: link.querySelector(".result-title").textContent,
      spans: link.querySelector(".result-spans").textContent,
      errors: link.querySelector(".result-errors").textContent,
      duration: link.querySelector(".result-duration").textContent,
    })),
  );
  const dots = await page.$$eval('[data-testid="scatter"] a.dot-link', (links) => links.map((link) => link.dataset.traceId));
  const screenshot = await shot("search");
  // A dot opens its trace.
  await page.click(`[data-testid="scatter"] a.dot-link[data-trace-id="${known.checkout}"]`);
  await page.waitForURL(`**/trace/${known.checkout}`);
  await waterfallReady();
  return { results, dots, screenshot, dot_opened: new URL(page.url()).pathname };
});

await step("search_form", async () => {
  await page.goto(`${base}/search`);
  await page.waitForSelector('[data-testid="result-list"], .message');
  await page.waitForSelector('#search-service option[value="inventory"]', { state: "attached" });
  await page.selectOption("#search-service", "inventory");
  await page.selectOption("#search-status", "error");
  await page.click("button[type=submit].primary");
  await page.waitForURL(/status=error/);
  await page.waitForSelector('[data-testid="result-list"]');
  const results = await page.$$eval("a.result", (links) => links.map((link) => link.dataset.traceId));
  const url = new URL(page.url());
  // The URL alone brings the same search back.
  await page.reload();
  await page.waitForSelector('[data-testid="result-list"]');
  const reloaded = await page.$$eval("a.result", (links) => links.map((link) => link.dataset.traceId));
  return {
    results,
    reloaded,
    query: Object.fromEntries(url.searchParams),
    service_after_reload: await page.inputValue("#search-service"),
  };
});

await step("search_places", async () => {
  // Where spans ran: the workload field with the status, from the form.
  await page.goto(`${base}/search?lookback=1h`);
  await page.waitForSelector('[data-testid="result-list"], .message');
  await page.fill("#search-workload", known.failing_workload);
  await page.selectOption("#search-status", "error");
  await page.click("button[type=submit].primary");
  await page.waitForURL(/workload=/);
  await page.waitForSelector('[data-testid="result-list"], .message-info');
  const by_workload = await page.$$eval("a.result", (links) => links.map((link) => link.dataset.traceId));
  const query = Object.fromEntries(new URL(page.url()).searchParams);
  // Namespace and pod from the URL, back in the form.
  await page.goto(`${base}/search?lookback=1h&namespace=shop&pod=${encodeURIComponent(known.pod)}`);
  await page.waitForSelector('[data-testid="result-list"], .message-info');
  const by_pod = await page.$$eval("a.result", (links) => links.map((link) => link.dataset.traceId));
  const screenshot = await shot("search-places");
  await page.goto(`${base}/search?lookback=1h&node=nowhere`);
  await page.waitForSelector('[data-testid="result-list"], .message-info');
  const nowhere = await page.innerText(".search-results");
  return {
    by_workload,
    query,
    by_pod,
    form: { namespace: await page.inputValue("#search-namespace"), node: await page.inputValue("#search-node") },
    nowhere,
    screenshot,
  };
});

await step("trace", async () => {
  const started = Date.now();
  await page.goto(`${base}/trace/${known.checkout}`);
  await waterfallReady();
  const open_ms = Date.now() - started;
  const rows = await waterfallRows();
  const title = await page.textContent(".trace-title");
  const span_count = await page.textContent('[data-testid="span-count"]');
  const legend = await page.$$eval(".service-legend .chip", (chips) => chips.map((chip) => chip.textContent));
  const row = rows.find((candidate) => `${candidate.service} ${candidate.operation}` === known.detail_span);
  if (!row) throw new Error(`no row ${known.detail_span} in ${JSON.stringify(rows)}`);
  await page.click(`.wf-row[data-span-id="${row.span_id}"] .wf-operation`);
  await page.waitForSelector(`[data-testid="span-detail"][data-span-id="${row.span_id}"]`);
  const detail_text = await page.innerText('[data-testid="span-detail"]');
  const attribute_types = await page.$$eval('[data-testid="span-detail"] [data-section="attributes"] .attr-group', (groups) =>
    Object.fromEntries(
      groups.map((group) => [group.dataset.type, [...group.querySelectorAll("th")].map((th) => th.textContent)]),
    ),
  );
  // Where both ends of the call ran, as the pane shows them.
  const places = await page.$$eval('[data-testid="span-detail"] [data-testid="span-places"] .place-end', (ends) =>
    ends.map((end) => ({
      end: end.dataset.end,
      own: end.querySelector(".place-own") !== null,
      fields: Object.fromEntries([...end.querySelectorAll("[data-field]")].map((cell) => [cell.dataset.field, cell.firstChild.textContent])),
      labels: [...end.querySelectorAll("[data-label]")].map((chip) => chip.textContent),
    })),
  );
  const url = new URL(page.url());
  const screenshot = await shot("trace");
  // The pane's lower sections: resource, events, links.
  await page.$eval(".trace-detail", (pane) => (pane.scrollTop = pane.scrollHeight));
  await shot("trace-detail-end");
  await page.$eval(".trace-detail", (pane) => (pane.scrollTop = 0));
  // Zoom: the time axis fits the selected span, and comes back.
  await page.click('[data-testid="span-detail"] button:has-text("Zoom to span")');
  await page.waitForURL(/zoom=/);
  const zoom_ticks = await page.$$eval(".wf-ruler-ticks .wf-tick", (ticks) => ticks.map((tick) => tick.textContent));
  await page.click(".zoom-reset");
  const unzoomed_ticks = await page.$$eval(".wf-ruler-ticks .wf-tick", (ticks) => ticks.map((tick) => tick.textContent));
  return {
    zoom_ticks,
    unzoomed_ticks, open_ms, rows, title, span_count, legend, detail_text, attribute_types, places, selected_in_url: url.searchParams.get("span"), screenshot };
});

await step("trace_state", async () => {
  // The selected span survives a reload: the URL holds it.
  await page.reload();
  await waterfallReady();
  await page.waitForSelector('[data-testid="span-detail"]');
  const after_reload = await page.getAttribute('[data-testid="span-detail"]', "data-span-id");
  // Keyboard: the next row.
  await page.focus('[data-testid="waterfall-rows"]');
  await page.keyboard.press("ArrowDown");
  await page.waitForFunction((id) => {
    const pane = document.querySelector('[data-testid="span-detail"]');
    return pane && pane.dataset.spanId !== id;
  }, after_reload);
  const after_arrow = await page.getAttribute('[data-testid="span-detail"]', "data-span-id");
  // Fold the first span with children below the root.
  const rows = await waterfallRows();
  const parent = rows.find((row) => row.level === 2 && rows.some((other) => other.level === 3 && other.row === row.row + 1));
  await page.click(`.wf-row[data-span-id="${parent.span_id}"] .wf-toggle`);
  await page.waitForFunction((count) => document.querySelectorAll(".wf-row:not([hidden])").length < count, rows.length);
  const folded_rows = (await waterfallRows()).length;
  const folded_url = Object.fromEntries(new URL(page.url()).searchParams);
  await page.reload();
  await waterfallReady();
  const folded_after_reload = (await waterfallRows()).length;
  // Find: matches counted and the next one selected.
  await page.fill("#trace-find", "inventory");
  await page.press("#trace-find", "Enter");
  await page.waitForSelector('[data-testid="span-detail"]');
  const find_count = await page.textContent('[data-testid="find-count"]');
  const find_selected = await page.textContent('[data-testid="span-detail"] .detail-service');
  await shot("trace-find");
  // Only the critical path: the other spans dimmed.
  await page.check("#trace-critical-only");
  // The rows are redrawn on the next animation frame.
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
  const dimmed = await page.$$eval(".wf-row.dim:not([hidden])", (rows) => rows.length);
  await shot("trace-critical-path");
  await page.uncheck("#trace-critical-only");
  return { after_reload, after_arrow, folded_parent: parent.span_id, folded_rows, folded_url, folded_after_reload, find_count, find_selected, dimmed };
});

await step("flame", async () => {
  await page.goto(`${base}/trace/${known.checkout}?view=flame`);
  await page.waitForSelector('[data-testid="flame"][data-ready="true"]');
  const drawn = Number(await page.getAttribute('[data-testid="flame"]', "data-drawn"));
  // Click the root's box (top row, left edge) to select it.
  const box = await page.locator(".flame-canvas").boundingBox();
  await page.mouse.click(box.x + 20, box.y + 10);
  await page.waitForSelector('[data-testid="span-detail"]');
  const selected = await page.textContent('[data-testid="span-detail"] h2');
  const screenshot = await shot("flame");
  return { drawn, selected, screenshot };
});

await step("trace_id_box", async () => {
  await page.goto(`${base}/map`);
  await page.fill("#trace-id-input", known.checkout.toUpperCase());
  await page.press("#trace-id-input", "Enter");
  await page.waitForURL(`**/trace/${known.checkout}`);
  await waterfallReady();
  const rows = (await waterfallRows()).length;
  await page.fill("#trace-id-input", "not-a-trace");
  await page.press("#trace-id-input", "Enter");
  const hint = await page.textContent(".trace-id-hint");
  return { path: new URL(page.url()).pathname, rows, invalid_hint: hint };
});

await step("not_found", async () => {
  await page.goto(`${base}/trace/0000000000000000000000000000abcd`);
  await page.waitForSelector(".message:not(.message-loading)");
  return { message: await page.innerText(".message") };
});

await step("map", async () => {
  await page.goto(`${base}/map?lookback=1h`);
  await page.waitForSelector('[data-testid="service-map"] .node');
  const edges = await page.$$eval(".edge", (groups) =>
    groups.map((group) => ({
      caller: group.dataset.caller,
      callee: group.dataset.callee,
      kind: group.dataset.kind,
      calls: Number(group.dataset.calls),
      errors: Number(group.dataset.errors),
    })),
  );
  const nodes = await page.$$eval(".node", (groups) => groups.map((group) => ({ name: group.dataset.node, kind: group.dataset.kind })));
  const labels = await page.$$eval(".edge-label", (texts) =>
    texts.map((text) => [...text.querySelectorAll("tspan")].map((part) => part.textContent).join("")),
  );
  await page.click('.node[data-node="payments"]');
  await page.waitForURL(/service=payments/);
  await page.waitForSelector('[data-testid="red-charts"] svg');
  const charts = await page.$$eval('[data-testid="red-charts"] figure', (figures) =>
    figures.map((figure) => ({
      title: figure.querySelector(".chart-title").textContent,
      series: figure.querySelectorAll("path.series").length,
      points: figure.querySelectorAll(".points circle").length,
    })),
  );
  const operations = await page.$$eval('[data-testid="operations"] tbody tr', (rows) =>
    rows.map((row) => [...row.querySelectorAll("td")].slice(0, 3).map((cell) => cell.textContent)),
  );
  const screenshot = await shot("map");
  // An operation's own charts.
  await page.click('[data-testid="operations"] tbody tr a');
  await page.waitForURL(/operation=/);
  await page.waitForSelector('[data-testid="red-charts"] svg');
  const operation_scope = await page.textContent(".red-scope");
  return { edges, nodes, labels, charts, operations, operation_scope, screenshot };
});

await step("map_by_workload", async () => {
  await page.goto(`${base}/map?lookback=1h`);
  await page.waitForSelector('[data-testid="service-map"] .node');
  const pressed = async () =>
    page.$$eval('[data-testid="map-by"] button[aria-pressed="true"]', (buttons) => buttons.map((button) => button.dataset.by));
  const pressed_before = await pressed();
  await page.click('[data-testid="map-by"] [data-by="workload"]');
  await page.waitForURL(/by=workload/);
  await page.waitForSelector(`[data-testid="service-map"] .node[data-node="${known.workload}"]`);
  const edges = await page.$$eval(".edge", (groups) =>
    groups.map((group) => ({
      caller: group.dataset.caller,
      callee: group.dataset.callee,
      kind: group.dataset.kind,
      calls: Number(group.dataset.calls),
      errors: Number(group.dataset.errors),
    })),
  );
  const nodes = await page.$$eval(".node", (groups) =>
    groups.map((group) => ({
      name: group.dataset.node,
      kind: group.dataset.kind,
      label: group.querySelector(".node-name").textContent,
      title: group.getAttribute("aria-label"),
    })),
  );
  const pressed_after = await pressed();
  const screenshot = await shot("map-by-workload");
  // A workload's calls; RED metrics stay per service.
  await page.click(`.node[data-node="${known.workload}"]`);
  await page.waitForURL(/service=/);
  await page.waitForSelector('[data-testid="workload-calls"]');
  const calls = await page.$$eval('[data-testid="workload-calls"] tbody tr', (rows) =>
    rows.map((row) => row.querySelector("td").textContent),
  );
  const url = Object.fromEntries(new URL(page.url()).searchParams);
  // And back: a node per service.
  await page.click('[data-testid="map-by"] [data-by="service"]');
  await page.waitForURL((next) => !next.searchParams.has("by"));
  await page.waitForSelector('[data-testid="service-map"] .node[data-node="frontend"]');
  const nodes_by_service = await page.$$eval(".node", (groups) => groups.map((group) => group.dataset.node));
  return { pressed_before, pressed_after, edges, nodes, calls, url, nodes_by_service, screenshot };
});

await step("big_trace", async () => {
  const started = Date.now();
  await page.goto(`${base}/trace/${known.big}`);
  await page.waitForSelector('[data-testid="waterfall"][data-ready="true"]', { timeout: 60_000 });
  const open_ms = Date.now() - started;
  const timings = await page.$eval(".trace-page", (element) => ({ ...element.dataset }));
  // Where the time went: the API's answer (first byte, then the body) and the page's part.
  timings.api = await page.evaluate((id) => {
    const entry = performance.getEntriesByType("resource").find((item) => item.name.includes(`/api/v1/traces/${id}`));
    return entry
      ? {
          first_byte_ms: Math.round(entry.responseStart - entry.requestStart),
          body_ms: Math.round(entry.responseEnd - entry.responseStart),
          bytes: entry.decodedBodySize,
        }
      : null;
  }, known.big);
  const row_count = Number(await page.getAttribute('[data-testid="waterfall"]', "data-row-count"));
  const dom_rows = await page.$$eval(".wf-row", (rows) => rows.length);
  const screenshot = await shot("big-trace");
  // Scroll a screen at a time through the whole trace and time the frames.
  const scrolling = await page.evaluate(async () => {
    const scroller = document.querySelector(".wf-scroller");
    const frames = [];
    const nextFrame = () => new Promise((resolve) => requestAnimationFrame(resolve));
    await nextFrame();
    let last = performance.now();
    const steps = 150;
    const stride = Math.max(scroller.clientHeight, Math.ceil((scroller.scrollHeight - scroller.clientHeight) / steps));
    while (scroller.scrollTop + scroller.clientHeight < scroller.scrollHeight - 1 && frames.length < steps + 5) {
      scroller.scrollTop += stride;
      await nextFrame();
      const now = performance.now();
      frames.push(now - last);
      last = now;
    }
    await nextFrame();
    await nextFrame();
    const rows = [...document.querySelectorAll(".wf-row:not([hidden])")].map((row) => Number(row.dataset.row));
    frames.sort((a, b) => a - b);
    return {
      frames: frames.length,
      median_frame_ms: frames[Math.floor(frames.length / 2)],
      p95_frame_ms: frames[Math.floor(frames.length * 0.95)],
      max_frame_ms: frames[frames.length - 1],
      last_row: Math.max(...rows),
      dom_rows: document.querySelectorAll(".wf-row").length,
    };
  });
  const flameStarted = Date.now();
  await page.click('.tab[data-mode="flame"]');
  await page.waitForSelector('[data-testid="flame"][data-ready="true"]');
  const flame_ms = Date.now() - flameStarted;
  const flame_drawn = Number(await page.getAttribute('[data-testid="flame"]', "data-drawn"));
  const flame_screenshot = await shot("big-flame");
  return { open_ms, timings, row_count, dom_rows, scrolling, flame_ms, flame_drawn, screenshot, flame_screenshot };
});

await step("big_trace_cut", async () => {
  // A URL can ask for fewer spans: the upper levels, and a banner that offers the rest.
  await page.goto(`${base}/trace/${known.big}?limit=5000`);
  await waterfallReady();
  const row_count = Number(await page.getAttribute('[data-testid="waterfall"]', "data-row-count"));
  const banner = await page.innerText('[data-testid="truncated"]');
  await page.click('[data-testid="truncated"] a');
  await page.waitForURL(/limit=0/);
  await page.waitForFunction(() => document.querySelector('[data-testid="waterfall"]')?.dataset.rowCount === "10000", null, {
    timeout: 60_000,
  });
  const all_rows = Number(await page.getAttribute('[data-testid="waterfall"]', "data-row-count"));
  return { row_count, banner, all_rows, banner_after: await page.$('[data-testid="truncated"]').then((element) => element !== null) };
});

await browser.close();
console.log(JSON.stringify(report));
