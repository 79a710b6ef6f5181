// The time range of a search or of the service map, as the URL holds it: `lookback=1h` (a
// window ending now, so a shared link shows the newest data) or `start=` and `end=` (fixed,
// RFC 3339 in UTC, so a link shows the same data to everyone).

import { h } from "./dom";

export const LOOKBACKS: [string, string][] = [
  ["5m", "Last 5 minutes"],
  ["15m", "Last 15 minutes"],
  ["1h", "Last hour"],
  ["6h", "Last 6 hours"],
  ["24h", "Last 24 hours"],
  ["72h", "Last 72 hours"],
];

export const DEFAULT_LOOKBACK = "1h";

const UNIT_US: Record<string, number> = { m: 60e6, h: 3600e6, d: 86400e6 };

function lookbackMicros(lookback: string): number | null {
  const match = /^(\d+)([mhd])$/.exec(lookback);
  return match ? Number(match[1]) * UNIT_US[match[2]] : null;
}

/** µs since the epoch from RFC 3339 or a number of µs. */
export function parseTime(text: string | null): number | null {
  if (!text) return null;
  if (/^\d+$/.test(text)) return Number(text);
  const millis = Date.parse(text);
  return Number.isNaN(millis) ? null : millis * 1000;
}

export interface Range {
  start: number;
  end: number;
  /** What the range is called in messages: "the last hour", "the chosen range". */
  label: string;
}

export function resolveRange(params: URLSearchParams): Range {
  const start = parseTime(params.get("start"));
  const end = parseTime(params.get("end"));
  if (start !== null && end !== null && start < end) {
    return { start, end, label: "the chosen time range" };
  }
  const lookback = params.get("lookback") ?? DEFAULT_LOOKBACK;
  const micros = lookbackMicros(lookback) ?? lookbackMicros(DEFAULT_LOOKBACK)!;
  const now = Date.now() * 1000;
  const name = LOOKBACKS.find(([value]) => value === lookback)?.[1].toLowerCase() ?? `last ${lookback}`;
  return { start: now - micros, end: now, label: `the ${name}` };
}

/** `YYYY-MM-DDTHH:MM` in local time, what a datetime-local input holds. */
function toLocalInput(micros: number): string {
  const date = new Date(micros / 1000 - new Date(micros / 1000).getTimezoneOffset() * 60000);
  return date.toISOString().slice(0, 16);
}

export interface RangeControl {
  element: HTMLElement;
  /** Writes the control's range into `params`. */
  write(params: URLSearchParams): void;
  /** Shows the range `params` hold. */
  read(params: URLSearchParams): void;
}

/** A select of lookbacks plus a custom start and end. */
export function rangeControl(idPrefix: string, onChange?: () => void): RangeControl {
  const select = h(
    "select",
    { id: `${idPrefix}-lookback`, name: "lookback" },
    LOOKBACKS.map(([value, label]) => h("option", { value }, label)),
    h("option", { value: "custom" }, "Custom range…"),
  );
  const startInput = h("input", { type: "datetime-local", id: `${idPrefix}-start`, "aria-label": "Start time" });
  const endInput = h("input", { type: "datetime-local", id: `${idPrefix}-end`, "aria-label": "End time" });
  const custom = h(
    "div",
    { class: "range-custom" },
    h("label", { for: startInput.id }, "From"),
    startInput,
    h("label", { for: endInput.id }, "To"),
    endInput,
  );
  const showCustom = () => {
    custom.hidden = select.value !== "custom";
  };
  select.addEventListener("change", () => {
    if (select.value === "custom" && !startInput.value) {
      const now = Date.now() * 1000;
      startInput.value = toLocalInput(now - 3600e6);
      endInput.value = toLocalInput(now);
    }
    showCustom();
    onChange?.();
  });
  startInput.addEventListener("change", () => onChange?.());
  endInput.addEventListener("change", () => onChange?.());
  const element = h(
    "div",
    { class: "range" },
    h("label", { for: select.id }, "Time range"),
    select,
    custom,
  );
  return {
    element,
    write(params) {
      params.delete("lookback");
      params.delete("start");
      params.delete("end");
      if (select.value === "custom") {
        const start = Date.parse(startInput.value);
        const end = Date.parse(endInput.value);
        if (!Number.isNaN(start) && !Number.isNaN(end) && start < end) {
          params.set("start", new Date(start).toISOString());
          params.set("end", new Date(end).toISOString());
          return;
        }
      }
      params.set("lookback", select.value === "custom" ? DEFAULT_LOOKBACK : select.value);
    },
    read(params) {
      const start = parseTime(params.get("start"));
      const end = parseTime(params.get("end"));
      if (start !== null && end !== null && start < end) {
        select.value = "custom";
        startInput.value = toLocalInput(start);
        endInput.value = toLocalInput(end);
      } else {
        const lookback = params.get("lookback") ?? DEFAULT_LOOKBACK;
        select.value = LOOKBACKS.some(([value]) => value === lookback) ? lookback : DEFAULT_LOOKBACK;
      }
      showCustom();
    },
  };
}
