// The service map: services, databases and queues with calls, errors and latency on the
// edges; a selected service's RED charts (rate, errors, duration) overall and per operation.
// By service, or by workload: a node for where each end ran (its Kubernetes service, else its
// workload, else its host or address). State in the query string: the time range, `by`,
// `service` (the selected node) and `operation`.

import { api, type MapBy, type MapEdge, type MapNode, type Red, type RedPoint } from "../api";
import { lineChart, onWidth, sparkline } from "../charts";
import { ERROR_COLOR, serviceColor } from "../color";
import { clear, h, message, s } from "../dom";
import { errorMessage } from "../errors";
import { formatDuration, formatPercent, formatRate, plural, rateFormatter } from "../format";
import { navigate, type View } from "../router";
import { rangeControl, resolveRange, type Range } from "../timerange";
import { layoutGraph, NODE_HEIGHT, NODE_WIDTH, type Layout } from "./layout";

const KIND_LABEL: Record<string, string> = { service: "service", database: "database", messaging: "queue" };

function hrefWith(params: URLSearchParams, changes: Record<string, string | null>): string {
  const next = new URLSearchParams(params);
  for (const [key, value] of Object.entries(changes)) {
    if (value === null) next.delete(key);
    else next.set(key, value);
  }
  const text = next.toString();
  return `/map${text ? `?${text}` : ""}`;
}

/** What the map's nodes stand for, from the URL. */
function mapBy(params: URLSearchParams): MapBy {
  return params.get("by") === "workload" ? "workload" : "service";
}

/** What the map is read for: a change means reading it again. */
function rangeKey(params: URLSearchParams): string {
  return ["lookback", "start", "end"].map((key) => params.get(key) ?? "").join("|") + `|${mapBy(params)}`;
}

