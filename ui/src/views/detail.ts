// The span detail pane: the row's fields, where both ends of the call ran, attributes grouped
// by type, resource tags, events and links.

import type { AttrValue, Attributes, Place, Span } from "../api";
import { serviceColor } from "../color";
import { h, type Child } from "../dom";
import { formatDuration, formatTime, plural } from "../format";
import { ownSide, type TraceModel } from "./model";

export interface DetailActions {
  close(): void;
  select(index: number): void;
  zoom(index: number): void;
}

const TYPE_ORDER = ["string", "int", "double", "bool", "array", "map", "empty"] as const;
type ValueType = (typeof TYPE_ORDER)[number];

export function valueType(value: AttrValue): ValueType {
  if (value === null) return "empty";
  if (Array.isArray(value)) return "array";
  switch (typeof value) {
    case "string":
      return "string";
    case "boolean":
      return "bool";
    case "number":
      return Number.isInteger(value) ? "int" : "double";
    default:
      return "map";
  }
}

function valueText(value: AttrValue): string {
  if (typeof value === "string") return value;
  if (value === null) return "(empty)";
  return JSON.stringify(value);
}

function kvTable(rows: [string, Child][], className = "kv"): HTMLElement {
  return h(
    "table",
    { class: className },
    h(
      "tbody",
      null,
      rows.map(([key, value]) => h("tr", null, h("th", { scope: "row" }, key), h("td", null, value))),
    ),
  );
}

/** Attributes in one table per value type, keys sorted. */
function attributesByType(attributes: Attributes, emptyText: string): HTMLElement {
  const entries = Object.entries(attributes ?? {});
  if (entries.length === 0) return emptyText ? h("p", { class: "muted" }, emptyText) : h("span");
  const groups = new Map<ValueType, [string, AttrValue][]>();
  for (const entry of entries) {
    const type = valueType(entry[1]);
    if (!groups.has(type)) groups.set(type, []);
    groups.get(type)!.push(entry);
  }
  return h(
    "div",
    { class: "attr-groups" },
    TYPE_ORDER.filter((type) => groups.has(type)).map((type) =>
      h(
        "div",
        { class: "attr-group", "data-type": type },
        h("div", { class: "attr-type" }, type),
        kvTable(
          groups
            .get(type)!
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([key, value]) => [key, h("span", { class: `value value-${type}` }, valueText(value))]),
          "kv attrs",
        ),
      ),
    ),
  );
}

function section(title: string, count: number | null, ...body: Child[]): HTMLElement {
  const open = count === null || count > 0;
  const details = h(
    "details",
    { class: "detail-section", "data-section": title.toLowerCase() },
    h("summary", null, title, count !== null ? h("span", { class: "count" }, String(count)) : null),
    body,
  );
  details.open = open;
  return details;
}

const STATUS = ["unset", "ok", "error"];

