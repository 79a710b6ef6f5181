//! Reading spans back: the row as `RowBinary` returns it, and the SQL of trace lookups and
//! searches.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use spanflow_model::{
    Attribute, AutoType, L7Protocol, ObservationPoint, Place, ResourceTags, ResponseStatus, SpanId,
    SpanKind, SpanRow, TraceId,
};
use spanflow_store::analytics::{Edge, MapBy, NodeKind, RedPoint, RedQuery};
use spanflow_store::sql::SqlResult;
use spanflow_store::{text, ErrorKind, SpanQuery, StoreError, TimeRange};

use crate::schema::Flavor;

/// The [`ResourceTags`] moved out of a row that holds them as columns of their own (a span
/// row, or an `l7_resource` row): `clickhouse::Row` reads a struct's fields flat, so the rows
/// name them one by one.
macro_rules! resource_tags {
    ($row:ident) => {
        ResourceTags {
            host_name: $row.host_name,
            container_id: $row.container_id,
            k8s_cluster_name: $row.k8s_cluster_name,
            k8s_namespace_name: $row.k8s_namespace_name,
            k8s_node_name: $row.k8s_node_name,
            k8s_pod_name: $row.k8s_pod_name,
            k8s_pod_uid: $row.k8s_pod_uid,
            k8s_workload_kind: $row.k8s_workload_kind,
            k8s_workload_name: $row.k8s_workload_name,
            service_namespace: $row.service_namespace,
            service_version: $row.service_version,
            deployment_environment: $row.deployment_environment,
        }
    };
}

/// One `l7_flow_log` row, field for field in column order; `SELECT ?fields` names them.
#[derive(clickhouse::Row, serde::Deserialize)]
pub struct StoredSpan {
    time: u32,
    start_time: i64,
    end_time: i64,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent_span_id: Option<[u8; 8]>,
    span_kind: u8,
    observation_point: String,
    trace_state: String,
    flags: u32,
    endpoint: String,
    app_service: String,
    app_instance: String,
    signal_source: u16,
    agent_id: String,
    l7_protocol: u8,
    l7_protocol_str: String,
    version: String,
    is_tls: u8,
    protocol: u8,
    request_type: String,
    request_domain: String,
    request_resource: String,
    request_length: Option<i64>,
    response_length: Option<i64>,
    response_code: Option<i32>,
    response_status: u8,
    response_exception: String,
    status_code: u8,
    status_message: String,
    response_duration: u64,
    ip_0: String,
    ip_1: String,
    client_port: u16,
    server_port: u16,
    pod_0: String,
    pod_ns_0: String,
    pod_group_0: String,
    pod_group_type_0: String,
    pod_node_0: String,
    pod_cluster_0: String,
    service_0: String,
    host_0: String,
    region_0: String,
    az_0: String,
    auto_instance_0: String,
    auto_service_0: String,
    auto_instance_type_0: u8,
    auto_service_type_0: u8,
    labels_0: String,
    pod_1: String,
    pod_ns_1: String,
    pod_group_1: String,
    pod_group_type_1: String,
    pod_node_1: String,
    pod_cluster_1: String,
    service_1: String,
    host_1: String,
    region_1: String,
    az_1: String,
    auto_instance_1: String,
    auto_service_1: String,
    auto_instance_type_1: u8,
    auto_service_type_1: u8,
    labels_1: String,
    scope_name: String,
    scope_version: String,
    host_name: String,
    container_id: String,
    k8s_cluster_name: String,
    k8s_namespace_name: String,
    k8s_node_name: String,
    k8s_pod_name: String,
    k8s_pod_uid: String,
    k8s_workload_kind: String,
    k8s_workload_name: String,
    service_namespace: String,
    service_version: String,
    deployment_environment: String,
    attribute_names: Vec<String>,
    attribute_values: Vec<String>,
    attribute_types: Vec<u8>,
    resource_attribute_names: Vec<String>,
    resource_attribute_values: Vec<String>,
    resource_attribute_types: Vec<u8>,
    resource_id: u64,
    attribute_keys_id: u64,
    events: String,
    links: String,
    dropped_attributes_count: u32,
    dropped_events_count: u32,
    dropped_links_count: u32,
}

impl StoredSpan {
    /// The span's key: trace id and span id.
    pub fn key(&self) -> ([u8; 16], [u8; 8]) {
        (self.trace_id, self.span_id)
    }

