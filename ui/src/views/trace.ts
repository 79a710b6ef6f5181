// The trace page: a header with the trace's facts and services, a toolbar, the waterfall or the
// flame graph, and the detail pane of the selected span. Its state is in the query string:
// `view`, `span` (selected), `level` and `toggle` (folding), `find`, `cp` (critical path
// only) and `zoom` (a span whose time the axis fits).

import { ApiError, api } from "../api";
import { serviceColor } from "../color";
import { clear, h, message, s } from "../dom";
import { errorMessage } from "../errors";
import { formatAgo, formatCount, formatDuration, formatTime, plural } from "../format";
import { setQuery, type View } from "../router";
import { spanDetail } from "./detail";
import { Flame } from "./flame";
import { buildModel, isCollapsed, reveal, searchText, visibleRows, type Folding, type TraceModel } from "./model";
import { Waterfall } from "./waterfall";

type Mode = "waterfall" | "flame";

/**
 * Spans a trace page loads unless its URL says otherwise (`limit=`, 0 for as many as the
 * server gives): past it, the upper levels are shown and a banner offers the rest, so that
 * a huge trace still opens quickly.
 */
export const DEFAULT_TRACE_LIMIT = 20_000;

export function traceLimit(params: URLSearchParams): number {
  const text = params.get("limit");
  return text !== null && /^\d+$/.test(text) ? Number(text) : DEFAULT_TRACE_LIMIT;
}

interface State {
  mode: Mode;
  selected: number | null;
  folding: Folding;
  find: string;
  dim: boolean;
  zoom: number | null;
}

function readState(model: TraceModel, params: URLSearchParams): State {
  const level = params.get("level");
  const toggled = (params.get("toggle") ?? "").split(",").filter(Boolean);
  const spanIndex = (id: string | null) => (id ? (model.byId.get(id.toLowerCase()) ?? null) : null);
  return {
    mode: params.get("view") === "flame" ? "flame" : "waterfall",
    selected: spanIndex(params.get("span")),
    folding: { level: level !== null && /^\d+$/.test(level) ? Number(level) : null, toggled: new Set(toggled) },
    find: params.get("find") ?? "",
    dim: params.get("cp") === "1",
    zoom: spanIndex(params.get("zoom")),
  };
}

function writeState(model: TraceModel, state: State): void {
  const params = new URLSearchParams();
  if (state.mode === "flame") params.set("view", "flame");
  if (state.selected !== null) params.set("span", model.spans[state.selected].span_id);
  if (state.folding.level !== null) params.set("level", String(state.folding.level));
  if (state.folding.toggled.size > 0) params.set("toggle", [...state.folding.toggled].join(","));
  if (state.find) params.set("find", state.find);
  if (state.dim) params.set("cp", "1");
  if (state.zoom !== null) params.set("zoom", model.spans[state.zoom].span_id);
  const limit = new URLSearchParams(location.search).get("limit");
  if (limit !== null) params.set("limit", limit);
  setQuery(params);
}

