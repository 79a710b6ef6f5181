//! Aggregates over spans that every backend computes where the spans are: the service map
//! (who calls whom, how often, how fast) and RED series (rate, errors, duration) per service.

use std::collections::{BTreeMap, HashMap};

use spanflow_model::{AutoType, ResponseStatus, SpanKind, SpanRow};

use crate::TimeRange;

/// What the callee of an edge is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeKind {
    /// A service that reports spans of its own.
    Service,
    /// A database its callers name (`db.system`), reporting nothing itself.
    Database,
    /// A message queue its producers name (`messaging.system`).
    Messaging,
}

impl NodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Service => "service",
            NodeKind::Database => "database",
            NodeKind::Messaging => "messaging",
        }
    }

    /// The kind of node a client or producer span's protocol (`l7_protocol`) calls.
    pub fn of_protocol(l7_protocol: u8) -> Option<NodeKind> {
        match l7_protocol {
            60..=82 => Some(NodeKind::Database),
            100..=107 => Some(NodeKind::Messaging),
            _ => None,
        }
    }
}

/// What the service map's nodes are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MapBy {
    /// `service.name` (`app_service`).
    #[default]
    Service,
    /// Where each end ran: its `auto_service` (the Kubernetes service, else the workload,
    /// else the host), or `app_service` where nothing but the address is known.
    Workload,
}

impl MapBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MapBy::Service => "service",
            MapBy::Workload => "workload",
        }
    }

    pub fn parse(text: &str) -> Option<MapBy> {
        match text {
            "service" => Some(MapBy::Service),
            "workload" => Some(MapBy::Workload),
            _ => None,
        }
    }

    /// The node a span stands for, as the calling end (`side` 0) or the called end (1).
    pub fn node(self, row: &SpanRow, side: u8) -> &str {
        self.node_or(row, side, &row.app_service)
    }

    /// The node of one end of a span, or `fallback` where it is not known (by service, always
    /// `fallback`): a database call's callee is the database's workload where its address is
    /// known, else the system its caller names.
    pub fn node_or<'a>(self, row: &'a SpanRow, side: u8, fallback: &'a str) -> &'a str {
        let place = if side == 0 {
            &row.place_0
        } else {
            &row.place_1
        };
        match self {
            MapBy::Workload
                if !place.auto_service.is_empty() && place.auto_service_type != AutoType::Ip =>
            {
                &place.auto_service
            }
            _ => fallback,
        }
    }

    /// [`MapBy::node`] as an SQL expression (standard `CASE`, which both engines read).
    pub fn node_sql(self, side: u8) -> String {
        self.node_or_sql(side, "app_service")
    }

    /// [`MapBy::node_or`] as an SQL expression, `fallback` a column.
    pub fn node_or_sql(self, side: u8, fallback: &str) -> String {
        match self {
            MapBy::Service => fallback.to_string(),
            MapBy::Workload => format!(
                "(CASE WHEN auto_service_{side} = '' OR auto_service_type_{side} = {ip} \
                 THEN {fallback} ELSE auto_service_{side} END)",
                ip = AutoType::Ip.as_u8()
            ),
        }
    }
}

/// Calls from one node to another in a time range. Latencies are in µs: the callee's server
/// span for services, the caller's client span for databases and queues.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub caller: String,
    pub callee: String,
    pub callee_kind: NodeKind,
    pub calls: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
}

/// A RED series request: one service's entry spans (server and consumer) in `range`, in
/// buckets of `step_us`, per operation or all together.
#[derive(Clone, Debug, PartialEq)]
pub struct RedQuery {
    pub service: String,
    pub range: TimeRange,
    pub step_us: i64,
    pub by_operation: bool,
}

/// One bucket of a RED series.
#[derive(Clone, Debug, PartialEq)]
pub struct RedPoint {
    /// The bucket's start, µs since the epoch (a multiple of the step).
    pub time_us: i64,
    /// The operation, when grouped by operation.
    pub operation: Option<String>,
    pub calls: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
}

/// Whether a span failed, as every aggregate counts it: OTLP status `ERROR`, or a server-side
/// failure or timeout (a client's 4xx is the caller's error).
pub fn failed(row: &SpanRow) -> bool {
    row.status_code == 2
        || matches!(
            row.response_status,
            ResponseStatus::Error | ResponseStatus::ServerError | ResponseStatus::Timeout
        )
}