export function mapView(initialUrl: URL): View {
  let params = initialUrl.searchParams;
  const range = rangeControl("map", () => {
    const next = new URLSearchParams(params);
    range.write(next);
    navigate(`/map?${next}`);
  });
  const refresh = h("button", { type: "button", title: "Read the map again" }, "Refresh");
  refresh.addEventListener("click", () => void loadMap());
  const byButtons: Record<MapBy, HTMLButtonElement> = {
    service: h("button", { type: "button", class: "tab", "data-by": "service", title: "A node per service (service.name)" }, "By service"),
    workload: h(
      "button",
      { type: "button", class: "tab", "data-by": "workload", title: "A node per place: the Kubernetes service, else the workload, else the host" },
      "By workload",
    ),
  };
  for (const [by, button] of Object.entries(byButtons) as [MapBy, HTMLButtonElement][]) {
    // Another kind of node: the selected one is not on the new map.
    button.addEventListener("click", () => navigate(hrefWith(params, { by: by === "service" ? null : by, service: null, operation: null })));
  }
  const bySwitch = h("div", { class: "tabs", role: "group", "aria-label": "Nodes", "data-testid": "map-by" }, byButtons.service, byButtons.workload);
  const showBy = () => {
    for (const [by, button] of Object.entries(byButtons)) button.setAttribute("aria-pressed", String(by === mapBy(params)));
  };
  const graph = h("section", { class: "map-graph", "aria-label": "Service map", "data-testid": "service-map" });
  const side = h("section", { class: "map-side", "aria-label": "Service details", "aria-live": "polite" });
  const element = h(
    "div",
    { class: "page map-page" },
    h("div", { class: "page-toolbar" }, h("h1", null, "Service map"), bySwitch, h("div", { class: "header-spacer" }), range.element, refresh),
    h("div", { class: "map-body" }, graph, side),
  );

  let loadedRange = "";
  let mapAbort: AbortController | null = null;
  let redAbort: AbortController | null = null;
  let nodes: MapNode[] = [];
  let edges: MapEdge[] = [];
  let window: Range = resolveRange(params);
  let stopCharts: (() => void) | null = null;
  let redFor = "";

  async function loadMap(): Promise<void> {
    mapAbort?.abort();
    mapAbort = new AbortController();
    const signal = mapAbort.signal;
    loadedRange = rangeKey(params);
    window = resolveRange(params);
    const by = mapBy(params);
    showBy();
    clear(graph);
    graph.append(message("loading", "Reading the service map…"));
    try {
      const [map, services] = await Promise.all([
        api.serviceMap(window.start, window.end, by, signal),
        // Services that call nobody still have a node of their own; workloads are known only
        // by their calls.
        by === "service" ? api.services(window.start, window.end, signal) : Promise.resolve([]),
      ]);
      const known = new Set(map.nodes.map((node) => node.name));
      nodes = [...map.nodes, ...services.filter((name) => !known.has(name)).map((name): MapNode => ({ name, kind: "service" }))];
      edges = map.edges;
      drawGraph();
      redFor = "";
      void showSide();
    } catch (error) {
      if ((error as Error).name === "AbortError") return;
      clear(graph);
      graph.append(errorMessage(error, () => void loadMap()));
    }
  }

  function drawGraph(): void {
    clear(graph);
    if (nodes.length === 0) {
      graph.append(
        mapBy(params) === "workload"
          ? message(
              "info",
              "No calls",
              `No calls between services in ${window.label}. By workload, a node is where one end of a call ran: its Kubernetes service, else its workload, else its host.`,
            )
          : message(
              "info",
              "No services",
              `No spans arrived in ${window.label}. Send OTLP to the agent and the services appear here with the calls between them.`,
            ),
      );
      return;
    }
    const layout = layoutGraph(
      nodes.map((node) => node.name),
      edges.map((edge) => [edge.caller, edge.callee]),
    );
    const seconds = Math.max(1, (window.end - window.start) / 1e6);
    graph.append(drawMap(layout, nodes, edges, seconds, params.get("service"), mapBy(params)));
    if (edges.length === 0) {
      graph.append(
        h(
          "p",
          { class: "map-note muted" },
          `No calls between services in ${window.label}. Edges come from client spans whose child is a server span in another service, and from client spans that name a database or a queue (db.system, messaging.system).`,
        ),
      );
    }
  }

  async function showSide(): Promise<void> {
    const service = params.get("service");
    const operation = params.get("operation");
    const key = `${service}|${loadedRange}`;
    const node = nodes.find((item) => item.name === service);
    const byWorkload = mapBy(params) === "workload";
    if (!service || !node) {
      redAbort?.abort();
      stopCharts?.();
      redFor = "";
      clear(side);
      side.append(
        h("h2", null, byWorkload ? "Workloads" : "RED metrics"),
        h(
          "div",
          null,
        h(
          "p",
          { class: "muted" },
          byWorkload
            ? "Each node is where one end of a call ran: its Kubernetes service, else its workload, else its host (else the service's name). Select one to see its calls; RED metrics are per service."
            : "Select a service on the map to see its request rate, error rate and duration over time, overall and per operation.",
        ),
        nodes.length
          ? h(
              "ul",
              { class: "service-list" },
              nodes
                .filter((item) => item.kind === "service")
                .map((item) =>
                  h(
                    "li",
                    null,
                    h("a", { href: hrefWith(params, { service: item.name, operation: null }) }, h("i", { class: "swatch", style: `background:${serviceColor(item.name)}` }), item.name),
                  ),
                ),
            )
          : null,
        ),
      );
      return;
    }
    if (byWorkload && node.kind === "service") {
      redAbort?.abort();
      stopCharts?.();
      redFor = "";
      clear(side);
      side.append(
        h("h2", null, h("span", { class: "kind-tag" }, "workload"), node.name),
        h("p", { class: "muted" }, "Calls from and to where this node ran. RED metrics are per service: see them By service."),
        h(
          "div",
          { "data-testid": "workload-calls" },
          edgeTable("Calls to", edges.filter((edge) => edge.caller === node.name), "callee", window, params),
          edgeTable("Called by", edges.filter((edge) => edge.callee === node.name), "caller", window, params),
        ),
      );
      return;
    }
    if (node.kind !== "service") {
      redAbort?.abort();
      stopCharts?.();
      redFor = "";
      clear(side);
      side.append(
        h("h2", null, h("span", { class: "kind-tag" }, KIND_LABEL[node.kind]), node.name),
        h("p", { class: "muted" }, `${node.name} sends no spans of its own; these are its callers' client spans.`),
        h("div", null, edgeTable("Called by", edges.filter((edge) => edge.callee === node.name), "caller", window, params)),
      );
      return;
    }
    if (redFor === key) {
      drawRed(service, operation);
      return;
    }
    redAbort?.abort();
    redAbort = new AbortController();
    const signal = redAbort.signal;
    clear(side);
    side.append(message("loading", `Reading ${service}'s RED metrics…`));
    try {
      const [overall, byOperation] = await Promise.all([
        api.red(service, "service", window.start, window.end, signal),
        api.red(service, "operation", window.start, window.end, signal),
      ]);
      redData = { overall, byOperation };
      redFor = key;
      drawRed(service, operation);
    } catch (error) {
      if ((error as Error).name === "AbortError") return;
      clear(side);
      side.append(errorMessage(error, () => void showSide()));
    }
  }

  let redData: { overall: Red; byOperation: Red } | null = null;

  function drawRed(service: string, operation: string | null): void {
    stopCharts?.();
    clear(side);
    if (!redData) return;
    const { overall, byOperation } = redData;
    const step = overall.step;
    const firstBucket = Math.floor(overall.start / step) * step;
    const times: number[] = [];
    for (let time = firstBucket; time < overall.end; time += step) times.push(time);
    const operations = new Map<string, RedPoint[]>();
    for (const point of byOperation.points) {
      const name = point.operation ?? "";
      if (!operations.has(name)) operations.set(name, []);
      operations.get(name)!.push(point);
    }
    const points = operation ? (operations.get(operation) ?? []) : overall.points;
    const byTime = new Map(points.map((point) => [point.time, point]));
    const series = (pick: (point: RedPoint) => number, zero: boolean) =>
      times.map((time) => {
        const point = byTime.get(time);
        return point ? pick(point) : zero ? 0 : null;
      });
    const color = serviceColor(service);
    const charts = h("div", { class: "red-charts", "data-testid": "red-charts" });
    const searchParams = new URLSearchParams({ service });
    if (operation) searchParams.set("operation", operation);
    for (const key of ["lookback", "start", "end"]) {
      const value = params.get(key);
      if (value) searchParams.set(key, value);
    }
    const calls = points.reduce((sum, point) => sum + point.calls, 0);
    const errors = points.reduce((sum, point) => sum + point.errors, 0);
    side.append(
      h(
        "div",
        { class: "red-head" },
        h("h2", null, h("i", { class: "swatch big", style: `background:${color}` }), service),
        h("a", { href: `/search?${searchParams}`, class: "button-link" }, "Search traces"),
      ),
      operation
        ? h(
            "p",
            { class: "red-scope" },
            "Operation ",
            h("strong", null, operation),
            " · ",
            h("a", { href: hrefWith(params, { operation: null }) }, "all operations"),
          )
        : h("p", { class: "red-scope muted" }, "All entry spans (server and consumer) of the service"),
      h(
        "p",
        { class: "red-totals" },
        `${plural(calls, "call")} · ${formatRate(calls / Math.max(1, (overall.end - overall.start) / 1e6))} · `,
        h("span", { class: errors ? "error-text" : "" }, `${plural(errors, "error")} (${formatPercent(calls ? errors / calls : 0)})`),
      ),
      charts,
    );
    stopCharts = onWidth(charts, (width) => {
      clear(charts);
      charts.append(
        lineChart({
          title: "Request rate",
          times,
          step,
          width,
          series: [{ name: "rate", color, values: series((point) => point.rate, true) }],
          format: rateFormatter(Math.max(0, ...points.map((point) => point.rate))),
        }),
        lineChart({ title: "Error rate", times, step, width, series: [{ name: "errors", color: ERROR_COLOR, values: series((point) => point.error_rate, true) }], format: formatPercent }),
        lineChart({
          title: "Duration",
          times,
          step,
          width,
          format: formatDuration,
          series: [
            { name: "p50", color: "#4e79a7", values: series((point) => point.latency_p50, false) },
            { name: "p95", color: "#f28e2b", values: series((point) => point.latency_p95, false) },
            { name: "p99", color: "#b07aa1", values: series((point) => point.latency_p99, false), dashed: true },
          ],
        }),
      );
    });
    if (operations.size > 0) {
      const rows = [...operations.entries()]
        .map(([name, list]) => ({
          name,
          calls: list.reduce((sum, point) => sum + point.calls, 0),
          errors: list.reduce((sum, point) => sum + point.errors, 0),
          p95: Math.max(...list.map((point) => point.latency_p95)),
          rates: times.map((time) => list.find((point) => point.time === time)?.rate ?? 0),
        }))
        .sort((a, b) => b.calls - a.calls);
      side.append(
        h("h3", null, "Operations"),
        h(
          "table",
          { class: "table operations", "data-testid": "operations" },
          h(
            "thead",
            null,
            h("tr", null, h("th", null, "Operation"), h("th", { class: "num" }, "Calls"), h("th", { class: "num" }, "Errors"), h("th", { class: "num", title: "the highest p95 of any step" }, "Peak p95"), h("th", null, "Rate")),
          ),
          h(
            "tbody",
            null,
            rows.map((row) =>
              h(
                "tr",
                { class: row.name === operation ? "selected" : "" },
                h("td", null, h("a", { href: hrefWith(params, { operation: row.name }) }, row.name || "(no name)")),
                h("td", { class: "num" }, String(row.calls)),
                h("td", { class: row.errors ? "num error-text" : "num" }, row.errors ? formatPercent(row.errors / row.calls) : "0"),
                h("td", { class: "num" }, formatDuration(row.p95)),
                h("td", null, sparkline(row.rates, color)),
              ),
            ),
          ),
        ),
      );
    }
    side.append(
      h(
        "div",
        null,
        edgeTable("Calls to", edges.filter((edge) => edge.caller === service), "callee", window, params),
        edgeTable("Called by", edges.filter((edge) => edge.callee === service), "caller", window, params),
      ),
    );
  }

  function update(url: URL): void {
    params = url.searchParams;
    range.read(params);
    if (rangeKey(params) !== loadedRange) {
      void loadMap();
      return;
    }
    drawGraph();
    void showSide();
  }

  range.read(params);
  void loadMap();

  return {
    key: "map",
    title: "Service map",
    element,
    update,
    destroy() {
      mapAbort?.abort();
      redAbort?.abort();
      stopCharts?.();
    },
  };
}

