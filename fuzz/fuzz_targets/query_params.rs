//! Query-string values from outside: Go durations, times and limits (`params`), and TraceQL
//! (`traceql::parse`, then `pushdown` and `matches`). A pushed-down query must keep every span
//! the full filter matches, since the store reads only what it returns.

#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use spanflow_api::params::{
    parse_go_duration_ns, parse_go_duration_us, parse_limit, parse_time_us,
};
use spanflow_api::traceql;
use spanflow_model::{AttrValue, Attribute, SpanKind, SpanRow};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(nanos) = parse_go_duration_ns(text) {
        assert_eq!(parse_go_duration_us(text), Ok(nanos.div_ceil(1_000)));
    }
    let _ = parse_time_us(text, 1, "start");
    let _ = parse_time_us(text, 1_000_000, "start");
    if let Ok(limit) = parse_limit(Some(text), 20, 100, "limit") {
        assert!((1..=100).contains(&limit));
    }

    let Ok(query) = traceql::parse(text) else {
        return;
    };
    let pushdown = query.pushdown();
    for row in ROWS.iter() {
        if query.matches(row) {
            assert!(
                pushdown.matches(row),
                "the pushdown {pushdown:?} drops a span the query matches: {row:?}"
            );
        }
    }
});

/// Spans to evaluate queries on: the default row, and rows with a value of every type in the
/// places TraceQL reads.
static ROWS: LazyLock<Vec<SpanRow>> = LazyLock::new(|| {
    let resource = |pairs: Vec<(&str, AttrValue)>| -> Arc<[Attribute]> {
        pairs
            .into_iter()
            .map(|(key, value)| Attribute::new(key, value))
            .collect()
    };
    let values = [
        AttrValue::String("GET".into()),
        AttrValue::String("503".into()),
        AttrValue::String("-2".into()),
        AttrValue::String("1.5".into()),
        AttrValue::String(String::new()),
        AttrValue::Int(503),
        AttrValue::Int(0),
        AttrValue::Int(-1),
        AttrValue::Int(i64::MAX),
        AttrValue::Int(i64::MIN),
        AttrValue::Int(9_007_199_254_740_993),
        AttrValue::Double(1.5),
        AttrValue::Double(-0.0),
        AttrValue::Double(503.0),
        AttrValue::Double(f64::NAN),
        AttrValue::Double(f64::INFINITY),
        AttrValue::Double(9_007_199_254_740_992.0),
        AttrValue::Bool(true),
        AttrValue::Bool(false),
        AttrValue::Bytes(vec![1, 2]),
        AttrValue::Array(vec![AttrValue::Int(1)]),
        AttrValue::Empty,
    ];
    let keys = ["a", "x", "http.status_code", "http.method", "service.name"];
    let durations_us = [
        0,
        1,
        999,
        1_000,
        1_500,
        1_000_000,
        i64::MAX as u64,
        u64::MAX,
    ];
    let mut rows = vec![SpanRow::default()];
    for (index, value) in values.iter().enumerate() {
        let mut row = SpanRow {
            endpoint: ["GET /users", "", "a"][index % 3].to_string(),
            app_service: ["frontend", "", "a"][index % 3].to_string(),
            status_code: (index % 3) as u8,
            status_message: ["", "boom", "a"][index % 3].to_string(),
            span_kind: SpanKind::from_i32((index % 6) as i32),
            response_duration: durations_us[index % durations_us.len()],
            ..SpanRow::default()
        };
        // The value as a span attribute under every key, and as a resource attribute only.
        if index % 2 == 0 {
            row.attributes = keys
                .iter()
                .map(|key| Attribute::new(*key, value.clone()))
                .collect();
        } else {
            row.resource_attributes =
                resource(keys.iter().map(|key| (*key, value.clone())).collect());
        }
        rows.push(row);
    }
    rows
});
