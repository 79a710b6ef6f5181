// Formatting of durations, times, counts and rates. Every time in the API is in µs.

/** Three significant digits, no trailing zeros past the point: 1.23, 12.3, 123. */
function significant(value: number): string {
  if (value >= 100) return Math.round(value).toString();
  if (value >= 10) return trimZeros(value.toFixed(1));
  return trimZeros(value.toFixed(2));
}

function trimZeros(text: string): string {
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

/** A duration in µs as µs, ms, s, or minutes and hours. */
export function formatDuration(micros: number): string {
  if (!Number.isFinite(micros)) return "–";
  const sign = micros < 0 ? "-" : "";
  const us = Math.abs(micros);
  if (us < 1000) return `${sign}${significant(us)}µs`;
  if (us < 1_000_000) return `${sign}${significant(us / 1000)}ms`;
  if (us < 60_000_000) return `${sign}${significant(us / 1_000_000)}s`;
  const totalSeconds = Math.round(us / 1_000_000);
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  if (hours > 0) return `${sign}${hours}h ${minutes}m`;
  return `${sign}${minutes}m ${seconds}s`;
}

/** A point on a time axis: a duration, with its origin as a plain 0. */
export function formatOffset(micros: number): string {
  return micros === 0 ? "0" : formatDuration(micros);
}

/** A duration typed by a person (`250ms`, `1.5s`, `2m`, `800us`, or plain µs) in µs. */
export function parseDuration(text: string): number | null {
  const trimmed = text.trim();
  if (trimmed === "") return null;
  const match = /^(\d+(?:\.\d+)?)\s*(µs|us|ms|s|m|h)?$/i.exec(trimmed);
  if (!match) return null;
  const value = Number(match[1]);
  const unit = (match[2] ?? "us").toLowerCase();
  const scale: Record<string, number> = {
    "µs": 1,
    us: 1,
    ms: 1000,
    s: 1_000_000,
    m: 60_000_000,
    h: 3_600_000_000,
  };
  return Math.round(value * scale[unit]);
}

const pad = (value: number, width = 2) => value.toString().padStart(width, "0");

/** µs since the epoch as local `YYYY-MM-DD HH:MM:SS.mmm`. */
export function formatTime(micros: number): string {
  const date = new Date(micros / 1000);
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.` +
    pad(date.getMilliseconds(), 3)
  );
}

/** µs since the epoch as local `HH:MM:SS`, for axes. */
export function formatClock(micros: number, withSeconds = true): string {
  const date = new Date(micros / 1000);
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
  return withSeconds ? `${clock}:${pad(date.getSeconds())}` : clock;
}

/** How long ago, roughly: `just now`, `5 min ago`, `3 h ago`, `2 days ago`. */
export function formatAgo(micros: number, nowMicros = Date.now() * 1000): string {
  const seconds = (nowMicros - micros) / 1_000_000;
  if (seconds < 0) return "in the future";
  if (seconds < 10) return "just now";
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} days ago`;
}

export function formatCount(value: number): string {
  return value.toLocaleString("en-US");
}

export function plural(count: number, one: string, many = `${one}s`): string {
  return `${formatCount(count)} ${count === 1 ? one : many}`;
}

/** Calls per second, or per minute when fewer than one a second. */
export function formatRate(perSecond: number): string {
  if (perSecond === 0) return "0/s";
  if (perSecond >= 1) return `${significant(perSecond)}/s`;
  return `${significant(perSecond * 60)}/min`;
}

/** Rates on one axis in one unit: per second, or per minute when the largest is under 1/s. */
export function rateFormatter(largestPerSecond: number): (perSecond: number) => string {
  if (largestPerSecond >= 1) return (perSecond) => `${significant(perSecond)}/s`;
  return (perSecond) => `${significant(perSecond * 60)}/min`;
}

/** A ratio (0..1) as a percentage. */
export function formatPercent(ratio: number): string {
  if (ratio === 0) return "0%";
  const percent = ratio * 100;
  if (percent < 0.1) return "<0.1%";
  return `${significant(percent)}%`;
}

/** An id cut for display: the first `length` hex digits. */
export function shortId(id: string, length = 8): string {
  return id.length > length ? id.slice(0, length) : id;
}