function edgeTable(title: string, list: MapEdge[], other: "caller" | "callee", window: Range, params: URLSearchParams): HTMLElement | null {
  if (list.length === 0) return null;
  const seconds = Math.max(1, (window.end - window.start) / 1e6);
  return h(
    "div",
    null,
    h("h3", null, title),
    h(
      "table",
      { class: "table" },
      h("thead", null, h("tr", null, h("th", null, other === "caller" ? "Caller" : "Callee"), h("th", { class: "num" }, "Rate"), h("th", { class: "num" }, "Errors"), h("th", { class: "num" }, "p50"), h("th", { class: "num" }, "p95"), h("th", { class: "num" }, "p99"))),
      h(
        "tbody",
        null,
        list.map((edge) =>
          h(
            "tr",
            null,
            h("td", null, h("a", { href: hrefWith(params, { service: edge[other], operation: null }) }, edge[other])),
            h("td", { class: "num", title: plural(edge.calls, "call") }, formatRate(edge.calls / seconds)),
            h("td", { class: edge.errors ? "num error-text" : "num" }, formatPercent(edge.errors / Math.max(1, edge.calls))),
            h("td", { class: "num" }, formatDuration(edge.latency_p50)),
            h("td", { class: "num" }, formatDuration(edge.latency_p95)),
            h("td", { class: "num" }, formatDuration(edge.latency_p99)),
          ),
        ),
      ),
    ),
  );
}