    /// The key of the span's resource in `l7_resource`; 0 for none, or for a row of an older
    /// version, which holds its resource's attributes itself.
    pub fn resource_id(&self) -> u64 {
        self.resource_id
    }

    /// The key of the span's attribute key set in `l7_resource`; 0 for none, or for a row of
    /// an older version, which holds its attributes' names and types itself.
    pub fn attribute_keys_id(&self) -> u64 {
        self.attribute_keys_id
    }

    /// The span row, with `resource`, its resource's `l7_resource` row, and `key_set`, its
    /// attribute key set's; an error names the column that does not hold what spanflow writes.
    pub fn into_row(
        self,
        resource: Option<&SharedSet>,
        key_set: Option<&SharedSet>,
    ) -> Result<SpanRow, String> {
        let observation_point =
            ObservationPoint::parse(&self.observation_point).ok_or_else(|| {
                format!(
                    "observation_point `{}` is not c-app, s-app or app",
                    self.observation_point
                )
            })?;
        let place_0 = place(Place {
            pod: self.pod_0,
            pod_ns: self.pod_ns_0,
            pod_group: self.pod_group_0,
            pod_group_type: self.pod_group_type_0,
            pod_node: self.pod_node_0,
            pod_cluster: self.pod_cluster_0,
            service: self.service_0,
            host: self.host_0,
            region: self.region_0,
            az: self.az_0,
            auto_instance: self.auto_instance_0,
            auto_service: self.auto_service_0,
            auto_instance_type: AutoType::from_u8(self.auto_instance_type_0),
            auto_service_type: AutoType::from_u8(self.auto_service_type_0),
            labels: Place::parse_labels_json(&self.labels_0),
        });
        let place_1 = place(Place {
            pod: self.pod_1,
            pod_ns: self.pod_ns_1,
            pod_group: self.pod_group_1,
            pod_group_type: self.pod_group_type_1,
            pod_node: self.pod_node_1,
            pod_cluster: self.pod_cluster_1,
            service: self.service_1,
            host: self.host_1,
            region: self.region_1,
            az: self.az_1,
            auto_instance: self.auto_instance_1,
            auto_service: self.auto_service_1,
            auto_instance_type: AutoType::from_u8(self.auto_instance_type_1),
            auto_service_type: AutoType::from_u8(self.auto_service_type_1),
            labels: Place::parse_labels_json(&self.labels_1),
        });
        // A span row of this version leaves its scope to its key set's row, and its tags to
        // its resource's; one of an older version holds them.
        let (scope_name, scope_version) = match key_set {
            Some(key_set)
                if self.attribute_keys_id != 0
                    && self.scope_name.is_empty()
                    && self.scope_version.is_empty() =>
            {
                (key_set.scope_name.clone(), key_set.scope_version.clone())
            }
            _ => (self.scope_name, self.scope_version),
        };
        let own_tags = resource_tags!(self);
        let tags = match resource {
            Some(resource) if self.resource_id != 0 && own_tags == ResourceTags::default() => {
                resource.tags.clone()
            }
            _ => Arc::new(own_tags),
        };
        Ok(SpanRow {
            time: i64::from(self.time),
            start_time: self.start_time,
            end_time: self.end_time,
            trace_id: TraceId(self.trace_id),
            span_id: SpanId(self.span_id),
            parent_span_id: self.parent_span_id.map(SpanId),
            span_kind: SpanKind::from_i32(i32::from(self.span_kind)),
            observation_point,
            trace_state: self.trace_state,
            flags: self.flags,
            endpoint: self.endpoint,
            app_service: self.app_service,
            app_instance: self.app_instance,
            signal_source: self.signal_source,
            agent_id: self.agent_id,
            l7_protocol: L7Protocol::from_u8(self.l7_protocol),
            l7_protocol_str: self.l7_protocol_str,
            version: self.version,
            is_tls: self.is_tls != 0,
            protocol: self.protocol,
            request_type: self.request_type,
            request_domain: self.request_domain,
            request_resource: self.request_resource,
            request_length: self.request_length,
            response_length: self.response_length,
            response_code: self.response_code,
            response_status: ResponseStatus::from_u8(self.response_status),
            response_exception: self.response_exception,
            status_code: self.status_code,
            status_message: self.status_message,
            response_duration: self.response_duration,
            ip_0: ip(&self.ip_0, "ip_0")?,
            ip_1: ip(&self.ip_1, "ip_1")?,
            client_port: self.client_port,
            server_port: self.server_port,
            place_0,
            place_1,
            scope_name,
            scope_version,
            resource: tags,
            attributes: match key_set {
                Some(key_set) if self.attribute_keys_id != 0 => attributes(
                    key_set.names.clone(),
                    self.attribute_values,
                    &key_set.types,
                    "attribute",
                )?,
                // A key set dropped by retention before its spans (never before the partition
                // they are in).
                _ if self.attribute_keys_id != 0 => Vec::new(),
                _ => attributes(
                    self.attribute_names,
                    self.attribute_values,
                    &self.attribute_types,
                    "attribute",
                )?,
            },
            resource_attributes: match resource {
                Some(resource) if self.resource_id != 0 => resource.attributes.clone()?,
                // A resource dropped by retention before its spans (never before the
                // partition they are in), or none.
                _ if self.resource_id != 0 => Arc::from(Vec::new()),
                _ => attributes(
                    self.resource_attribute_names,
                    self.resource_attribute_values,
                    &self.resource_attribute_types,
                    "resource_attribute",
                )?
                .into(),
            },
            events: text::parse_events(&self.events).map_err(|error| format!("events: {error}"))?,
            links: text::parse_links(&self.links).map_err(|error| format!("links: {error}"))?,
            dropped_attributes_count: self.dropped_attributes_count,
            dropped_events_count: self.dropped_events_count,
            dropped_links_count: self.dropped_links_count,
        })
    }
}

