// The flame graph: every span a box at its depth and over its time, drawn on a canvas the size
// of the view (only the depths in view are drawn, and spans narrower than a pixel are merged),
// so a trace of any size draws in a few milliseconds. Click selects, double-click zooms.

import { ERROR_COLOR, serviceColor } from "../color";
import { h } from "../dom";
import { formatDuration, formatOffset } from "../format";
import type { TraceModel } from "./model";

const ROW = 22;

export interface FlameCallbacks {
  select(index: number | null): void;
  zoom(index: number): void;
}

export class Flame {
  readonly element: HTMLElement;
  private readonly scroller: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly tooltip: HTMLElement;
  private readonly ruler: HTMLElement;
  /** Span indexes per depth, by start. */
  private readonly byDepth: number[][];
  private window: [number, number];
  private selected = -1;
  private matches: Set<number> | null = null;
  private dimOffPath = false;
  private frame = 0;
  private readonly resizeObserver: ResizeObserver;

  constructor(
    private readonly model: TraceModel,
    private readonly callbacks: FlameCallbacks,
  ) {
    this.window = [model.start, model.end];
    this.byDepth = Array.from({ length: model.maxDepth + 1 }, () => []);
    for (let index = 0; index < model.spans.length; index++) {
      this.byDepth[model.spans[index].depth].push(index);
    }
    for (const list of this.byDepth) list.sort((a, b) => model.starts[a] - model.starts[b]);
    this.canvas = h("canvas", {
      class: "flame-canvas",
      role: "img",
      "aria-label": `Flame graph of ${model.spans.length} spans; click a box to see the span, double-click to zoom`,
    });
    this.tooltip = h("div", { class: "flame-tooltip", role: "tooltip", hidden: true });
    this.ruler = h("div", { class: "flame-ruler", "aria-hidden": "true" });
    this.scroller = h(
      "div",
      { class: "flame-scroller", tabindex: 0 },
      h("div", { class: "flame-spacer", style: `height:${(model.maxDepth + 1) * ROW + 8}px` }),
      this.canvas,
    );
    this.element = h("div", { class: "flame", "data-testid": "flame" }, this.ruler, this.scroller, this.tooltip);
    this.scroller.addEventListener("scroll", () => this.schedule(), { passive: true });
    this.canvas.addEventListener("mousemove", (event) => this.onHover(event));
    this.canvas.addEventListener("mouseleave", () => {
      this.tooltip.hidden = true;
    });
    this.canvas.addEventListener("click", (event) => this.callbacks.select(this.hit(event)));
    this.canvas.addEventListener("dblclick", (event) => {
      const index = this.hit(event);
      if (index !== null) this.callbacks.zoom(index);
    });
    this.resizeObserver = new ResizeObserver(() => this.schedule());
    this.resizeObserver.observe(this.scroller);
    this.drawRuler();
  }

  destroy(): void {
    this.resizeObserver.disconnect();
    cancelAnimationFrame(this.frame);
  }

  setSelected(index: number | null): void {
    this.selected = index ?? -1;
    if (index !== null) {
      const top = this.model.spans[index].depth * ROW;
      if (top < this.scroller.scrollTop || top + ROW > this.scroller.scrollTop + this.scroller.clientHeight) {
        this.scroller.scrollTop = Math.max(0, top - this.scroller.clientHeight / 2);
      }
    }
    this.schedule();
  }

  setMatches(matches: Set<number> | null): void {
    this.matches = matches;
    this.schedule();
  }

  setDimOffPath(dim: boolean): void {
    this.dimOffPath = dim;
    this.schedule();
  }

  setWindow(start: number, end: number): void {
    this.window = [start, end];
    this.drawRuler();
    this.schedule();
  }