export function traceView(traceId: string, url: URL): View {
  const element = h("div", { class: "page trace-page" });
  const abort = new AbortController();
  let page: TracePage | null = null;
  let pendingUrl = url;
  const mountedAt = performance.now();
  const limit = traceLimit(url.searchParams);

  const load = async () => {
    clear(element);
    element.append(message("loading", `Loading trace ${traceId}…`));
    try {
      const fetchStart = performance.now();
      let answer;
      try {
        answer = await api.trace(traceId, limit || null, abort.signal);
      } catch (error) {
        // A server whose trace_max_spans is below the limit refuses it: take what it allows.
        if (!(error instanceof ApiError && error.status === 400 && /allowed/.test(error.message))) throw error;
        answer = await api.trace(traceId, null, abort.signal);
      }
      const fetched = performance.now();
      const model = buildModel(answer);
      const built = performance.now();
      clear(element);
      page = new TracePage(model, pendingUrl.searchParams, limit);
      element.append(page.element);
      page.start();
      requestAnimationFrame(() => {
        element.dataset.fetchMs = (fetched - fetchStart).toFixed(0);
        element.dataset.buildMs = (built - fetched).toFixed(0);
        element.dataset.loadMs = (performance.now() - mountedAt).toFixed(0);
      });
    } catch (error) {
      if ((error as Error).name === "AbortError") return;
      clear(element);
      if (error instanceof ApiError && error.status === 404) {
        element.append(
          message(
            "info",
            "Trace not found",
            h(
              "div",
              null,
              h("p", null, `No span of trace ${traceId} is stored: it may not have arrived yet, or it is older than the retention.`),
              h("button", { type: "button", onclick: () => void load() }, "Try again"),
            ),
          ),
        );
      } else if (error instanceof ApiError && error.status === 400) {
        element.append(message("error", "Not a trace id", error.message));
      } else {
        element.append(errorMessage(error, () => void load()));
      }
    }
  };
  void load();

  return {
    key: `trace:${traceId}:${limit}`,
    title: `Trace ${traceId.slice(0, 8)}`,
    element,
    update(next) {
      pendingUrl = next;
      page?.apply(next.searchParams);
    },
    destroy() {
      abort.abort();
      page?.destroy();
    },
  };
}

class TracePage {
  readonly element: HTMLElement;
  private state: State;
  private readonly waterfall: Waterfall;
  private flame: Flame | null = null;
  private readonly main: HTMLElement;
  private readonly detail: HTMLElement;
  private readonly tabs: Record<Mode, HTMLButtonElement>;
  private readonly findInput: HTMLInputElement;
  private readonly findCount: HTMLElement;
  private readonly dimBox: HTMLInputElement;
  private readonly zoomReset: HTMLButtonElement;
  private haystack: string[] | null = null;
  private matchList: number[] = [];
  private findTimer = 0;