fn ip(text: &str, column: &str) -> Result<Option<IpAddr>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("{column} `{text}` is not an IP address"))
}

fn attributes(
    names: Vec<String>,
    values: Vec<String>,
    types: &[u8],
    column: &str,
) -> Result<Vec<Attribute>, String> {
    if names.len() != values.len() || names.len() != types.len() {
        return Err(format!(
            "{column}_names, _values and _types differ in length ({}, {}, {})",
            names.len(),
            values.len(),
            types.len()
        ));
    }
    names
        .into_iter()
        .zip(values)
        .zip(types)
        .map(|((key, value), code)| {
            let value = text::parse_value(&value, *code)
                .map_err(|error| format!("{column} `{key}`: {error}"))?;
            Ok(Attribute { key, value })
        })
        .collect()
}

/// One `l7_resource` row, field for field in column order after its `time`: the key, arrays
/// and tags of a resource, or the key, arrays and scope of a span key set.
#[derive(clickhouse::Row, serde::Deserialize)]
pub struct StoredSet {
    resource_id: u64,
    resource_attribute_names: Vec<String>,
    resource_attribute_values: Vec<String>,
    resource_attribute_types: Vec<u8>,
    scope_name: String,
    scope_version: String,
    host_name: String,
    container_id: String,
    k8s_cluster_name: String,
    k8s_namespace_name: String,
    k8s_node_name: String,
    k8s_pod_name: String,
    k8s_pod_uid: String,
    k8s_workload_kind: String,
    k8s_workload_name: String,
    service_namespace: String,
    service_version: String,
    deployment_environment: String,
}

/// An `l7_resource` row as reads use it: a key set's names, types and scope, or a resource's
/// attributes and tags.
pub struct SharedSet {
    names: Vec<String>,
    types: Vec<u8>,
    /// The set as a resource's attributes; an error where the values are not of their types
    /// (a key set's values are all empty), which only a resource's use of it reports.
    attributes: Result<Arc<[Attribute]>, String>,
    scope_name: String,
    scope_version: String,
    /// Empty for a key set, and for a resource of an older version, whose spans hold them.
    tags: Arc<ResourceTags>,
}

impl StoredSet {
    pub fn into_shared(self) -> (u64, Arc<SharedSet>) {
        let attributes = attributes(
            self.resource_attribute_names.clone(),
            self.resource_attribute_values,
            &self.resource_attribute_types,
            "resource_attribute",
        )
        .map(Arc::from);
        let set = SharedSet {
            names: self.resource_attribute_names,
            types: self.resource_attribute_types,
            attributes,
            scope_name: self.scope_name,
            scope_version: self.scope_version,
            tags: Arc::new(resource_tags!(self)),
        };
        (self.resource_id, Arc::new(set))
    }
}

