// The query API the UI reads (crates/api/src/native.rs), its JSON shapes, and the token and
// tenant a person may have entered (kept in this browser only).

export interface ServiceShare {
  name: string;
  span_count: number;
  error_count: number;
}

export interface Summary {
  trace_id: string;
  root_service: string;
  root_operation: string;
  start_time: number;
  end_time: number;
  duration: number;
  span_count: number;
  error_count: number;
  services: ServiceShare[];
}

export interface SearchAnswer {
  traces: Summary[];
  complete: boolean;
  spans_inspected: number;
}

export type AttrValue = string | number | boolean | null | AttrValue[] | { [key: string]: AttrValue };
export type Attributes = Record<string, AttrValue>;

export interface SpanEvent {
  time: number;
  name: string;
  attributes: Attributes;
  dropped_attributes_count: number;
}

export interface SpanLink {
  trace_id: string;
  span_id: string;
  trace_state: string;
  attributes: Attributes;
  dropped_attributes_count: number;
  flags: number;
}

/**
 * Where one end of a call ran, with DeepFlow's field names; a field nothing is known of is left
 * out, and so is an end nothing is known of.
 */
export interface Place {
  pod?: string;
  pod_ns?: string;
  /** The workload. */
  pod_group?: string;
  /** `deployment`, `statefulset`, `daemonset`, `replicaset`, `job`, `cronjob` or `pod`. */
  pod_group_type?: string;
  pod_node?: string;
  pod_cluster?: string;
  /** The Kubernetes service. */
  service?: string;
  host?: string;
  region?: string;
  az?: string;
  auto_instance?: string;
  auto_instance_type?: string;
  auto_service?: string;
  auto_service_type?: string;
  labels?: Record<string, string>;
}

/** One span as `GET /api/v1/traces/{id}` returns it: the row's columns plus its place in the tree. */
export interface Span {
  time: number;
  start_time: number;
  end_time: number;
  trace_id: string;
  span_id: string;
  parent_span_id: string;
  span_kind: number;
  span_kind_str: string;
  observation_point: string;
  trace_state: string;
  flags: number;
  endpoint: string;
  app_service: string;
  app_instance: string;
  signal_source: number;
  agent_id: number;
  l7_protocol: number;
  l7_protocol_str: string;
  version: string;
  is_tls: boolean;
  protocol: number;
  request_type: string;
  request_domain: string;
  request_resource: string;
  request_length: number | null;
  response_length: number | null;
  response_code: number | null;
  response_status: number;
  response_status_str: string;
  response_exception: string;
  status_code: number;
  status_message: string;
  response_duration: number;
  ip_0: string | null;
  ip_1: string | null;
  client_port: number;
  server_port: number;
  /** Where the client end of the call ran. */
  place_0?: Place;
  /** Where the server end of the call ran. */
  place_1?: Place;
  scope_name: string;
  scope_version: string;
  host_name: string;
  container_id: string;
  k8s_cluster_name: string;
  k8s_namespace_name: string;
  k8s_node_name: string;
  k8s_pod_name: string;
  k8s_pod_uid: string;
  k8s_workload_kind: string;
  k8s_workload_name: string;
  service_namespace: string;
  service_version: string;
  deployment_environment: string;
  attributes: Attributes;
  resource_attributes: Attributes;
  events: SpanEvent[];
  links: SpanLink[];
  dropped_attributes_count: number;
  dropped_events_count: number;
  dropped_links_count: number;
  depth: number;
  self_time: number;
  adjusted_start_time: number;
  clock_skew: number;
  on_critical_path: boolean;
  is_error: boolean;
  child_count: number;
  warnings: string[];
}

export interface CriticalSection {
  span_id: string;
  start_time: number;
  end_time: number;
}

export interface TraceAnswer {
  trace_id: string;
  summary: Summary;
  spans: Span[];
  spans_returned: number;
  truncated: boolean;
  orphan_count: number;
  critical_path: CriticalSection[];
}

