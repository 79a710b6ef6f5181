// The waterfall: one row per shown span, a tree on the left and the span's bar on a time axis
// on the right. Only the rows in view exist in the DOM (a pool a screen high, rebound as the
// view scrolls), so a trace of 50,000 spans scrolls as smoothly as one of 5.

import { serviceColor } from "../color";
import { h } from "../dom";
import { formatDuration, formatOffset } from "../format";
import { hasChildren, placeName, type TraceModel } from "./model";

export const ROW_HEIGHT = 26;
const OVERSCAN = 8;
const INDENT = 14;
const MAX_INDENT_LEVELS = 30;

export interface WaterfallCallbacks {
  select(index: number | null): void;
  /** Fold or unfold span `index`. */
  toggle(index: number): void;
  isCollapsed(index: number): boolean;
}

interface PooledRow {
  row: HTMLElement;
  toggle: HTMLButtonElement;
  swatch: HTMLElement;
  service: HTMLElement;
  /** The workload or pod the span ran in. */
  place: HTMLElement;
  operation: HTMLElement;
  badge: HTMLElement;
  bar: HTMLElement;
  label: HTMLElement;
  /** The row position it shows, and the drawing it was filled for. */
  position: number;
  version: number;
}

export class Waterfall {
  readonly element: HTMLElement;
  private readonly scroller: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly ruler: HTMLElement;
  private pool: PooledRow[] = [];
  private rows: Int32Array = new Int32Array(0);
  private rowOf: Int32Array;
  private selected = -1;
  private matches: Set<number> | null = null;
  private dimOffPath = false;
  private window: [number, number];
  private version = 0;
  private frame = 0;
  private readonly resizeObserver: ResizeObserver;

  constructor(
    private readonly model: TraceModel,
    private readonly callbacks: WaterfallCallbacks,
  ) {
    this.rowOf = new Int32Array(model.spans.length).fill(-1);
    this.window = [model.start, model.end];
    this.ruler = h("div", { class: "wf-ruler-ticks" });
    this.spacer = h("div", { class: "wf-spacer" });
    this.scroller = h(
      "div",
      {
        class: "wf-scroller",
        role: "tree",
        tabindex: 0,
        "aria-label": "Spans of the trace: arrow keys move, left and right fold, Enter opens",
        "data-testid": "waterfall-rows",
      },
      this.spacer,
    );
    this.element = h(
      "div",
      { class: "waterfall", "data-testid": "waterfall" },
      h(
        "div",
        { class: "wf-ruler", "aria-hidden": "true" },
        h("div", { class: "wf-ruler-name" }, "Service and operation"),
        this.ruler,
      ),
      this.scroller,
    );
    this.scroller.addEventListener("scroll", () => this.schedule(), { passive: true });
    this.scroller.addEventListener("click", (event) => this.onClick(event));
    this.scroller.addEventListener("dblclick", (event) => {
      const index = this.indexAt(event);
      if (index !== null && hasChildren(this.model, index)) this.callbacks.toggle(index);
    });
    this.scroller.addEventListener("keydown", (event) => this.onKey(event));
    this.resizeObserver = new ResizeObserver(() => this.schedule());
    this.resizeObserver.observe(this.scroller);
    this.drawRuler();
  }

  destroy(): void {
    this.resizeObserver.disconnect();
    cancelAnimationFrame(this.frame);
  }

  focus(): void {
    this.scroller.focus({ preventScroll: true });
  }

  /** The spans to show, in order (after folding). */
  setRows(rows: Int32Array): void {
    this.rows = rows;
    this.rowOf.fill(-1);
    for (let position = 0; position < rows.length; position++) this.rowOf[rows[position]] = position;
    this.spacer.style.height = `${rows.length * ROW_HEIGHT}px`;
    this.element.dataset.rowCount = String(rows.length);
    this.redraw();
  }

  setSelected(index: number | null, scroll = true): void {
    this.selected = index ?? -1;
    if (scroll && index !== null) this.scrollToSpan(index);
    this.redraw();
  }

  setMatches(matches: Set<number> | null): void {
    this.matches = matches;
    this.redraw();
  }

  setDimOffPath(dim: boolean): void {
    this.dimOffPath = dim;
    this.redraw();
  }

  setWindow(start: number, end: number): void {
    this.window = [start, end];
    this.drawRuler();
    this.redraw();
  }

