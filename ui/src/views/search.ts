// The search page: filters on the left (service, operation, attributes, where spans ran,
// duration, status, time range), on the right a scatter plot of duration over time and the
// matching traces.
// Every filter is in the query string, and so is the sort order.

import { api, type Summary } from "../api";
import { onWidth, scatterPlot, type Dot } from "../charts";
import { serviceColor } from "../color";
import { clear, h, message } from "../dom";
import { errorMessage } from "../errors";
import { formatAgo, formatDuration, formatTime, parseDuration, plural } from "../format";
import { navigate, setQuery, type View } from "../router";
import { rangeControl, resolveRange } from "../timerange";

/**
 * Filters on where a span ran (its own end of the call), by the query parameter the URL and
 * the API share: label, parameter, placeholder.
 */
const PLACE_FILTERS: [string, string, string][] = [
  ["Namespace", "namespace", "e.g. shop"],
  ["Workload", "workload", "e.g. checkout"],
  ["Pod", "pod", "e.g. checkout-7d9f-x2k4q"],
  ["Node", "node", "e.g. node-1"],
];

const SORTS: [string, string, (a: Summary, b: Summary) => number][] = [
  ["recent", "Most recent", (a, b) => b.start_time - a.start_time],
  ["oldest", "Oldest", (a, b) => a.start_time - b.start_time],
  ["longest", "Longest", (a, b) => b.duration - a.duration],
  ["shortest", "Shortest", (a, b) => a.duration - b.duration],
  ["spans", "Most spans", (a, b) => b.span_count - a.span_count],
  ["errors", "Most errors", (a, b) => b.error_count - a.error_count || b.start_time - a.start_time],
];