export interface Operation {
  name: string;
  span_kind: string;
}

export interface MapNode {
  name: string;
  kind: "service" | "database" | "messaging";
}

export interface MapEdge {
  caller: string;
  callee: string;
  callee_kind: "service" | "database" | "messaging";
  calls: number;
  errors: number;
  latency_p50: number;
  latency_p95: number;
  latency_p99: number;
}

/** What the service map's nodes stand for: services, or where each end ran. */
export type MapBy = "service" | "workload";

export interface ServiceMap {
  start: number;
  end: number;
  by: MapBy;
  nodes: MapNode[];
  edges: MapEdge[];
}

export interface RedPoint {
  time: number;
  operation: string | null;
  calls: number;
  errors: number;
  rate: number;
  error_rate: number;
  latency_p50: number;
  latency_p95: number;
  latency_p99: number;
}

export interface Red {
  service: string;
  start: number;
  end: number;
  step: number;
  points: RedPoint[];
}

/** A failed call: the API's own `{"error": ...}` message when it sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }

  /** The query API wants a token this browser does not have (or has wrong). */
  get needsToken(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

const TOKEN_KEY = "spanflow.token";
const ORG_KEY = "spanflow.org";

export function savedToken(): string {
  return localStorage.getItem(TOKEN_KEY) ?? "";
}

export function savedOrg(): string {
  return localStorage.getItem(ORG_KEY) ?? "";
}

export function saveAccess(token: string, org: string): void {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
  if (org) localStorage.setItem(ORG_KEY, org);
  else localStorage.removeItem(ORG_KEY);
}

export type Params = Record<string, string | number | undefined | null> | [string, string][];

function queryString(params: Params | undefined): string {
  if (!params) return "";
  const search = new URLSearchParams();
  const entries = Array.isArray(params) ? params : Object.entries(params);
  for (const [key, value] of entries) {
    if (value !== undefined && value !== null && value !== "") search.append(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

async function get<T>(path: string, params?: Params, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = savedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const org = savedOrg();
  if (org) headers["X-Org-Id"] = org;
  let response: Response;
  try {
    response = await fetch(path + queryString(params), { headers, signal });
  } catch (error) {
    if ((error as Error).name === "AbortError") throw error;
    throw new ApiError(0, `the query API did not answer (${(error as Error).message})`);
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const reason =
      body && typeof body === "object" && "error" in body
        ? String((body as { error: unknown }).error)
        : text.slice(0, 300) || response.statusText;
    throw new ApiError(response.status, `${response.status}: ${reason}`);
  }
  if (body === null) throw new ApiError(response.status, "the query API answered with no JSON");
  return body as T;
}

export const api = {
  search: (params: [string, string][], signal?: AbortSignal) =>
    get<SearchAnswer>("/api/v1/traces", params, signal),
  /** A trace, cut to its upper `limit` spans when given (the server caps it too). */
  trace: (traceId: string, limit: number | null, signal?: AbortSignal) =>
    get<TraceAnswer>(`/api/v1/traces/${encodeURIComponent(traceId)}`, { limit: limit ?? undefined }, signal),
  services: async (start: number, end: number, signal?: AbortSignal) =>
    (await get<{ services: string[] }>("/api/v1/services", { start, end }, signal)).services,
  operations: async (service: string, start: number, end: number, signal?: AbortSignal) =>
    (
      await get<{ operations: Operation[] }>(
        `/api/v1/services/${encodeURIComponent(service)}/operations`,
        { start, end },
        signal,
      )
    ).operations,
  serviceMap: (start: number, end: number, by: MapBy, signal?: AbortSignal) =>
    get<ServiceMap>("/api/v1/service-map", { start, end, by }, signal),
  red: (service: string, groupBy: "service" | "operation", start: number, end: number, signal?: AbortSignal) =>
    get<Red>("/api/v1/red", { service, group_by: groupBy, start, end }, signal),
};