/// The query for the `l7_resource` rows of keys `ids`, one row each.
pub fn sets_sql(ids: &[u64], resource_table: &str) -> String {
    let mut list = String::new();
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            list.push_str(", ");
        }
        write!(list, "{id}").expect("to a String");
    }
    let columns: Vec<&str> = crate::schema::resource_columns()
        .into_iter()
        .skip(1)
        .map(|(name, ..)| name)
        .collect();
    format!(
        "SELECT {} FROM {resource_table} WHERE resource_id IN ({list}) LIMIT 1 BY resource_id",
        columns.join(", ")
    )
}

/// Where a trace's spans are: one `l7_trace_index` group.
#[derive(clickhouse::Row, serde::Deserialize, Debug)]
pub struct Placement {
    pub app_service: String,
    pub endpoint: String,
    pub time_min: u32,
    pub time_max: u32,
}

/// Past this many (service, endpoint) groups, a trace lookup reads the trace's whole time
/// range instead of naming each group, to keep the query text short.
const MAX_PLACEMENTS: usize = 500;

/// The query for the placements of `trace_id`.
pub fn placements_sql(trace_id: &TraceId, index_table: &str) -> String {
    format!(
        "SELECT app_service, endpoint, toUInt32(min(time)) AS time_min, \
         toUInt32(max(time)) AS time_max FROM {index_table} WHERE trace_id = {} \
         GROUP BY app_service, endpoint",
        fixed_string(trace_id.as_bytes())
    )
}

/// The query for the spans of `trace_id`, reading only the granules its placements name. The
/// service and endpoint strings are bound, in order, by [`bind_placements`].
pub fn trace_sql(trace_id: &TraceId, placements: &[Placement], spans_table: &str) -> String {
    // PREWHERE: the other columns are read only for granules that hold the trace.
    let mut sql = format!(
        "SELECT ?fields FROM {spans_table} PREWHERE trace_id = {} WHERE (",
        fixed_string(trace_id.as_bytes())
    );
    if placements.len() > MAX_PLACEMENTS {
        let min = placements.iter().map(|p| p.time_min).min().unwrap_or(0);
        let max = placements.iter().map(|p| p.time_max).max().unwrap_or(0);
        write!(sql, "time BETWEEN toDateTime({min}) AND toDateTime({max})").expect("to a String");
    } else {
        for (i, placement) in placements.iter().enumerate() {
            if i > 0 {
                sql.push_str(" OR ");
            }
            write!(
                sql,
                "(app_service = ? AND endpoint = ? AND time BETWEEN toDateTime({}) AND toDateTime({}))",
                placement.time_min, placement.time_max
            )
            .expect("to a String");
        }
    }
    // One row per span even before ClickHouse has merged away a span written twice.
    sql.push_str(") ORDER BY start_time, span_id LIMIT 1 BY span_id");
    sql
}

/// Binds the strings [`trace_sql`] leaves open.
pub fn bind_placements(
    mut query: clickhouse::query::Query,
    placements: &[Placement],
) -> clickhouse::query::Query {
    if placements.len() <= MAX_PLACEMENTS {
        for placement in placements {
            query = query
                .bind(placement.app_service.as_str())
                .bind(placement.endpoint.as_str());
        }
    }
    query
}

/// A span a search found, with the sort key that places it: what the second step of a search
/// fetches whole.
#[derive(clickhouse::Row, serde::Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Hit {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub app_service: String,
    pub endpoint: String,
    pub time: u32,
}

/// The conditions on `start_time` (and on `time`, which prunes partitions) of a time range.
fn range_conditions(range: TimeRange, flavor: Flavor) -> Vec<String> {
    let micros = |us: i64| match flavor {
        Flavor::Legacy => format!("{us}"),
        Flavor::Modern => format!("fromUnixTimestamp64Micro(toInt64({us}))"),
    };
    let mut conditions = Vec::new();
    if let Some(min) = range.start_us {
        conditions.push(format!("start_time >= {}", micros(min)));
        // `time` is the end second, or the start when the end is before it: never before
        // the start, so this bound prunes whole partitions without losing a span.
        conditions.push(format!(
            "time >= toDateTime({})",
            crate::rowbinary::date_time(min.div_euclid(1_000_000))
        ));
    }
    if let Some(max) = range.end_us {
        conditions.push(format!("start_time <= {}", micros(max)));
    }
    conditions
}

fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    }
}

/// A service name, as [`services_sql`] returns it.
#[derive(clickhouse::Row, serde::Deserialize)]
pub struct ServiceName {
    pub app_service: String,
}