/** `key=value` pairs separated by spaces; a value with spaces in double quotes. */
export function parseTags(text: string): [string, string][] | string {
  const pairs: [string, string][] = [];
  const token = /\s*([^=\s"]+)=("((?:[^"\\]|\\.)*)"|[^\s"]*)\s*/y;
  let rest = text.trim();
  while (rest.length > 0) {
    token.lastIndex = 0;
    const match = token.exec(rest);
    if (!match) return `attribute filters are key=value pairs separated by spaces, not ${JSON.stringify(rest)}`;
    const value = match[3] !== undefined ? match[3].replace(/\\(.)/g, "$1") : match[2];
    pairs.push([match[1], value]);
    rest = rest.slice(token.lastIndex);
  }
  return pairs;
}

function option(value: string, label: string, selected = false): HTMLOptionElement {
  const element = h("option", { value }, label);
  element.selected = selected;
  return element;
}

function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  return h(
    "div",
    { class: "field" },
    h("label", { for: control.id }, label),
    control,
    hint ? h("div", { class: "field-hint", id: `${control.id}-hint` }, hint) : null,
  );
}

export function searchView(initialUrl: URL): View {
  const service = h("select", { id: "search-service", name: "service" }, option("", "All services"));
  const operation = h("select", { id: "search-operation", name: "operation" }, option("", "All operations"));
  const tags = h("input", {
    id: "search-tags",
    name: "tags",
    type: "text",
    placeholder: 'http.route=/api/orders error.type="timeout"',
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "search-tags-hint",
  });
  const places = PLACE_FILTERS.map(([, name, placeholder]) =>
    h("input", { id: `search-${name}`, name, type: "text", placeholder, autocomplete: "off", spellcheck: "false" }),
  );
  const minDuration = h("input", { id: "search-min-duration", name: "min_duration", type: "text", placeholder: "e.g. 100ms", autocomplete: "off" });
  const maxDuration = h("input", { id: "search-max-duration", name: "max_duration", type: "text", placeholder: "e.g. 2s", autocomplete: "off" });
  const status = h(
    "select",
    { id: "search-status", name: "status" },
    option("", "Any"),
    option("error", "Error"),
    option("ok", "OK"),
    option("server_error", "Server error (5xx)"),
    option("client_error", "Client error (4xx)"),
    option("timeout", "Timeout"),
  );
  const limit = h("input", { id: "search-limit", name: "limit", type: "number", min: 1, max: 1000, value: 20 });
  const range = rangeControl("search", () => void loadServices());
  const sort = h(
    "select",
    { id: "search-sort", "aria-label": "Sort traces" },
    SORTS.map(([value, label]) => option(value, label)),
  );

  const form = h(
    "form",
    { class: "search-form", "aria-label": "Trace search" },
    field("Service", service),
    field("Operation", operation),
    field("Attributes", tags, "key=value, space separated; all must match one span"),
    h("div", { class: "field-row" }, field(PLACE_FILTERS[0][0], places[0]), field(PLACE_FILTERS[1][0], places[1])),
    h("div", { class: "field-row" }, field(PLACE_FILTERS[2][0], places[2]), field(PLACE_FILTERS[3][0], places[3])),
    h("div", { class: "field-row" }, field("Min duration", minDuration), field("Max duration", maxDuration)),
    field("Status", status),
    range.element,
    field("Limit", limit),
    h("button", { type: "submit", class: "primary" }, "Find traces"),
  );
  const results = h("section", { class: "search-results", "aria-label": "Search results", "aria-live": "polite" });
  const element = h("div", { class: "page search-page" }, h("aside", { class: "search-side" }, form), results);

  let servicesAbort: AbortController | null = null;
  let searchAbort: AbortController | null = null;
  let stopWidth: (() => void) | null = null;
  let wantedService = "";
  let wantedOperation = "";

  async function loadServices(): Promise<void> {
    servicesAbort?.abort();
    servicesAbort = new AbortController();
    const params = new URLSearchParams();
    range.write(params);
    const { start, end } = resolveRange(params);
    try {
      const names = await api.services(start, end, servicesAbort.signal);
      const chosen = service.value || wantedService;
      clear(service);
      service.append(option("", "All services"));
      const all = chosen && !names.includes(chosen) ? [chosen, ...names] : names;
      for (const name of all) service.append(option(name, name, name === chosen));
      if (names.length === 0) service.title = "no service sent spans in this time range";
    } catch (error) {
      if ((error as Error).name !== "AbortError") service.title = (error as Error).message;
    }
    await loadOperations();
  }

  async function loadOperations(): Promise<void> {
    const chosen = operation.value || wantedOperation;
    clear(operation);
    operation.append(option("", "All operations"));
    if (chosen) operation.append(option(chosen, chosen, true));
    operation.disabled = !service.value;
    if (!service.value) return;
    const params = new URLSearchParams();
    range.write(params);
    const { start, end } = resolveRange(params);
    try {
      const operations = await api.operations(service.value, start, end);
      const names = [...new Set(operations.map((op) => op.name))];
      clear(operation);
      operation.append(option("", "All operations"));
      const all = chosen && !names.includes(chosen) ? [chosen, ...names] : names;
      for (const name of all) operation.append(option(name, name, name === chosen));
    } catch {
      // The search itself reports failures of the API.
    }
  }

  service.addEventListener("change", () => {
    wantedOperation = "";
    operation.value = "";
    void loadOperations();
  });

  function formParams(): URLSearchParams {
    const params = new URLSearchParams();
    const put = (name: string, value: string) => {
      if (value.trim()) params.set(name, value.trim());
    };
    put("service", service.value);
    put("operation", operation.value);
    put("tags", tags.value);
    PLACE_FILTERS.forEach(([, name], index) => put(name, places[index].value));
    put("min_duration", minDuration.value);
    put("max_duration", maxDuration.value);
    put("status", status.value);
    range.write(params);
    if (limit.value && limit.value !== "20") params.set("limit", limit.value);
    if (sort.value !== "recent") params.set("sort", sort.value);
    return params;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = formParams();
    const href = `/search?${params}`;
    // The same search again still runs: the newest traces may have changed.
    if (`${location.pathname}${location.search}` === href) update(new URL(href, location.origin));
    else navigate(href);
  });

  sort.addEventListener("change", () => {
    const params = new URLSearchParams(location.search);
    if (sort.value === "recent") params.delete("sort");
    else params.set("sort", sort.value);
    setQuery(params);
    if (lastFound) showResults(lastFound.traces, lastFound.note);
  });

  function readForm(params: URLSearchParams): void {
    wantedService = params.get("service") ?? "";
    wantedOperation = params.get("operation") ?? "";
    if (![...service.options].some((item) => item.value === wantedService)) {
      service.append(option(wantedService, wantedService));
    }
    service.value = wantedService;
    if (![...operation.options].some((item) => item.value === wantedOperation)) {
      operation.append(option(wantedOperation, wantedOperation));
    }
    operation.value = wantedOperation;
    tags.value = params.get("tags") ?? "";
    PLACE_FILTERS.forEach(([, name], index) => (places[index].value = params.get(name) ?? ""));
    minDuration.value = params.get("min_duration") ?? "";
    maxDuration.value = params.get("max_duration") ?? "";
    status.value = params.get("status") ?? "";
    limit.value = params.get("limit") ?? "20";
    sort.value = params.get("sort") ?? "recent";
    if (!sort.value) sort.value = "recent";
    range.read(params);
  }

  let lastFound: { traces: Summary[]; note: HTMLElement | null } | null = null;

  function showResults(traces: Summary[], note: HTMLElement | null): void {
    stopWidth?.();
    clear(results);
    const order = SORTS.find(([value]) => value === sort.value)?.[2] ?? SORTS[0][2];
    const sorted = [...traces].sort(order);
    const longest = Math.max(1, ...traces.map((trace) => trace.duration));
    const head = h(
      "div",
      { class: "results-head" },
      h("h2", { class: "results-count", "data-testid": "result-count" }, plural(traces.length, "trace")),
      note,
      h("div", { class: "header-spacer" }),
      h("label", { for: sort.id, class: "inline-label" }, "Sort"),
      sort,
    );
    const plot = h("div", { class: "scatter-box", "data-testid": "scatter" });
    const dots: Dot[] = traces.map((trace) => ({
      time: trace.start_time,
      duration: trace.duration,
      radius: Math.min(9, 3 + Math.log2(Math.max(1, trace.span_count)) * 0.6),
      color: trace.error_count > 0 ? "#dc2626" : serviceColor(trace.root_service),
      error: trace.error_count > 0,
      href: `/trace/${trace.trace_id}`,
      id: trace.trace_id,
      label: `${trace.root_service}: ${trace.root_operation} · ${formatDuration(trace.duration)} · ${plural(
        trace.span_count,
        "span",
      )}${trace.error_count ? ` · ${plural(trace.error_count, "error")}` : ""} · ${formatTime(trace.start_time)}`,
    }));
    stopWidth = onWidth(plot, (width) => {
      clear(plot);
      plot.append(scatterPlot(dots, width, 180));
    });
    const list = h(
      "ol",
      { class: "result-list", "data-testid": "result-list" },
      sorted.map((trace) => resultRow(trace, longest)),
    );
    results.append(head, plot, list);
  }

  async function runSearch(params: URLSearchParams): Promise<void> {
    searchAbort?.abort();
    searchAbort = new AbortController();
    const signal = searchAbort.signal;
    stopWidth?.();
    stopWidth = null;
    lastFound = null;
    clear(results);
    const query: [string, string][] = [];
    const copy = (from: string, to = from) => {
      const value = params.get(from);
      if (value) query.push([to, value]);
    };
    copy("service");
    copy("operation");
    copy("status");
    copy("limit");
    for (const [, name] of PLACE_FILTERS) copy(name);
    const tagPairs = parseTags(params.get("tags") ?? "");
    if (typeof tagPairs === "string") {
      results.append(message("error", "Cannot search", tagPairs));
      return;
    }
    for (const [key, value] of tagPairs) query.push([`attr.${key}`, value]);
    for (const name of ["min_duration", "max_duration"]) {
      const text = params.get(name);
      if (!text) continue;
      const micros = parseDuration(text);
      if (micros === null) {
        results.append(message("error", "Cannot search", `${name.replace("_", " ")} ${JSON.stringify(text)} is not a duration: use e.g. 250ms, 1.5s, 2m or 800us`));
        return;
      }
      query.push([name, String(micros)]);
    }
    const timeRange = resolveRange(params);
    query.push(["start", String(Math.floor(timeRange.start))], ["end", String(Math.ceil(timeRange.end))]);
    results.append(message("loading", "Searching…"));
    results.setAttribute("aria-busy", "true");
    try {
      const answer = await api.search(query, signal);
      results.removeAttribute("aria-busy");
      clear(results);
      if (answer.traces.length === 0) {
        const filtered = query.some(([key]) => key !== "start" && key !== "end" && key !== "limit");
        results.append(
          message(
            "info",
            "No traces found",
            filtered
              ? `No trace in ${timeRange.label} has a span matching these filters. Widen the time range or remove a filter.`
              : h(
                  "span",
                  null,
                  `No spans arrived in ${timeRange.label}. Send OTLP to the agent (HTTP on port 4318 at /v1/traces, gRPC on 4317) and they show up here.`,
                ),
          ),
        );
        return;
      }
      const note = answer.complete
        ? h("span", { class: "results-note" }, `in ${timeRange.label}`)
        : h(
            "span",
            { class: "results-note warn", title: "the search reads a bounded number of spans" },
            `in ${timeRange.label}; stopped after ${plural(answer.spans_inspected, "span")}, older matches may exist`,
          );
      lastFound = { traces: answer.traces, note };
      showResults(answer.traces, note);
    } catch (error) {
      if ((error as Error).name === "AbortError") return;
      results.removeAttribute("aria-busy");
      clear(results);
      // Again from the URL: the service list failed the same way (a missing token, say).
      results.append(errorMessage(error, () => update(new URL(location.href))));
    }
  }

  function update(url: URL): void {
    const params = url.searchParams;
    readForm(params);
    void loadServices();
    void runSearch(params);
  }

  update(initialUrl);

  return {
    key: "search",
    title: "Search",
    element,
    update,
    destroy() {
      servicesAbort?.abort();
      searchAbort?.abort();
      stopWidth?.();
    },
  };
}

function resultRow(trace: Summary, longest: number): HTMLElement {
  const shown = trace.services.slice(0, 6);
  const more = trace.services.length - shown.length;
  return h(
    "li",
    null,
    h(
      "a",
      { class: `result${trace.error_count ? " has-errors" : ""}`, href: `/trace/${trace.trace_id}`, "data-trace-id": trace.trace_id },
      h("span", { class: "result-color", style: `background:${serviceColor(trace.root_service)}` }),
      h(
        "span",
        { class: "result-main" },
        h(
          "span",
          { class: "result-title" },
          h("span", { class: "result-service" }, trace.root_service || "(no service)"),
          ": ",
          h("span", { class: "result-operation" }, trace.root_operation || "(no name)"),
        ),
        h(
          "span",
          { class: "result-meta" },
          h("code", { class: "trace-id" }, trace.trace_id),
          h("span", { class: "result-spans" }, plural(trace.span_count, "span")),
          h(
            "span",
            { class: trace.error_count ? "result-errors error-text" : "result-errors muted" },
            plural(trace.error_count, "error"),
          ),
        ),
        h(
          "span",
          { class: "chips" },
          shown.map((service) =>
            h(
              "span",
              { class: `chip${service.error_count ? " chip-error" : ""}`, title: `${service.name}: ${plural(service.span_count, "span")}` },
              h("i", { class: "swatch", style: `background:${serviceColor(service.name)}` }),
              `${service.name} ${service.span_count}`,
            ),
          ),
          more > 0 ? h("span", { class: "chip muted" }, `+${more} more`) : null,
        ),
      ),
      h(
        "span",
        { class: "result-side" },
        h("span", { class: "result-duration" }, formatDuration(trace.duration)),
        h(
          "span",
          { class: "duration-bar", "aria-hidden": "true" },
          h("i", { style: `width:${Math.max(1, (trace.duration / longest) * 100).toFixed(1)}%` }),
        ),
        h(
          "time",
          { class: "result-time", datetime: new Date(trace.start_time / 1000).toISOString() },
          `${formatTime(trace.start_time).slice(0, 19)} · ${formatAgo(trace.start_time)}`,
        ),
      ),
    ),
  );
}