/** A cylinder for databases, a box with slanted sides for queues, a rounded box for services. */
function nodeShape(kind: string, color: string): SVGElement {
  const w = NODE_WIDTH;
  const hgt = NODE_HEIGHT;
  if (kind === "database") {
    const ry = 6;
    return s(
      "g",
      { class: "node-shape" },
      s("path", { d: `M0,${ry} A${w / 2},${ry} 0 0 1 ${w},${ry} V${hgt - ry} A${w / 2},${ry} 0 0 1 0,${hgt - ry} Z`, fill: "#fff", stroke: "#64748b" }),
      s("path", { d: `M0,${ry} A${w / 2},${ry} 0 0 0 ${w},${ry}`, fill: "none", stroke: "#64748b" }),
    );
  }
  if (kind === "messaging") {
    return s("path", { class: "node-shape", d: `M10,0 H${w} L${w - 10},${hgt} H0 Z`, fill: "#fff", stroke: "#64748b" });
  }
  return s(
    "g",
    { class: "node-shape" },
    s("rect", { width: w, height: hgt, rx: 6, fill: "#fff", stroke: "#cbd5e1" }),
    s("rect", { width: 6, height: hgt, rx: 3, fill: color }),
  );
}

function drawMap(layout: Layout, nodes: MapNode[], edges: MapEdge[], seconds: number, selected: string | null, by: MapBy): SVGSVGElement {
  const kindLabel = (kind: string) => (by === "workload" && kind === "service" ? "workload" : KIND_LABEL[kind]);
  const svg = s("svg", {
    class: "map-svg",
    // Drawn at its size, shrunk to fit a narrower panel.
    style: `width:100%;max-width:${layout.width}px;height:auto`,
    viewBox: `0 0 ${layout.width} ${layout.height}`,
    role: "group",
    "aria-label": `${plural(nodes.length, "node")}, ${plural(edges.length, "edge")}`,
  });
  svg.append(
    s(
      "defs",
      null,
      s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#94a3b8" })),
      s("marker", { id: "arrow-error", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", fill: ERROR_COLOR })),
    ),
  );
  const maxCalls = Math.max(1, ...edges.map((edge) => edge.calls));
  const edgeLayer = s("g", { class: "edges" });
  const labelLayer = s("g", { class: "edge-labels" });
  for (const edge of edges) {
    const from = layout.nodes.get(edge.caller);
    const to = layout.nodes.get(edge.callee);
    if (!from || !to) continue;
    const errorRate = edge.errors / Math.max(1, edge.calls);
    let path: string;
    let labelX: number;
    let labelY: number;
    if (to.layer > from.layer) {
      const x1 = from.x + NODE_WIDTH;
      const y1 = from.y + NODE_HEIGHT / 2;
      const x2 = to.x - 2;
      const y2 = to.y + NODE_HEIGHT / 2;
      const bend = (x2 - x1) / 2;
      path = `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`;
      labelX = (x1 + x2) / 2;
      labelY = (y1 + y2) / 2 - 6;
    } else {
      // Back to an earlier layer (a cycle) or within one: a loop under the nodes.
      const x1 = from.x + NODE_WIDTH / 2;
      const y1 = from.y + NODE_HEIGHT;
      const x2 = to.x + NODE_WIDTH / 2;
      const y2 = to.y + NODE_HEIGHT + 2;
      const dip = Math.max(y1, y2) + 36;
      path = `M${x1},${y1} C${x1},${dip} ${x2},${dip} ${x2},${y2}`;
      labelX = (x1 + x2) / 2;
      labelY = dip - 4;
    }
    const dimmed = selected !== null && edge.caller !== selected && edge.callee !== selected;
    const width = 1.2 + 3.5 * Math.sqrt(edge.calls / maxCalls);
    const title = `${edge.caller} → ${edge.callee} (${kindLabel(edge.callee_kind)})\n${plural(edge.calls, "call")}, ${formatRate(edge.calls / seconds)}\n${plural(edge.errors, "error")} (${formatPercent(errorRate)})\np50 ${formatDuration(edge.latency_p50)} · p95 ${formatDuration(edge.latency_p95)} · p99 ${formatDuration(edge.latency_p99)}`;
    edgeLayer.append(
      s(
        "g",
        {
          class: `edge${edge.errors ? " edge-error" : ""}${dimmed ? " dimmed" : ""}`,
          "data-caller": edge.caller,
          "data-callee": edge.callee,
          "data-kind": edge.callee_kind,
          "data-calls": edge.calls,
          "data-errors": edge.errors,
        },
        s("path", { d: path, "stroke-width": width.toFixed(1), "marker-end": edge.errors ? "url(#arrow-error)" : "url(#arrow)" }),
        s("path", { class: "edge-hit", d: path }),
        s("title", null, title),
      ),
    );
    labelLayer.append(
      s(
        "text",
        { class: `edge-label${edge.errors ? " error" : ""}${dimmed ? " dimmed" : ""}`, x: labelX, y: labelY, "text-anchor": "middle" },
        s("tspan", null, formatRate(edge.calls / seconds)),
        edge.errors ? s("tspan", { class: "edge-label-error" }, ` · ${formatPercent(errorRate)} errors`) : null,
        s("tspan", null, ` · p95 ${formatDuration(edge.latency_p95)}`),
        s("title", null, title),
      ),
    );
  }
  const nodeLayer = s("g", { class: "nodes" });
  const calledBy = new Map<string, { calls: number; errors: number }>();
  for (const edge of edges) {
    const entry = calledBy.get(edge.callee) ?? { calls: 0, errors: 0 };
    entry.calls += edge.calls;
    entry.errors += edge.errors;
    calledBy.set(edge.callee, entry);
  }
  for (const node of nodes) {
    const place = layout.nodes.get(node.name);
    if (!place) continue;
    const color = serviceColor(node.name);
    const incoming = calledBy.get(node.name);
    const href = `/map?${new URLSearchParams([...new URLSearchParams(location.search)].filter(([key]) => key !== "service" && key !== "operation").concat([["service", node.name]]))}`;
    const name = node.name.length > 22 ? `${node.name.slice(0, 21)}…` : node.name;
    nodeLayer.append(
      s(
        "a",
        {
          href,
          class: `node node-${node.kind}${node.name === selected ? " selected" : ""}${incoming?.errors ? " node-error" : ""}`,
          "data-node": node.name,
          "data-kind": node.kind,
          "aria-label": `${kindLabel(node.kind)} ${node.name}`,
          transform: `translate(${place.x},${place.y})`,
        },
        nodeShape(node.kind, color),
        s("text", { class: "node-name", x: node.kind === "service" ? 16 : 14, y: 19 }, name),
        s(
          "text",
          { class: "node-sub", x: node.kind === "service" ? 16 : 14, y: 35 },
          node.kind === "service" ? (incoming ? `${formatRate(incoming.calls / seconds)} in` : "entry") : KIND_LABEL[node.kind],
        ),
        s("title", null, `${kindLabel(node.kind)} ${node.name}`),
      ),
    );
  }
  if (layout.isolatedTop !== null) {
    svg.append(
      s("text", { class: "map-section", x: 24, y: layout.isolatedTop + 12 }, edges.length ? "No calls to or from other nodes in this range" : "Services"),
    );
  }
  svg.append(edgeLayer, nodeLayer, labelLayer);
  return svg;
}