/// The services with spans in a time range, sorted.
pub fn services_sql(range: TimeRange, flavor: Flavor, spans_table: &str) -> String {
    format!(
        "SELECT DISTINCT app_service FROM {spans_table}{} ORDER BY app_service",
        where_clause(&range_conditions(range, flavor))
    )
}

/// An operation, as [`operations_sql`] returns it.
#[derive(clickhouse::Row, serde::Deserialize)]
pub struct OperationRow {
    pub endpoint: String,
    pub span_kind: u8,
}

/// The (span name, kind) pairs of one service, bound with `?`, in a time range.
pub fn operations_sql(range: TimeRange, flavor: Flavor, spans_table: &str) -> String {
    let mut conditions = vec!["app_service = ?".to_string()];
    conditions.extend(range_conditions(range, flavor));
    format!(
        "SELECT DISTINCT endpoint, span_kind FROM {spans_table}{} ORDER BY endpoint, span_kind",
        where_clause(&conditions)
    )
}

/// A search, in two steps. The first finds the newest matching spans reading only the columns
/// the filters and the order need; the second reads those spans whole, from the granules
/// their sort keys name. Reading every column of every match to keep the newest few took ten
/// to twenty times as long.
///
/// The first step asks for twice the limit without deduplicating, which lets ClickHouse keep
/// only the top rows while it sorts; a span stored twice (before its parts merge) sorts next
/// to its copy, and [`SearchSql::exact`] is the slower query for when the copies crowd out
/// the limit.
pub struct SearchSql {
    /// The first step, with `?` where [`SearchSql::bind`] puts the caller's strings.
    pub sql: String,
    /// The first step deduplicated by ClickHouse, limited to the limit exactly.
    pub exact: String,
    strings: Vec<String>,
}

impl SearchSql {
    pub fn new(
        query: &SpanQuery,
        flavor: Flavor,
        spans_table: &str,
        resource_table: &str,
    ) -> SearchSql {
        let mut conditions: Vec<String> = Vec::new();
        let mut strings = Vec::new();
        if let Some(service) = &query.service {
            conditions.push("app_service = ?".into());
            strings.push(service.clone());
        }
        if let Some(operation) = &query.operation {
            conditions.push("endpoint = ?".into());
            strings.push(operation.clone());
        }
        if let Some(min) = query.min_duration_us {
            conditions.push(format!("response_duration >= {min}"));
        }
        if let Some(max) = query.max_duration_us {
            conditions.push(format!("response_duration <= {max}"));
        }
        conditions.extend(range_conditions(query.time_range(), flavor));
        if let Some(status) = query.response_status {
            conditions.push(format!("response_status = {}", status.as_u8()));
        }
        for filter in &query.places {
            // The column is one of the place columns' names, never the caller's text.
            conditions.push(format!("{} = ?", filter.column()));
            strings.push(filter.value.clone());
        }
        // A set's row is never older than the spans that use it (see `RESOURCE_PERIOD_S`):
        // a search from a time on reads the sets from then on.
        let sets_since = match query.time_range().start_us {
            Some(min) => format!(
                " AND time >= toDateTime({})",
                crate::rowbinary::date_time(min.div_euclid(1_000_000))
            ),
            None => String::new(),
        };
        let mut key_sets = Vec::new();
        let mut key_strings = Vec::new();
        for (i, filter) in query.attributes.iter().enumerate() {
            // Text equality on the scalar types only, as `SpanQuery::matches` compares: the
            // span's attributes, its resource's in `l7_resource` (GLOBAL: on a cluster, the
            // resources found once, on the server asked), and those of rows of older versions.
            let max = text::TYPE_DOUBLE;
            let matches = |names: &str, values: &str, types: &str| {
                format!(
                    "arrayExists((n, v, t) -> n = ? AND v = ? AND t <= {max}, \
                     {names}, {values}, {types})"
                )
            };
            // A span's own attribute is at the key's place in its key set: the key sets that
            // hold the key, with that place, once for the query, as two arrays (led by the
            // key 0, as `transform` takes no empty arrays).
            key_sets.push(format!(
                "(SELECT (groupArray(resource_id), groupArray(position)) FROM \
                 (SELECT resource_id, arrayFirstIndex((n, t) -> n = ? AND t <= {max}, \
                 resource_attribute_names, resource_attribute_types) AS position \
                 FROM {resource_table} \
                 WHERE position > 0 AND arrayAll(v -> v = '', resource_attribute_values)\
                 {sets_since} LIMIT 1 BY resource_id)) AS key_sets_{i}"
            ));
            key_strings.push(filter.key.clone());
            let resource = matches(
                "resource_attribute_names",
                "resource_attribute_values",
                "resource_attribute_types",
            );
            conditions.push(format!(
                "((transform(attribute_keys_id, arrayPushFront(key_sets_{i}.1, toUInt64(0)), \
                 arrayPushFront(key_sets_{i}.2, toUInt32(0)), toUInt32(0)) AS position_{i}) > 0 \
                 AND attribute_values[position_{i}] = ? \
                 OR {} OR resource_id GLOBAL IN (SELECT resource_id FROM {resource_table} \
                 WHERE {resource}{sets_since}) OR (resource_id = 0 AND {resource}))",
                // A row with a key set holds its values alone: none of them here.
                matches(
                    "attribute_names",
                    "if(attribute_keys_id = 0, attribute_values, emptyArrayString())",
                    "attribute_types"
                ),
            ));
            strings.push(filter.value.clone());
            for _ in 0..3 {
                strings.push(filter.key.clone());
                strings.push(filter.value.clone());
            }
        }
        key_strings.append(&mut strings);
        let strings = key_strings;
        let filter = where_clause(&conditions);
        let with = if key_sets.is_empty() {
            String::new()
        } else {
            format!("WITH {} ", key_sets.join(", "))
        };
        let select = format!(
            "{with}SELECT trace_id, span_id, app_service, endpoint, time FROM {spans_table}{filter} \
             ORDER BY start_time DESC, trace_id, span_id"
        );
        SearchSql {
            sql: format!("{select} LIMIT {}", query.limit.saturating_mul(2)),
            exact: format!(
                "{select} LIMIT 1 BY trace_id, span_id LIMIT {}",
                query.limit
            ),
            strings,
        }
    }