/// The SQL condition for [`failed`], the same on every engine.
pub const FAILED_SQL: &str = "(status_code = 2 OR response_status IN (1, 2, 3))";

/// Exact percentiles of `values` (sorted here), nearest rank.
pub fn percentiles(values: &mut [u64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    values.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        values[rank - 1] as f64
    };
    (at(0.5), at(0.95), at(0.99))
}

/// The service map of `rows`, computed in memory; the reference every backend agrees with.
pub fn service_map(rows: &[&SpanRow], range: TimeRange, by: MapBy) -> Vec<Edge> {
    let in_range: Vec<&SpanRow> = rows
        .iter()
        .copied()
        .filter(|row| range.contains(row.start_time))
        .collect();
    let callers: HashMap<_, &SpanRow> = in_range
        .iter()
        .filter(|row| matches!(row.span_kind, SpanKind::Client | SpanKind::Producer))
        .map(|row| ((row.trace_id, row.span_id), *row))
        .collect();
    let mut edges: BTreeMap<(String, String, NodeKind), (u64, Vec<u64>)> = BTreeMap::new();
    for row in &in_range {
        if matches!(row.span_kind, SpanKind::Server | SpanKind::Consumer) {
            let Some(parent) = row.parent_span_id else {
                continue;
            };
            let Some(caller) = callers.get(&(row.trace_id, parent)) else {
                continue;
            };
            let (from, to) = (by.node(caller, 0), by.node(row, 1));
            if from == to {
                continue;
            }
            let entry = edges
                .entry((from.to_owned(), to.to_owned(), NodeKind::Service))
                .or_default();
            entry.0 += u64::from(failed(row));
            entry.1.push(row.response_duration);
        } else if matches!(row.span_kind, SpanKind::Client | SpanKind::Producer) {
            let Some(kind) = NodeKind::of_protocol(row.l7_protocol.as_u8()) else {
                continue;
            };
            if row.l7_protocol_str.is_empty() {
                continue;
            }
            let entry = edges
                .entry((
                    by.node(row, 0).to_owned(),
                    by.node_or(row, 1, &row.l7_protocol_str).to_owned(),
                    kind,
                ))
                .or_default();
            entry.0 += u64::from(failed(row));
            entry.1.push(row.response_duration);
        }
    }
    edges
        .into_iter()
        .map(|((caller, callee, callee_kind), (errors, mut durations))| {
            let (p50_us, p95_us, p99_us) = percentiles(&mut durations);
            Edge {
                caller,
                callee,
                callee_kind,
                calls: durations.len() as u64,
                errors,
                p50_us,
                p95_us,
                p99_us,
            }
        })
        .collect()
}

/// The RED series of `rows`, computed in memory; the reference every backend agrees with.
pub fn red(rows: &[&SpanRow], query: &RedQuery) -> Vec<RedPoint> {
    let step = query.step_us.max(1);
    let mut buckets: BTreeMap<(i64, Option<String>), (u64, Vec<u64>)> = BTreeMap::new();
    for row in rows {
        if row.app_service != query.service
            || !query.range.contains(row.start_time)
            || !matches!(row.span_kind, SpanKind::Server | SpanKind::Consumer)
        {
            continue;
        }
        let time_us = row.start_time.div_euclid(step) * step;
        let operation = query.by_operation.then(|| row.endpoint.clone());
        let entry = buckets.entry((time_us, operation)).or_default();
        entry.0 += u64::from(failed(row));
        entry.1.push(row.response_duration);
    }
    buckets
        .into_iter()
        .map(|((time_us, operation), (errors, mut durations))| {
            let (p50_us, p95_us, p99_us) = percentiles(&mut durations);
            RedPoint {
                time_us,
                operation,
                calls: durations.len() as u64,
                errors,
                p50_us,
                p95_us,
                p99_us,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentiles(&mut values), (50.0, 95.0, 99.0));
        assert_eq!(percentiles(&mut [7]), (7.0, 7.0, 7.0));
        assert_eq!(percentiles(&mut []), (0.0, 0.0, 0.0));
    }
}
