// SVG charts: the search page's scatter plot and the RED line charts. Drawn at a given pixel
// width (views redraw them when their box resizes), so text never stretches.

import { h, s } from "./dom";
import { formatClock, formatDuration } from "./format";

/** Round tick values covering [min, max], about `count` of them. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((candidate) => candidate >= raw) ?? raw;
  const ticks: number[] = [];
  for (let value = Math.ceil(min / step) * step; value <= max + step * 1e-9; value += step) {
    ticks.push(Math.abs(value) < step * 1e-9 ? 0 : value);
  }
  return ticks;
}

/** The upper end of a value axis: the largest value, rounded up to a tick. */
function niceMax(max: number): number {
  if (!(max > 0)) return 1;
  const ticks = niceTicks(0, max, 4);
  const last = ticks[ticks.length - 1];
  return last >= max ? last : last + (ticks[1] - ticks[0]);
}

const TIME_STEPS_US = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400].map(
  (seconds) => seconds * 1e6,
);

/** Tick times (µs) on whole seconds, minutes or hours. */
export function timeTicks(start: number, end: number, count = 6): number[] {
  const raw = (end - start) / count;
  const step = TIME_STEPS_US.find((candidate) => candidate >= raw) ?? TIME_STEPS_US[TIME_STEPS_US.length - 1];
  const offset = new Date().getTimezoneOffset() * 60e6;
  const ticks: number[] = [];
  // Round in local time so that hours fall on the hour where the reader is.
  for (let value = Math.ceil((start - offset) / step) * step + offset; value <= end; value += step) {
    ticks.push(value);
  }
  return ticks;
}

function timeLabel(value: number, start: number, end: number): string {
  return formatClock(value, end - start < 600e6);
}

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

function axes(frame: Frame, xDomain: [number, number], yMax: number, yFormat: (value: number) => string): SVGGElement {
  const group = s("g", { class: "axes" });
  const plotWidth = frame.width - frame.left - frame.right;
  const plotHeight = frame.height - frame.top - frame.bottom;
  for (const tick of niceTicks(0, yMax, 4)) {
    const y = frame.top + plotHeight - (tick / yMax) * plotHeight;
    group.append(
      s("line", { class: "grid", x1: frame.left, x2: frame.left + plotWidth, y1: y, y2: y }),
      s("text", { class: "tick", x: frame.left - 6, y: y + 4, "text-anchor": "end" }, tick === 0 ? "0" : yFormat(tick)),
    );
  }
  const [x0, x1] = xDomain;
  for (const tick of timeTicks(x0, x1, Math.max(2, Math.floor(plotWidth / 90)))) {
    const x = frame.left + ((tick - x0) / (x1 - x0)) * plotWidth;
    // Labels near an edge are kept inside the chart.
    const anchor = x > frame.width - 24 ? "end" : x < 24 ? "start" : "middle";
    group.append(
      s("line", { class: "grid grid-x", x1: x, x2: x, y1: frame.top, y2: frame.top + plotHeight }),
      s("text", { class: "tick", x, y: frame.height - 6, "text-anchor": anchor }, timeLabel(tick, x0, x1)),
    );
  }
  group.append(
    s("line", {
      class: "axis",
      x1: frame.left,
      x2: frame.left + plotWidth,
      y1: frame.top + plotHeight,
      y2: frame.top + plotHeight,
    }),
  );
  return group;
}

export interface Dot {
  /** Start, µs since the epoch. */
  time: number;
  /** Duration, µs. */
  duration: number;
  radius: number;
  color: string;
  error: boolean;
  href: string;
  label: string;
  id: string;
}

/** Trace durations over time; each dot is a link to its trace. */
export function scatterPlot(dots: Dot[], width: number, height: number): SVGSVGElement {
  const frame: Frame = { width, height, left: 64, right: 16, top: 12, bottom: 24 };
  let x0 = Math.min(...dots.map((dot) => dot.time));
  let x1 = Math.max(...dots.map((dot) => dot.time));
  const pad = Math.max((x1 - x0) * 0.04, 5e6);
  x0 -= pad;
  x1 += pad;
  const yMax = niceMax(Math.max(...dots.map((dot) => dot.duration)) * 1.05);
  const plotWidth = width - frame.left - frame.right;
  const plotHeight = height - frame.top - frame.bottom;
  const svg = s("svg", {
    class: "chart scatter",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `Trace durations over time, ${dots.length} traces`,
  });
  svg.append(axes(frame, [x0, x1], yMax, formatDuration));
  const layer = s("g", { class: "dots" });
  // Larger dots first, so small ones on top stay clickable.
  for (const dot of [...dots].sort((a, b) => b.radius - a.radius)) {
    const cx = frame.left + ((dot.time - x0) / (x1 - x0)) * plotWidth;
    const cy = frame.top + plotHeight - (dot.duration / yMax) * plotHeight;
    layer.append(
      s(
        "a",
        { href: dot.href, class: "dot-link", "data-trace-id": dot.id, "aria-label": dot.label },
        s("circle", {
          class: dot.error ? "dot dot-error" : "dot",
          cx: cx.toFixed(1),
          cy: cy.toFixed(1),
          r: dot.radius,
          fill: dot.color,
        }),
        s("title", null, dot.label),
      ),
    );
  }
  svg.append(layer);
  return svg;
}