    pub fn bind(&self, mut query: clickhouse::query::Query) -> clickhouse::query::Query {
        for string in &self.strings {
            query = query.bind(string.as_str());
        }
        query
    }

    /// The first `limit` distinct hits of the first step, in its order; `None` when copies of
    /// spans leave fewer than `limit` while the step may have cut off more (the exact query
    /// is needed then).
    pub fn distinct(hits: Vec<Hit>, limit: usize) -> Option<Vec<Hit>> {
        let complete = hits.len() < limit.saturating_mul(2);
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<Hit> = hits
            .into_iter()
            .filter(|hit| seen.insert((hit.trace_id, hit.span_id)))
            .take(limit)
            .collect();
        (distinct.len() == limit || complete).then_some(distinct)
    }
}

/// Hits per query of the second step, which keeps its text well under the 256 KiB that
/// ClickHouse parses by default.
pub const HITS_PER_FETCH: usize = 500;

/// The second step of a search: the spans of `hits` whole. The services and endpoints are
/// bound, in order, by [`bind_hits`].
pub fn fetch_hits_sql(hits: &[Hit], spans_table: &str) -> String {
    let mut keys = String::new();
    for (i, hit) in hits.iter().enumerate() {
        if i > 0 {
            keys.push_str(", ");
        }
        write!(
            keys,
            "({}, {})",
            fixed_string(&hit.trace_id),
            fixed_string(&hit.span_id)
        )
        .expect("to a String");
    }
    let mut places = String::new();
    for (i, hit) in hits.iter().enumerate() {
        if i > 0 {
            places.push_str(", ");
        }
        write!(places, "(?, ?, toDateTime({}))", hit.time).expect("to a String");
    }
    format!(
        "SELECT ?fields FROM {spans_table} PREWHERE (trace_id, span_id) IN ({keys}) \
         WHERE (app_service, endpoint, time) IN ({places}) LIMIT 1 BY trace_id, span_id"
    )
}

/// Binds the strings [`fetch_hits_sql`] leaves open.
pub fn bind_hits(mut query: clickhouse::query::Query, hits: &[Hit]) -> clickhouse::query::Query {
    for hit in hits {
        query = query
            .bind(hit.app_service.as_str())
            .bind(hit.endpoint.as_str());
    }
    query
}

/// A `FixedString` literal of raw bytes.
fn fixed_string(bytes: &[u8]) -> String {
    let mut literal = String::with_capacity(bytes.len() * 2 + 40);
    literal.push_str("toFixedString(unhex('");
    for byte in bytes {
        write!(literal, "{byte:02x}").expect("to a String");
    }
    write!(literal, "'), {})", bytes.len()).expect("to a String");
    literal
}