function rowFields(model: TraceModel, index: number, actions: DetailActions): [string, Child][] {
  const span = model.spans[index];
  const fields: [string, Child][] = [];
  const put = (key: string, value: Child | undefined | null | false) => {
    if (value === undefined || value === null || value === false || value === "") return;
    fields.push([key, value]);
  };
  put("Span ID", h("code", null, span.span_id));
  if (span.parent_span_id) {
    const parent = model.byId.get(span.parent_span_id);
    put(
      "Parent",
      parent !== undefined
        ? h(
            "button",
            { type: "button", class: "link", onclick: () => actions.select(parent) },
            h("code", null, span.parent_span_id),
            ` ${model.spans[parent].app_service}: ${model.spans[parent].endpoint}`,
          )
        : h("span", null, h("code", null, span.parent_span_id), " (not in this trace)"),
    );
  }
  put("Kind", span.span_kind_str);
  put("Observation point", span.observation_point);
  const status = STATUS[span.status_code] ?? String(span.status_code);
  put(
    "Status",
    h(
      "span",
      { class: span.status_code === 2 ? "error-text" : "" },
      status + (span.status_message ? `: ${span.status_message}` : ""),
    ),
  );
  if (span.response_status_str && span.response_status_str !== "unknown") {
    put("Response status", h("span", { class: span.is_error ? "error-text" : "" }, span.response_status_str));
  }
  if (span.response_code !== null && span.response_code !== undefined) put("Response code", String(span.response_code));
  put("Exception", span.response_exception && h("span", { class: "error-text" }, span.response_exception));
  const protocol = [span.l7_protocol_str, span.version, span.is_tls ? "TLS" : ""].filter(Boolean).join(" ");
  put("Protocol", protocol);
  put("Request", [span.request_type, span.request_domain, span.request_resource].filter(Boolean).join(" "));
  if (span.request_length !== null && span.request_length !== undefined) put("Request bytes", String(span.request_length));
  if (span.response_length !== null && span.response_length !== undefined) put("Response bytes", String(span.response_length));
  const endpoint = (ip: string | null, port: number) => (ip ? (port ? `${ip}:${port}` : ip) : port ? `:${port}` : "");
  const client = endpoint(span.ip_0, span.client_port);
  const server = endpoint(span.ip_1, span.server_port);
  put("Client", client);
  put("Server", server);
  put("Instance", span.app_instance);
  put("Scope", [span.scope_name, span.scope_version].filter(Boolean).join(" "));
  put("Trace state", span.trace_state);
  if (span.flags) put("Flags", String(span.flags));
  if (span.clock_skew) put("Clock skew", `shifted by ${formatDuration(span.clock_skew)} to fit its parent`);
  if (span.warnings?.length) put("Warnings", h("ul", { class: "plain" }, span.warnings.map((warning) => h("li", null, warning))));
  const dropped = [
    span.dropped_attributes_count ? plural(span.dropped_attributes_count, "attribute") : "",
    span.dropped_events_count ? plural(span.dropped_events_count, "event") : "",
    span.dropped_links_count ? plural(span.dropped_links_count, "link") : "",
  ].filter(Boolean);
  if (dropped.length) put("Dropped", dropped.join(", "));
  return fields;
}

/** A place's fields as the pane shows them: label, and DeepFlow's field name. */
const PLACE_FIELDS: [string, keyof Place][] = [
  ["Pod", "pod"],
  ["Namespace", "pod_ns"],
  ["Workload", "pod_group"],
  ["Node", "pod_node"],
  ["Cluster", "pod_cluster"],
  ["K8s service", "service"],
  ["Host", "host"],
  ["Region", "region"],
  ["Zone", "az"],
  ["Auto instance", "auto_instance"],
  ["Auto service", "auto_service"],
];

