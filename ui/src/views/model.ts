// A trace as the views draw it: the API's spans (already in waterfall order: parents before
// children, siblings by start) with the indexes the views need computed once, in typed
// arrays so that a trace of 50,000 spans costs little.

import type { Place, Span, TraceAnswer } from "../api";

export interface ServiceCount {
  name: string;
  spans: number;
  errors: number;
}

export interface TraceModel {
  answer: TraceAnswer;
  spans: Span[];
  byId: Map<string, number>;
  /** The index of each span's parent, -1 for a root or an orphan. */
  parent: Int32Array;
  /** One past the last descendant of each span: its subtree is [i, subtreeEnd[i]). */
  subtreeEnd: Int32Array;
  /** Start and end of each span after the clock-skew shift, µs since the epoch. */
  starts: Float64Array;
  ends: Float64Array;
  start: number;
  end: number;
  maxDepth: number;
  /** The stretches of each span on the critical path, in µs since the epoch. */
  critical: Map<number, [number, number][]>;
  services: ServiceCount[];
}

export function buildModel(answer: TraceAnswer): TraceModel {
  const spans = answer.spans;
  const count = spans.length;
  const byId = new Map<string, number>();
  const starts = new Float64Array(count);
  const ends = new Float64Array(count);
  let start = Infinity;
  let end = -Infinity;
  let maxDepth = 0;
  const services = new Map<string, ServiceCount>();
  for (let index = 0; index < count; index++) {
    const span = spans[index];
    if (!byId.has(span.span_id)) byId.set(span.span_id, index);
    const spanStart = span.adjusted_start_time ?? span.start_time;
    starts[index] = spanStart;
    ends[index] = spanStart + Math.max(0, span.end_time - span.start_time);
    if (starts[index] < start) start = starts[index];
    if (ends[index] > end) end = ends[index];
    if (span.depth > maxDepth) maxDepth = span.depth;
    let service = services.get(span.app_service);
    if (!service) {
      service = { name: span.app_service, spans: 0, errors: 0 };
      services.set(span.app_service, service);
    }
    service.spans++;
    if (span.is_error) service.errors++;
  }
  if (count === 0) {
    start = 0;
    end = 1;
  }
  if (end <= start) end = start + 1;

  const parent = new Int32Array(count).fill(-1);
  const subtreeEnd = new Int32Array(count);
  // Walk the waterfall order with a stack of open ancestors: a span closes every open span
  // at its depth or deeper, and its parent is the one left on top.
  const stack: number[] = [];
  for (let index = 0; index < count; index++) {
    const depth = spans[index].depth;
    while (stack.length > 0 && spans[stack[stack.length - 1]].depth >= depth) {
      subtreeEnd[stack.pop()!] = index;
    }
    if (stack.length > 0 && spans[index].parent_span_id) {
      parent[index] = stack[stack.length - 1];
    }
    stack.push(index);
  }
  while (stack.length > 0) subtreeEnd[stack.pop()!] = count;

  const critical = new Map<number, [number, number][]>();
  for (const section of answer.critical_path ?? []) {
    const index = byId.get(section.span_id);
    if (index === undefined) continue;
    let list = critical.get(index);
    if (!list) {
      list = [];
      critical.set(index, list);
    }
    list.push([section.start_time, section.end_time]);
  }

  return {
    answer,
    spans,
    byId,
    parent,
    subtreeEnd,
    starts,
    ends,
    start,
    end,
    maxDepth,
    critical,
    services: [...services.values()],
  };
}

/** Which spans are folded: below `level` by default, with `toggled` flipped from that. */
export interface Folding {
  level: number | null;
  toggled: Set<string>;
}

export function hasChildren(model: TraceModel, index: number): boolean {
  return model.subtreeEnd[index] > index + 1;
}

export function isCollapsed(model: TraceModel, folding: Folding, index: number): boolean {
  if (!hasChildren(model, index)) return false;
  const byLevel = folding.level !== null && model.spans[index].depth >= folding.level;
  return byLevel !== folding.toggled.has(model.spans[index].span_id);
}

/** The spans shown as rows: every span whose ancestors are all expanded. */
export function visibleRows(model: TraceModel, folding: Folding): Int32Array {
  const rows = new Int32Array(model.spans.length);
  let count = 0;
  let index = 0;
  while (index < model.spans.length) {
    rows[count++] = index;
    index = isCollapsed(model, folding, index) ? model.subtreeEnd[index] : index + 1;
  }
  return rows.subarray(0, count);
}

/** Flips what is needed so that span `index` is shown: unfolds its folded ancestors. */
export function reveal(model: TraceModel, folding: Folding, index: number): boolean {
  let changed = false;
  for (let ancestor = model.parent[index]; ancestor >= 0; ancestor = model.parent[ancestor]) {
    if (isCollapsed(model, folding, ancestor)) {
      const id = model.spans[ancestor].span_id;
      if (folding.toggled.has(id)) folding.toggled.delete(id);
      else folding.toggled.add(id);
      changed = true;
    }
  }
  return changed;
}

/** The end of its call a span ran on: the client end for client and producer spans. */
export function ownSide(span: Span): 0 | 1 {
  return span.span_kind_str === "client" || span.span_kind_str === "producer" ? 0 : 1;
}

/** Where a span itself ran, when known. */
export function ownPlace(span: Span): Place | undefined {
  return ownSide(span) === 0 ? span.place_0 : span.place_1;
}

/** What the trace view names a span's place by: its workload, else its pod. */
export function placeName(span: Span): string {
  const place = ownPlace(span);
  return place?.pod_group || place?.pod || "";
}

/** Lower-cased text a find box matches against: names, ids, attribute keys and values. */
export function searchText(span: Span): string {
  const parts = [span.app_service, span.endpoint, span.span_id, span.request_resource, span.status_message];
  const place = ownPlace(span);
  if (place) parts.push(place.pod ?? "", place.pod_group ?? "");
  for (const [key, value] of Object.entries(span.attributes ?? {})) {
    parts.push(key, typeof value === "string" ? value : JSON.stringify(value));
  }
  return parts.join("\u0000").toLowerCase();
}