/// A `JSONCompact` answer as a SQL result.
pub fn sql_result(body: &[u8]) -> Result<spanflow_store::sql::SqlResult, serde_json::Error> {
    #[derive(serde::Deserialize)]
    struct Column {
        name: String,
        #[serde(rename = "type")]
        kind: String,
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        meta: Vec<Column>,
        data: Vec<Vec<serde_json::Value>>,
    }
    let answer: Answer = serde_json::from_slice(body)?;
    Ok(spanflow_store::sql::SqlResult {
        columns: answer
            .meta
            .iter()
            .map(|column| column.name.clone())
            .collect(),
        types: answer.meta.into_iter().map(|column| column.kind).collect(),
        values: answer.data,
    })
}

/// The service map's query: client and producer spans joined to the server and consumer
/// spans under them in other services, and client and producer spans to databases and queues.
pub fn service_map_sql(range: TimeRange, by: MapBy, flavor: Flavor, spans_table: &str) -> String {
    let (caller_node, callee_node) = (by.node_sql(0), by.node_sql(1));
    let system_node = by.node_or_sql(1, "l7_protocol_str");
    let mut range = range_conditions(range, flavor).join(" AND ");
    if !range.is_empty() {
        range = format!(" AND {range}");
    }
    let failed = spanflow_store::analytics::FAILED_SQL;
    format!(
        "SELECT caller, callee, toUInt8(0) AS kind, count() AS calls, sum(failed) AS errors, \
             quantiles(0.5, 0.95, 0.99)(response_duration) AS latency \
         FROM (SELECT trace_id, span_id AS link, {caller_node} AS caller FROM {spans_table} \
             WHERE span_kind IN (3, 4){range}) AS callers \
         ALL INNER JOIN (SELECT trace_id, assumeNotNull(parent_span_id) AS link, \
             {callee_node} AS callee, response_duration, toUInt8({failed}) AS failed \
             FROM {spans_table} WHERE span_kind IN (2, 5) AND isNotNull(parent_span_id){range}) \
             AS callees \
         USING (trace_id, link) \
         WHERE caller != callee \
         GROUP BY caller, callee \
         UNION ALL \
         SELECT {caller_node} AS caller, {system_node} AS callee, \
             toUInt8(if(l7_protocol >= 100, 2, 1)) AS kind, count() AS calls, \
             sum(toUInt8({failed})) AS errors, \
             quantiles(0.5, 0.95, 0.99)(response_duration) AS latency \
         FROM {spans_table} WHERE span_kind IN (3, 4) AND l7_protocol_str != '' \
             AND ((l7_protocol >= 60 AND l7_protocol <= 82) \
                 OR (l7_protocol >= 100 AND l7_protocol <= 107)){range} \
         GROUP BY caller, callee, kind"
    )
}

/// A RED series' query; the service is a quoted literal.
pub fn red_sql(query: &RedQuery, flavor: Flavor, spans_table: &str) -> String {
    let step = query.step_us.max(1);
    let micros = match flavor {
        Flavor::Legacy => "start_time",
        Flavor::Modern => "toUnixTimestamp64Micro(start_time)",
    };
    let operation = if query.by_operation { "endpoint" } else { "''" };
    let mut conditions = vec![
        format!("app_service = {}", quote(&query.service)),
        "span_kind IN (2, 5)".to_string(),
    ];
    conditions.extend(range_conditions(query.range, flavor));
    format!(
        "SELECT intDiv({micros}, {step}) * {step} AS bucket, {operation} AS operation, \
             count() AS calls, sum(toUInt8({failed})) AS errors, \
             quantiles(0.5, 0.95, 0.99)(response_duration) AS latency \
         FROM {spans_table}{} GROUP BY bucket, operation",
        where_clause(&conditions),
        failed = spanflow_store::analytics::FAILED_SQL,
    )
}

/// A string as a ClickHouse literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn latency(value: &serde_json::Value, index: usize) -> f64 {
    value
        .get(index)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or_default()
}

fn malformed(what: &str) -> StoreError {
    StoreError::new(
        ErrorKind::Internal,
        format!("ClickHouse answered the {what} query with rows spanflow cannot read"),
    )
}