  private drawRuler(): void {
    this.ruler.textContent = "";
    const [start, end] = this.window;
    for (let tick = 0; tick <= 4; tick++) {
      this.ruler.append(
        h(
          "span",
          { class: `wf-tick${tick === 4 ? " wf-tick-last" : ""}`, style: `left:${tick * 25}%` },
          formatOffset(start + ((end - start) * tick) / 4 - this.model.start),
        ),
      );
    }
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private draw(): void {
    const width = this.scroller.clientWidth;
    const height = this.scroller.clientHeight;
    if (width === 0 || height === 0) return;
    const ratio = window.devicePixelRatio || 1;
    const canvas = this.canvas;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
    }
    const context = canvas.getContext("2d")!;
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    context.font = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    context.textBaseline = "middle";
    const model = this.model;
    const [start, end] = this.window;
    const scale = width / (end - start);
    const scrollTop = this.scroller.scrollTop;
    const firstDepth = Math.max(0, Math.floor(scrollTop / ROW));
    const lastDepth = Math.min(model.maxDepth, Math.ceil((scrollTop + height) / ROW));
    let drawn = 0;
    for (let depth = firstDepth; depth <= lastDepth; depth++) {
      const y = depth * ROW - scrollTop + 2;
      // The pixel column drawn up to at this depth: spans that fall inside it are merged.
      let filledTo = -1;
      for (const index of this.byDepth[depth]) {
        const x0 = (model.starts[index] - start) * scale;
        const x1 = (model.ends[index] - start) * scale;
        if (x1 < 0 || x0 > width) continue;
        if (x1 < filledTo + 1 && x1 - x0 < 1) continue;
        const left = Math.max(0, x0);
        const boxWidth = Math.max(1, Math.min(width, x1) - left);
        filledTo = left + boxWidth;
        const span = model.spans[index];
        const dim =
          (this.dimOffPath && !span.on_critical_path) || (this.matches !== null && !this.matches.has(index));
        context.globalAlpha = dim ? 0.3 : 1;
        context.fillStyle = serviceColor(span.app_service);
        context.fillRect(left, y, boxWidth, ROW - 3);
        if (span.is_error) {
          context.fillStyle = ERROR_COLOR;
          context.fillRect(left, y, boxWidth, 3);
        }
        if (span.on_critical_path && !this.dimOffPath) {
          context.fillStyle = "rgba(17,24,39,0.85)";
          context.fillRect(left, y + ROW - 6, boxWidth, 3);
        }
        if (boxWidth > 36) {
          context.fillStyle = "#111827";
          const text = `${span.app_service}: ${span.endpoint}`;
          const room = Math.floor((boxWidth - 8) / 6.6);
          context.fillText(text.length > room ? `${text.slice(0, Math.max(1, room - 1))}…` : text, left + 4, y + (ROW - 3) / 2);
        }
        if (index === this.selected) {
          context.globalAlpha = 1;
          context.strokeStyle = "#111827";
          context.lineWidth = 2;
          context.strokeRect(left + 1, y + 1, boxWidth - 2, ROW - 5);
        }
        drawn++;
      }
    }
    context.globalAlpha = 1;
    this.element.dataset.ready = "true";
    this.element.dataset.drawn = String(drawn);
  }

  /** The span under the pointer. */
  private hit(event: MouseEvent): number | null {
    const rect = this.canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top + this.scroller.scrollTop;
    const depth = Math.floor(y / ROW);
    const list = this.byDepth[depth];
    if (!list) return null;
    const [start, end] = this.window;
    const scale = rect.width / (end - start);
    const time = start + x / scale;
    const slack = 2 / scale;
    // The last span starting at or before the pointer (binary search), then a few before it.
    let low = 0;
    let high = list.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (this.model.starts[list[middle]] <= time + slack) {
        found = middle;
        low = middle + 1;
      } else {
        high = middle - 1;
      }
    }
    for (let at = found; at >= 0 && at > found - 64; at--) {
      const index = list[at];
      if (this.model.ends[index] + slack >= time) return index;
    }
    return null;
  }

  private onHover(event: MouseEvent): void {
    const index = this.hit(event);
    if (index === null) {
      this.tooltip.hidden = true;
      this.canvas.style.cursor = "default";
      return;
    }
    const span = this.model.spans[index];
    this.canvas.style.cursor = "pointer";
    this.tooltip.textContent = "";
    this.tooltip.append(
      h("strong", null, `${span.app_service}: ${span.endpoint}`),
      h(
        "div",
        null,
        `${formatDuration(this.model.ends[index] - this.model.starts[index])} · self ${formatDuration(span.self_time)}` +
          (span.is_error ? " · error" : "") +
          (span.on_critical_path ? " · critical path" : ""),
      ),
    );
    this.tooltip.hidden = false;
    const box = this.element.getBoundingClientRect();
    const left = Math.min(event.clientX - box.left + 12, box.width - 320);
    this.tooltip.style.left = `${Math.max(0, left)}px`;
    this.tooltip.style.top = `${event.clientY - box.top + 14}px`;
  }
}