  /** Scrolls so that span `index` is in view, if it is shown. */
  scrollToSpan(index: number): void {
    const position = this.rowOf[index];
    if (position < 0) return;
    const top = position * ROW_HEIGHT;
    const height = this.scroller.clientHeight;
    if (top < this.scroller.scrollTop || top + ROW_HEIGHT > this.scroller.scrollTop + height) {
      this.scroller.scrollTop = Math.max(0, top - height / 2 + ROW_HEIGHT / 2);
    }
  }

  private redraw(): void {
    this.version++;
    this.schedule();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  /** Draws now (the next frame would too); for callers that measure. */
  drawNow(): void {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.draw();
  }

  private drawRuler(): void {
    this.ruler.textContent = "";
    const [start, end] = this.window;
    for (let tick = 0; tick <= 4; tick++) {
      const at = start + ((end - start) * tick) / 4;
      this.ruler.append(
        h(
          "span",
          { class: `wf-tick${tick === 4 ? " wf-tick-last" : ""}`, style: `left:${tick * 25}%` },
          formatOffset(at - this.model.start),
        ),
      );
    }
  }

  private draw(): void {
    const height = this.scroller.clientHeight || 600;
    const poolSize = Math.ceil(height / ROW_HEIGHT) + 2 * OVERSCAN + 1;
    while (this.pool.length < poolSize) this.pool.push(this.makeRow());
    const top = this.scroller.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.rows.length - 1, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    const used = new Set<PooledRow>();
    for (let position = first; position <= last; position++) {
      const pooled = this.pool[position % this.pool.length];
      used.add(pooled);
      if (pooled.position !== position || pooled.version !== this.version) this.fill(pooled, position);
    }
    for (const pooled of this.pool) {
      if (!used.has(pooled) && pooled.position !== -1) {
        pooled.row.hidden = true;
        pooled.row.removeAttribute("id");
        pooled.position = -1;
      }
    }
    this.element.dataset.ready = "true";
    if (this.selected >= 0 && this.rowOf[this.selected] >= first && this.rowOf[this.selected] <= last) {
      this.scroller.setAttribute("aria-activedescendant", "wf-selected");
    } else {
      this.scroller.removeAttribute("aria-activedescendant");
    }
  }

  private makeRow(): PooledRow {
    const toggle = h("button", { type: "button", class: "wf-toggle", tabindex: -1 });
    const swatch = h("i", { class: "swatch" });
    const service = h("span", { class: "wf-service" });
    const place = h("span", { class: "wf-place" });
    const operation = h("span", { class: "wf-operation" });
    const badge = h("span", { class: "wf-error-badge", title: "error", "aria-label": "error" }, "!");
    const bar = h("div", { class: "wf-bar" });
    const label = h("span", { class: "wf-label" });
    const row = h(
      "div",
      { class: "wf-row", role: "treeitem" },
      h("div", { class: "wf-name" }, toggle, swatch, service, place, operation, badge),
      h("div", { class: "wf-timeline" }, bar, label),
    );
    row.hidden = true;
    this.scroller.append(row);
    return { row, toggle, swatch, service, place, operation, badge, bar, label, position: -1, version: -1 };
  }

  private fill(pooled: PooledRow, position: number): void {
    const model = this.model;
    const index = this.rows[position];
    const span = model.spans[index];
    const { row } = pooled;
    pooled.position = position;
    pooled.version = this.version;
    row.hidden = false;
    row.style.transform = `translateY(${position * ROW_HEIGHT}px)`;
    row.dataset.index = String(index);
    row.dataset.row = String(position);
    row.dataset.spanId = span.span_id;
    const selected = index === this.selected;
    const critical = span.on_critical_path;
    row.className =
      "wf-row" +
      (selected ? " selected" : "") +
      (span.is_error ? " error" : "") +
      (critical ? " critical" : "") +
      (this.matches?.has(index) ? " match" : "") +
      (this.dimOffPath && !critical ? " dim" : "");
    if (selected) row.id = "wf-selected";
    else row.removeAttribute("id");
    row.setAttribute("aria-level", String(span.depth + 1));
    row.setAttribute("aria-selected", String(selected));
    const children = hasChildren(model, index);
    const collapsed = children && this.callbacks.isCollapsed(index);
    if (children) row.setAttribute("aria-expanded", String(!collapsed));
    else row.removeAttribute("aria-expanded");

    const name = row.firstElementChild as HTMLElement;
    const levels = Math.min(span.depth, MAX_INDENT_LEVELS);
    name.style.paddingLeft = `${6 + levels * INDENT}px`;
    name.style.backgroundSize = `${INDENT}px 100%`;
    name.style.setProperty("--guides", `${levels * INDENT}px`);
    pooled.toggle.style.visibility = children ? "visible" : "hidden";
    pooled.toggle.textContent = collapsed ? "▸" : "▾";
    pooled.toggle.setAttribute("aria-label", collapsed ? "Expand" : "Collapse");
    const color = serviceColor(span.app_service);
    pooled.swatch.style.background = color;
    pooled.service.textContent = span.app_service;
    const place = placeName(span);
    pooled.place.textContent = place;
    pooled.place.hidden = !place;
    pooled.operation.textContent =
      span.endpoint + (collapsed ? `  (+${model.subtreeEnd[index] - index - 1})` : "") +
      (span.depth > MAX_INDENT_LEVELS ? `  · depth ${span.depth}` : "");
    pooled.badge.hidden = !span.is_error;
    const duration = model.ends[index] - model.starts[index];
    row.title = `${span.app_service}${place ? ` (${place})` : ""}: ${span.endpoint} · ${formatDuration(duration)}`;

    const [windowStart, windowEnd] = this.window;
    const scale = 100 / (windowEnd - windowStart);
    const left = (model.starts[index] - windowStart) * scale;
    const right = (model.ends[index] - windowStart) * scale;
    const bar = pooled.bar;
    if (right < 0 || left > 100) {
      bar.hidden = true;
    } else {
      bar.hidden = false;
      const clippedLeft = Math.max(0, left);
      const clippedRight = Math.min(100, right);
      bar.style.left = `${clippedLeft}%`;
      bar.style.width = `max(1px, ${clippedRight - clippedLeft}%)`;
      bar.style.background = color;
      bar.textContent = "";
      const sections = model.critical.get(index);
      if (sections && right > left) {
        for (const [sectionStart, sectionEnd] of sections) {
          const from = Math.max((sectionStart - windowStart) * scale, clippedLeft);
          const to = Math.min((sectionEnd - windowStart) * scale, clippedRight);
          if (to <= from) continue;
          const segment = document.createElement("i");
          segment.className = "wf-critical";
          const width = clippedRight - clippedLeft || 1;
          segment.style.left = `${((from - clippedLeft) / width) * 100}%`;
          segment.style.width = `max(2px, ${((to - from) / width) * 100}%)`;
          bar.append(segment);
        }
      }
    }
    // After the bar: the timeline keeps a margin on its right for the labels of bars that
    // end at the edge.
    const label = pooled.label;
    label.textContent = formatDuration(duration);
    label.style.left = `${Math.min(100, Math.max(0, right))}%`;
  }

  private indexAt(event: Event): number | null {
    const row = (event.target as Element).closest<HTMLElement>(".wf-row");
    return row?.dataset.index ? Number(row.dataset.index) : null;
  }

  private onClick(event: MouseEvent): void {
    const index = this.indexAt(event);
    if (index === null) return;
    if ((event.target as Element).closest(".wf-toggle")) {
      this.callbacks.toggle(index);
      return;
    }
    this.callbacks.select(index);
  }

  private onKey(event: KeyboardEvent): void {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    const position = this.selected >= 0 ? this.rowOf[this.selected] : -1;
    const go = (to: number) => {
      if (this.rows.length === 0) return;
      const clamped = Math.max(0, Math.min(this.rows.length - 1, to));
      this.callbacks.select(this.rows[clamped]);
    };
    const page = Math.max(1, Math.floor(this.scroller.clientHeight / ROW_HEIGHT) - 1);
    const index = this.selected;
    switch (event.key) {
      case "ArrowDown":
      case "j":
        go(position + 1);
        break;
      case "ArrowUp":
      case "k":
        go(position < 0 ? 0 : position - 1);
        break;
      case "PageDown":
        go(position + page);
        break;
      case "PageUp":
        go(position - page);
        break;
      case "Home":
        go(0);
        break;
      case "End":
        go(this.rows.length - 1);
        break;
      case "ArrowRight":
      case "l":
        if (index < 0) go(0);
        else if (this.callbacks.isCollapsed(index)) this.callbacks.toggle(index);
        else if (hasChildren(this.model, index)) go(position + 1);
        break;
      case "ArrowLeft":
      case "h":
        if (index < 0) break;
        if (hasChildren(this.model, index) && !this.callbacks.isCollapsed(index)) this.callbacks.toggle(index);
        else if (this.model.parent[index] >= 0) this.callbacks.select(this.model.parent[index]);
        break;
      case "Enter":
      case " ":
        if (index >= 0 && hasChildren(this.model, index)) this.callbacks.toggle(index);
        break;
      case "Escape":
        this.callbacks.select(null);
        break;
      default:
        return;
    }
    event.preventDefault();
  }
}