  constructor(
    private readonly model: TraceModel,
    params: URLSearchParams,
    private readonly limit: number,
  ) {
    this.state = readState(model, params);
    this.waterfall = new Waterfall(model, {
      select: (index) => this.select(index),
      toggle: (index) => this.toggle(index),
      isCollapsed: (index) => isCollapsed(model, this.state.folding, index),
    });
    this.tabs = {
      waterfall: h("button", { type: "button", class: "tab", "data-mode": "waterfall" }, "Waterfall"),
      flame: h("button", { type: "button", class: "tab", "data-mode": "flame" }, "Flame graph"),
    };
    for (const mode of ["waterfall", "flame"] as Mode[]) {
      this.tabs[mode].addEventListener("click", () => {
        this.state.mode = mode;
        this.showMode();
        this.save();
      });
    }
    this.findInput = h("input", {
      type: "search",
      id: "trace-find",
      placeholder: "Find spans",
      autocomplete: "off",
      spellcheck: "false",
      "aria-label": "Find spans by service, operation, id or attribute",
    });
    this.findCount = h("span", { class: "find-count", "aria-live": "polite", "data-testid": "find-count" });
    this.findInput.addEventListener("input", () => {
      clearTimeout(this.findTimer);
      this.findTimer = window.setTimeout(() => {
        this.state.find = this.findInput.value;
        this.runFind();
        this.save();
      }, 120);
    });
    this.findInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        clearTimeout(this.findTimer);
        if (this.state.find !== this.findInput.value) {
          this.state.find = this.findInput.value;
          this.runFind();
        }
        this.nextMatch(event.shiftKey ? -1 : 1);
      } else if (event.key === "Escape") {
        this.findInput.value = "";
        this.state.find = "";
        this.runFind();
        this.save();
      }
    });
    this.dimBox = h("input", { type: "checkbox", id: "trace-critical-only" });
    this.dimBox.addEventListener("change", () => {
      this.state.dim = this.dimBox.checked;
      this.waterfall.setDimOffPath(this.state.dim);
      this.flame?.setDimOffPath(this.state.dim);
      this.save();
    });
    this.zoomReset = h("button", { type: "button", class: "zoom-reset" }, "Reset zoom");
    this.zoomReset.addEventListener("click", () => this.zoom(null));

    this.main = h("div", { class: "trace-main" });
    this.detail = h("aside", { class: "trace-detail", "aria-label": "Span details" });
    this.element = h(
      "div",
      { class: "trace" },
      this.head(),
      this.toolbar(),
      h("div", { class: "trace-body" }, this.main, this.detail),
    );
  }

  start(): void {
    this.applyState(true);
  }

  destroy(): void {
    this.waterfall.destroy();
    this.flame?.destroy();
    clearTimeout(this.findTimer);
  }

  /** A new URL for the same trace (back, forward, a link within the trace). */
  apply(params: URLSearchParams): void {
    this.state = readState(this.model, params);
    this.applyState(false);
  }

  private applyState(first: boolean): void {
    const state = this.state;
    if (state.selected !== null) reveal(this.model, state.folding, state.selected);
    this.waterfall.setRows(visibleRows(this.model, state.folding));
    this.findInput.value = state.find;
    this.runFind();
    this.dimBox.checked = state.dim;
    this.waterfall.setDimOffPath(state.dim);
    this.applyZoom();
    this.showMode();
    this.flame?.setDimOffPath(state.dim);
    this.waterfall.setSelected(state.selected, true);
    this.flame?.setSelected(state.selected);
    this.showDetail();
    if (first && state.selected !== null) {
      // The rows are laid out on the next frame; scroll once they are.
      requestAnimationFrame(() => this.waterfall.scrollToSpan(state.selected!));
    }
  }

  private save(): void {
    writeState(this.model, this.state);
  }

  private head(): HTMLElement {
    const { model } = this;
    const summary = model.answer.summary;
    const total = summary?.span_count ?? model.spans.length;
    const copy = h(
      "button",
      { type: "button", class: "icon-button small copy", title: "Copy trace id", "aria-label": "Copy trace id" },
      s(
        "svg",
        { width: 14, height: 14, viewBox: "0 0 16 16", "aria-hidden": "true" },
        s("rect", { x: 5.5, y: 5.5, width: 8, height: 8, rx: 1.5, fill: "none", stroke: "currentColor" }),
        s("path", { d: "M10.5 3.5v-1a1 1 0 0 0-1-1h-6a1 1 0 0 0-1 1v6a1 1 0 0 0 1 1h1", fill: "none", stroke: "currentColor" }),
      ),
    );
    copy.addEventListener("click", () => {
      void navigator.clipboard?.writeText(model.answer.trace_id).then(
        () => copy.classList.add("copied"),
        () => undefined,
      );
    });
    const banners: HTMLElement[] = [];
    if (model.answer.truncated) {
      const cutHere = this.limit > 0 && model.spans.length >= this.limit;
      const all = new URLSearchParams(location.search);
      all.set("limit", "0");
      banners.push(
        h(
          "div",
          { class: "banner warn", role: "note", "data-testid": "truncated" },
          `This trace has ${formatCount(total)} spans; its upper ${formatCount(model.spans.length)} are shown`,
          cutHere
            ? h("span", null, ", so that the page stays quick. ", h("a", { href: `${location.pathname}?${all}` }, "Show all"))
            : " (the server's trace_max_spans). Deeper spans are left out.",
        ),
      );
    }
    if (model.answer.orphan_count > 0) {
      banners.push(
        h(
          "div",
          { class: "banner", role: "note" },
          `${plural(model.answer.orphan_count, "span")} name a parent that is not in the trace; shown as roots.`,
        ),
      );
    }
    const legend = h(
      "div",
      { class: "chips service-legend", "aria-label": "Services in this trace" },
      model.services.map((service) => {
        const chip = h(
          "button",
          { type: "button", class: `chip${service.errors ? " chip-error" : ""}`, title: `Find the spans of ${service.name}` },
          h("i", { class: "swatch", style: `background:${serviceColor(service.name)}` }),
          `${service.name} ${formatCount(service.spans)}`,
          service.errors ? h("span", { class: "error-text" }, ` · ${plural(service.errors, "error")}`) : null,
        );
        chip.addEventListener("click", () => {
          this.findInput.value = service.name;
          this.state.find = service.name;
          this.runFind();
          this.save();
        });
        return chip;
      }),
    );
    const root = summary ?? { root_service: "", root_operation: "", start_time: model.start, duration: model.end - model.start, error_count: 0 };
    return h(
      "div",
      { class: "trace-head" },
      h(
        "h1",
        { class: "trace-title" },
        h("i", { class: "swatch big", style: `background:${serviceColor(root.root_service)}` }),
        h("span", { class: "trace-root-service" }, `${root.root_service || "(no service)"}:`),
        h("span", { class: "trace-root-operation" }, root.root_operation || "(no name)"),
      ),
      h(
        "dl",
        { class: "trace-facts" },
        h("div", null, h("dt", null, "Trace"), h("dd", null, h("code", { "data-testid": "trace-id" }, model.answer.trace_id), copy)),
        h("div", null, h("dt", null, "Started"), h("dd", { title: formatAgo(root.start_time) }, formatTime(root.start_time))),
        h("div", null, h("dt", null, "Duration"), h("dd", null, formatDuration(root.duration))),
        h("div", null, h("dt", null, "Spans"), h("dd", { "data-testid": "span-count" }, formatCount(total))),
        h(
          "div",
          null,
          h("dt", null, "Errors"),
          h("dd", { class: root.error_count ? "error-text" : "" }, formatCount(root.error_count)),
        ),
        h("div", null, h("dt", null, "Depth"), h("dd", null, String(model.maxDepth + 1))),
        h("div", null, h("dt", null, "Services"), h("dd", null, String(model.services.length))),
      ),
      legend,
      banners,
    );
  }

  private toolbar(): HTMLElement {
    const previous = h("button", { type: "button", class: "icon-button small", "aria-label": "Previous match", title: "Previous match (Shift+Enter)" }, "↑");
    const next = h("button", { type: "button", class: "icon-button small", "aria-label": "Next match", title: "Next match (Enter)" }, "↓");
    previous.addEventListener("click", () => this.nextMatch(-1));
    next.addEventListener("click", () => this.nextMatch(1));
    const collapse = h("button", { type: "button", title: "Fold every span below the roots' children" }, "Collapse all");
    const expand = h("button", { type: "button", title: "Unfold every span" }, "Expand all");
    collapse.addEventListener("click", () => this.fold(1));
    expand.addEventListener("click", () => this.fold(null));
    return h(
      "div",
      { class: "trace-toolbar" },
      h("div", { class: "tabs", role: "group", "aria-label": "View" }, this.tabs.waterfall, this.tabs.flame),
      h("div", { class: "find" }, this.findInput, this.findCount, previous, next),
      h("div", { class: "header-spacer" }),
      h("label", { class: "check", title: "Dim the spans the trace did not wait on" }, this.dimBox, h("span", { class: "critical-key" }), "Critical path only"),
      this.zoomReset,
      collapse,
      expand,
    );
  }

  private showMode(): void {
    const mode = this.state.mode;
    for (const [name, tab] of Object.entries(this.tabs)) tab.setAttribute("aria-pressed", String(name === mode));
    // Moving an element resets its scroll position: only swap when the mode changed.
    const shown = this.main.firstElementChild;
    if ((mode === "flame" && shown === this.flame?.element) || (mode === "waterfall" && shown === this.waterfall.element)) return;
    clear(this.main);
    if (mode === "flame") {
      if (!this.flame) {
        this.flame = new Flame(this.model, {
          select: (index) => this.select(index),
          zoom: (index) => this.zoom(index),
        });
        this.flame.setDimOffPath(this.state.dim);
        this.flame.setMatches(this.matches());
        this.flame.setSelected(this.state.selected);
        this.applyZoom();
      }
      this.main.append(this.flame.element);
    } else {
      this.main.append(this.waterfall.element);
    }
  }

  private matches(): Set<number> | null {
    return this.state.find.trim() ? new Set(this.matchList) : null;
  }

  private runFind(): void {
    const query = this.state.find.trim().toLowerCase();
    this.matchList = [];
    if (query) {
      this.haystack ??= this.model.spans.map(searchText);
      this.haystack.forEach((text, index) => {
        if (text.includes(query)) this.matchList.push(index);
      });
      this.findCount.textContent = `${formatCount(this.matchList.length)} ${this.matchList.length === 1 ? "match" : "matches"}`;
    } else {
      this.findCount.textContent = "";
    }
    const matches = this.matches();
    this.waterfall.setMatches(matches);
    this.flame?.setMatches(matches);
  }

  private nextMatch(direction: 1 | -1): void {
    if (this.matchList.length === 0) return;
    const current = this.state.selected ?? (direction === 1 ? -1 : this.model.spans.length);
    let target: number | undefined;
    if (direction === 1) target = this.matchList.find((index) => index > current) ?? this.matchList[0];
    else target = [...this.matchList].reverse().find((index) => index < current) ?? this.matchList[this.matchList.length - 1];
    const position = this.matchList.indexOf(target) + 1;
    this.findCount.textContent = `${formatCount(position)} of ${formatCount(this.matchList.length)}`;
    this.select(target);
  }

  private select(index: number | null): void {
    this.state.selected = index;
    if (index !== null && reveal(this.model, this.state.folding, index)) {
      this.waterfall.setRows(visibleRows(this.model, this.state.folding));
    }
    this.waterfall.setSelected(index, true);
    this.flame?.setSelected(index);
    this.showDetail();
    this.save();
  }

  private toggle(index: number): void {
    const id = this.model.spans[index].span_id;
    const toggled = this.state.folding.toggled;
    if (toggled.has(id)) toggled.delete(id);
    else toggled.add(id);
    // A selected span folded away: select the span that folded it.
    const selected = this.state.selected;
    if (selected !== null && selected > index && selected < this.model.subtreeEnd[index] && isCollapsed(this.model, this.state.folding, index)) {
      this.state.selected = index;
      this.showDetail();
    }
    this.waterfall.setRows(visibleRows(this.model, this.state.folding));
    this.waterfall.setSelected(this.state.selected, false);
    this.save();
  }

  private fold(level: number | null): void {
    this.state.folding = { level, toggled: new Set() };
    const selected = this.state.selected;
    if (selected !== null && level !== null && this.model.spans[selected].depth > level) {
      let ancestor = selected;
      while (this.model.spans[ancestor].depth > level && this.model.parent[ancestor] >= 0) ancestor = this.model.parent[ancestor];
      this.state.selected = ancestor;
      this.showDetail();
    }
    this.waterfall.setRows(visibleRows(this.model, this.state.folding));
    this.waterfall.setSelected(this.state.selected, true);
    this.save();
  }

  private zoom(index: number | null): void {
    this.state.zoom = index;
    this.applyZoom();
    this.save();
  }

  private applyZoom(): void {
    const { model } = this;
    let start = model.start;
    let end = model.end;
    if (this.state.zoom !== null) {
      start = model.starts[this.state.zoom];
      end = Math.max(model.ends[this.state.zoom], start + 1);
    }
    this.zoomReset.hidden = this.state.zoom === null;
    this.waterfall.setWindow(start, end);
    this.flame?.setWindow(start, end);
  }

  private showDetail(): void {
    clear(this.detail);
    const index = this.state.selected;
    this.element.classList.toggle("with-detail", index !== null);
    if (index === null) {
      this.detail.hidden = true;
      return;
    }
    this.detail.hidden = false;
    this.detail.append(
      spanDetail(this.model, index, {
        close: () => {
          this.select(null);
          this.waterfall.focus();
        },
        select: (parent) => this.select(parent),
        zoom: (span) => this.zoom(span),
      }),
    );
  }
}