/// The service map's rows as edges, sorted by caller, callee and kind.
pub fn edges(result: &SqlResult) -> Result<Vec<Edge>, StoreError> {
    let mut edges = Vec::with_capacity(result.values.len());
    for row in &result.values {
        let [caller, callee, kind, calls, errors, quantiles] = row.as_slice() else {
            return Err(malformed("service map"));
        };
        edges.push(Edge {
            caller: caller.as_str().unwrap_or_default().to_string(),
            callee: callee.as_str().unwrap_or_default().to_string(),
            callee_kind: match kind.as_u64() {
                Some(1) => NodeKind::Database,
                Some(2) => NodeKind::Messaging,
                _ => NodeKind::Service,
            },
            calls: calls.as_u64().unwrap_or_default(),
            errors: errors.as_u64().unwrap_or_default(),
            p50_us: latency(quantiles, 0),
            p95_us: latency(quantiles, 1),
            p99_us: latency(quantiles, 2),
        });
    }
    edges.sort_by(|a, b| {
        (&a.caller, &a.callee, a.callee_kind).cmp(&(&b.caller, &b.callee, b.callee_kind))
    });
    Ok(edges)
}

/// A RED series' rows as points, sorted by bucket and operation.
pub fn red_points(result: &SqlResult, by_operation: bool) -> Result<Vec<RedPoint>, StoreError> {
    let mut points = Vec::with_capacity(result.values.len());
    for row in &result.values {
        let [bucket, operation, calls, errors, quantiles] = row.as_slice() else {
            return Err(malformed("RED"));
        };
        points.push(RedPoint {
            time_us: bucket.as_i64().unwrap_or_default(),
            operation: by_operation.then(|| operation.as_str().unwrap_or_default().to_string()),
            calls: calls.as_u64().unwrap_or_default(),
            errors: errors.as_u64().unwrap_or_default(),
            p50_us: latency(quantiles, 0),
            p95_us: latency(quantiles, 1),
            p99_us: latency(quantiles, 2),
        });
    }
    points.sort_by(|a, b| (a.time_us, &a.operation).cmp(&(b.time_us, &b.operation)));
    Ok(points)
}

/// A place as a row holds it: the shared empty one when nothing is known.
fn place(place: Place) -> std::sync::Arc<Place> {
    if place.is_unknown() {
        Place::unknown()
    } else {
        std::sync::Arc::new(place)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(n: u8) -> Hit {
        Hit {
            trace_id: [n; 16],
            span_id: [n; 8],
            app_service: "a".into(),
            endpoint: "x".into(),
            time: 1,
        }
    }

    #[test]
    fn copies_of_a_span_count_once_and_call_for_the_exact_query_only_when_they_crowd_out_the_limit()
    {
        // Fewer rows than asked for: everything matching is there.
        assert_eq!(
            SearchSql::distinct(vec![hit(1), hit(1), hit(2)], 3),
            Some(vec![hit(1), hit(2)])
        );
        // Enough distinct spans among the rows.
        assert_eq!(
            SearchSql::distinct(vec![hit(1), hit(1), hit(2), hit(3)], 2),
            Some(vec![hit(1), hit(2)])
        );
        // A full first step with too few distinct spans: more may lie past its cut.
        assert_eq!(
            SearchSql::distinct(vec![hit(1), hit(1), hit(1), hit(2), hit(2), hit(2)], 3),
            None
        );
    }

    #[test]
    fn a_trace_lookup_names_each_placement_until_there_are_too_many() {
        let trace_id = TraceId([7; 16]);
        let placement = |time| Placement {
            app_service: "a".into(),
            endpoint: "x".into(),
            time_min: time,
            time_max: time + 1,
        };
        let sql = trace_sql(&trace_id, &[placement(10), placement(20)], "t");
        assert!(
            sql.contains("PREWHERE trace_id = toFixedString(unhex('0707"),
            "{sql}"
        );
        assert_eq!(
            sql.matches("app_service = ? AND endpoint = ?").count(),
            2,
            "{sql}"
        );
        let many: Vec<Placement> = (0..=MAX_PLACEMENTS as u32).map(placement).collect();
        let sql = trace_sql(&trace_id, &many, "t");
        assert!(!sql.contains("app_service = ?"), "{sql}");
        assert!(
            sql.contains(&format!(
                "time BETWEEN toDateTime(0) AND toDateTime({})",
                MAX_PLACEMENTS + 1
            )),
            "{sql}"
        );
    }
}