/** One end of the call: its fields (with the column each is, `pod_1`, as a tooltip) and labels. */
function placeEnd(title: string, side: 0 | 1, place: Place | undefined, own: boolean): HTMLElement {
  const rows: [string, Child][] = [];
  for (const [label, field] of PLACE_FIELDS) {
    const value = place?.[field];
    if (typeof value !== "string" || !value) continue;
    const kind =
      field === "pod_group" ? place?.pod_group_type : field === "auto_instance" ? place?.auto_instance_type : field === "auto_service" ? place?.auto_service_type : "";
    rows.push([label, h("span", { title: `${field}_${side}`, "data-field": field }, value, kind ? h("span", { class: "muted" }, ` (${kind})`) : null)]);
  }
  const labels = Object.entries(place?.labels ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (labels.length) {
    rows.push([
      "Labels",
      h(
        "span",
        { class: "chips place-labels", title: `labels_${side}` },
        labels.map(([key, value]) => h("span", { class: "chip", "data-label": key }, `${key}=${value}`)),
      ),
    ]);
  }
  return h(
    "div",
    { class: "place-end", "data-end": side === 0 ? "client" : "server" },
    h("div", { class: "attr-type" }, title, own ? h("span", { class: "place-own" }, " · this span") : null),
    rows.length ? kvTable(rows) : h("p", { class: "muted" }, "Nothing known."),
  );
}

const RESOURCE_TAGS: [keyof Span, string][] = [
  ["service_namespace", "service.namespace"],
  ["service_version", "service.version"],
  ["deployment_environment", "deployment.environment"],
  ["host_name", "host.name"],
  ["container_id", "container.id"],
  ["k8s_cluster_name", "k8s.cluster.name"],
  ["k8s_namespace_name", "k8s.namespace.name"],
  ["k8s_node_name", "k8s.node.name"],
  ["k8s_pod_name", "k8s.pod.name"],
  ["k8s_pod_uid", "k8s.pod.uid"],
  ["k8s_workload_kind", "k8s.workload.kind"],
  ["k8s_workload_name", "k8s.workload.name"],
];

export function spanDetail(model: TraceModel, index: number, actions: DetailActions): HTMLElement {
  const span = model.spans[index];
  const start = model.starts[index];
  const duration = model.ends[index] - start;
  const critical = model.critical.get(index) ?? [];
  const criticalTime = critical.reduce((sum, [from, to]) => sum + (to - from), 0);
  // The row's tag columns, where the resource attributes do not already say the same.
  const resource = span.resource_attributes ?? {};
  const tags: [string, Child][] = RESOURCE_TAGS.filter(([field, name]) => span[field] && !(name in resource)).map(
    ([field, name]) => [name, String(span[field])],
  );
  const events = span.events ?? [];
  const links = span.links ?? [];
  const ends = (span.place_0 ? 1 : 0) + (span.place_1 ? 1 : 0);
  const own = ownSide(span);

  return h(
    "div",
    { class: "span-detail", "data-testid": "span-detail", "data-span-id": span.span_id },
    h(
      "div",
      { class: "detail-head" },
      h(
        "div",
        { class: "detail-title" },
        h("div", { class: "detail-service" }, h("i", { class: "swatch", style: `background:${serviceColor(span.app_service)}` }), span.app_service),
        h("h2", { class: span.is_error ? "error-text" : "" }, span.endpoint || "(no name)"),
      ),
      h("button", { type: "button", class: "icon-button", "aria-label": "Close span details", title: "Close (Esc)", onclick: () => actions.close() }, "×"),
    ),
    h(
      "div",
      { class: "detail-badges" },
      h("span", { class: "badge" }, span.span_kind_str),
      span.is_error ? h("span", { class: "badge badge-error" }, "error") : null,
      span.on_critical_path
        ? h("span", { class: "badge badge-critical", title: "time the trace waited on this span" }, `critical path ${formatDuration(criticalTime)}`)
        : null,
      h("button", { type: "button", class: "link", onclick: () => actions.zoom(index), title: "Fit the time axis to this span" }, "Zoom to span"),
    ),
    h(
      "dl",
      { class: "detail-facts" },
      h("div", null, h("dt", null, "Duration"), h("dd", null, formatDuration(duration))),
      h("div", null, h("dt", null, "Self time"), h("dd", null, formatDuration(span.self_time))),
      h("div", null, h("dt", null, "Starts at"), h("dd", null, `+${formatDuration(start - model.start)}`)),
      h("div", null, h("dt", null, "Start"), h("dd", null, formatTime(span.start_time))),
    ),
    section("Span", null, kvTable(rowFields(model, index, actions))),
    ends
      ? section(
          "Where it ran",
          ends,
          h(
            "div",
            { class: "place-ends", "data-testid": "span-places" },
            placeEnd("Client end", 0, span.place_0, own === 0),
            placeEnd("Server end", 1, span.place_1, own === 1),
          ),
        )
      : null,
    section("Attributes", Object.keys(span.attributes ?? {}).length, attributesByType(span.attributes, "No attributes.")),
    section(
      "Resource",
      tags.length + Object.keys(span.resource_attributes ?? {}).length,
      tags.length ? kvTable(tags, "kv attrs") : null,
      attributesByType(span.resource_attributes, tags.length ? "" : "No resource attributes."),
    ),
    section(
      "Events",
      events.length,
      events.length === 0
        ? h("p", { class: "muted" }, "No events.")
        : h(
            "ol",
            { class: "events" },
            events.map((event) =>
              h(
                "li",
                { class: event.name === "exception" ? "event event-exception" : "event" },
                h("div", { class: "event-head" }, h("span", { class: "event-time" }, `+${formatDuration(event.time - span.start_time)}`), h("strong", null, event.name)),
                Object.keys(event.attributes ?? {}).length ? attributesByType(event.attributes, "") : null,
              ),
            ),
          ),
    ),
    section(
      "Links",
      links.length,
      links.length === 0
        ? h("p", { class: "muted" }, "No links.")
        : h(
            "ol",
            { class: "links" },
            links.map((link) =>
              h(
                "li",
                null,
                h("a", { href: `/trace/${link.trace_id}?span=${link.span_id}` }, h("code", null, `${link.trace_id} / ${link.span_id}`)),
                Object.keys(link.attributes ?? {}).length ? attributesByType(link.attributes, "") : null,
              ),
            ),
          ),
    ),
  );
}