export interface Series {
  name: string;
  color: string;
  /** One value per time; null leaves a gap. */
  values: (number | null)[];
  dashed?: boolean;
}

export interface LineChartSpec {
  title: string;
  times: number[];
  /** The width of one time bucket, µs. */
  step: number;
  series: Series[];
  format: (value: number) => string;
  width: number;
  height?: number;
}

/** A small time series chart with a title and a legend. */
export function lineChart(spec: LineChartSpec): HTMLElement {
  const height = spec.height ?? 150;
  const frame: Frame = { width: spec.width, height, left: 56, right: 10, top: 10, bottom: 22 };
  const plotWidth = spec.width - frame.left - frame.right;
  const plotHeight = height - frame.top - frame.bottom;
  const x0 = spec.times[0] ?? 0;
  const x1 = (spec.times[spec.times.length - 1] ?? 1) + spec.step;
  const values = spec.series.flatMap((series) => series.values.filter((value): value is number => value !== null));
  const yMax = niceMax(Math.max(0, ...values));
  const svg = s("svg", {
    class: "chart line-chart",
    width: spec.width,
    height,
    viewBox: `0 0 ${spec.width} ${height}`,
    role: "img",
    "aria-label": spec.title,
  });
  svg.append(axes(frame, [x0, x1], yMax, spec.format));
  const xOf = (index: number) => frame.left + ((spec.times[index] + spec.step / 2 - x0) / (x1 - x0)) * plotWidth;
  const yOf = (value: number) => frame.top + plotHeight - (value / yMax) * plotHeight;
  for (const series of spec.series) {
    let path = "";
    let pen = false;
    series.values.forEach((value, index) => {
      if (value === null) {
        pen = false;
        return;
      }
      path += `${pen ? "L" : "M"}${xOf(index).toFixed(1)},${yOf(value).toFixed(1)}`;
      pen = true;
    });
    svg.append(
      s("path", {
        class: "series",
        d: path || "M0,0",
        stroke: series.color,
        "stroke-dasharray": series.dashed ? "4 3" : null,
      }),
    );
    // A dot (with its value as a tooltip) where something happened, or where a value has no
    // neighbour to draw a line to; zeros are the line's.
    const points = s("g", { class: "points" });
    series.values.forEach((value, index) => {
      if (value === null) return;
      const alone = (series.values[index - 1] ?? null) === null && (series.values[index + 1] ?? null) === null;
      if (value === 0 && !alone) return;
      points.append(
        s(
          "circle",
          { cx: xOf(index).toFixed(1), cy: yOf(value).toFixed(1), r: 2.5, fill: series.color },
          s("title", null, `${formatClock(spec.times[index])} ${series.name}: ${spec.format(value)}`),
        ),
      );
    });
    svg.append(points);
  }
  return h(
    "figure",
    { class: "chart-figure" },
    h(
      "figcaption",
      null,
      h("span", { class: "chart-title" }, spec.title),
      spec.series.length > 1
        ? h(
            "span",
            { class: "legend" },
            spec.series.map((series) =>
              h("span", { class: "legend-item" }, h("i", { class: "swatch", style: `background:${series.color}` }), series.name),
            ),
          )
        : null,
    ),
    svg,
  );
}

/** A tiny line without axes, for tables. */
export function sparkline(values: number[], color: string, width = 90, height = 20): SVGSVGElement {
  const max = Math.max(1e-9, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const path = values
    .map((value, index) => `${index ? "L" : "M"}${(index * step).toFixed(1)},${(height - 1 - (value / max) * (height - 2)).toFixed(1)}`)
    .join("");
  return s(
    "svg",
    { class: "sparkline", width, height, viewBox: `0 0 ${width} ${height}`, "aria-hidden": "true" },
    s("path", { d: path || "M0,0", stroke: color, fill: "none" }),
  );
}

/** Calls `draw` with the element's width now and whenever it changes. */
export function onWidth(element: HTMLElement, draw: (width: number) => void): () => void {
  let last = -1;
  const observer = new ResizeObserver(() => {
    const width = Math.floor(element.clientWidth);
    if (width > 0 && width !== last) {
      last = width;
      draw(width);
    }
  });
  observer.observe(element);
  return () => observer.disconnect();
}
