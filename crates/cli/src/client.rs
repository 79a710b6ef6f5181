//! `spanflow trace`, `spanflow search` and `spanflow query`: a terminal client of a server's
//! query API. Fetching is thin; the work is in drawing, which is pure and tested on its own.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::Context;
use serde_json::Value;

/// Fetches `path` (with `query`) from the server's query API; the API's own error message
/// when it answers with one.
pub async fn get(server: &str, path: &str, query: &[(String, String)]) -> anyhow::Result<Value> {
    let url = format!("{}{path}", server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .get(&url)
        .query(query)
        .send()
        .await
        .with_context(|| format!("asking {url}"))?;
    answer(&url, response).await
}

/// Posts DeepFlow's SQL form to the server.
pub async fn sql(server: &str, sql: &str) -> anyhow::Result<Value> {
    let url = format!("{}/v1/query/", server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .form(&[("db", "flow_log"), ("sql", sql)])
        .send()
        .await
        .with_context(|| format!("asking {url}"))?;
    answer(&url, response).await
}

async fn answer(url: &str, response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    let value: Value = serde_json::from_slice(&body).with_context(|| {
        format!(
            "{url} answered {status} with something other than JSON: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    if !status.is_success() {
        let message = value["error"]
            .as_str()
            .or(value["DESCRIPTION"].as_str())
            .unwrap_or("no reason given");
        anyhow::bail!("{status}: {message}");
    }
    Ok(value)
}

/// ANSI colours services cycle through.
const PALETTE: [&str; 6] = ["36", "33", "35", "32", "34", "96"];

struct Paint {
    color: bool,
}

impl Paint {
    fn wrap(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\u{1b}[{code}m{text}\u{1b}[0m")
        } else {
            text.to_string()
        }
    }
}

/// A duration in µs, as people read it.
pub fn duration(micros: f64) -> String {
    if micros >= 1_000_000.0 {
        format!("{:.2}s", micros / 1e6)
    } else if micros >= 1_000.0 {
        format!("{:.2}ms", micros / 1e3)
    } else {
        format!("{micros:.0}µs")
    }
}

/// A time in µs since the epoch as RFC 3339, UTC.
pub fn time(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|time| time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| micros.to_string())
}

/// Text cut to `width` characters, with `…` when cut; padded to `width`.
fn fit(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        format!("{text}{}", " ".repeat(width - count))
    } else {
        let cut: String = text.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// A trace from `GET /api/v1/traces/{id}` as a waterfall: one line per span in tree order,
/// with the service (coloured), the operation indented under its parent, the duration, a bar
/// on the trace's time axis, and failed spans marked `✗`.
pub fn waterfall(trace: &Value, color: bool, bar_width: usize) -> String {
    let paint = Paint { color };
    let mut out = String::new();
    let summary = &trace["summary"];
    let start = summary["start_time"].as_i64().unwrap_or_default();
    let total = summary["duration"].as_i64().unwrap_or_default().max(1) as f64;
    let services: Vec<String> = summary["services"]
        .as_array()
        .map(|services| {
            services
                .iter()
                .map(|s| format!("{} ({})", s["name"].as_str().unwrap_or(""), s["span_count"]))
                .collect()
        })
        .unwrap_or_default();
    let errors = summary["error_count"].as_u64().unwrap_or_default();
    let _ = writeln!(
        out,
        "trace {}  {}: {}  {}  {} {}, {} {}  {}",
        trace["trace_id"].as_str().unwrap_or(""),
        summary["root_service"].as_str().unwrap_or(""),
        summary["root_operation"].as_str().unwrap_or(""),
        duration(total),
        summary["span_count"],
        if summary["span_count"].as_u64() == Some(1) {
            "span"
        } else {
            "spans"
        },
        errors,
        if errors == 1 { "error" } else { "errors" },
        time(start),
    );
    let _ = writeln!(out, "services: {}", services.join(", "));
    let _ = writeln!(out);
    let spans = trace["spans"].as_array().cloned().unwrap_or_default();
    let service_width = spans
        .iter()
        .map(|span| span["app_service"].as_str().unwrap_or("").chars().count())
        .max()
        .unwrap_or(7)
        .clamp(7, 24);
    let name_width = 44;
    let _ = writeln!(
        out,
        "{}  {}  {:>10}  0{}{}",
        fit("SERVICE", service_width),
        fit("OPERATION", name_width),
        "DURATION",
        " ".repeat(bar_width.saturating_sub(1 + duration(total).len())),
        duration(total),
    );
    let depths: Vec<usize> = spans
        .iter()
        .map(|span| span["depth"].as_u64().unwrap_or_default() as usize)
        .collect();
    let mut colors: HashMap<String, &str> = HashMap::new();
    // Whether the span at each depth on the current path has siblings still to come.
    let mut open: Vec<bool> = Vec::new();
    for (index, span) in spans.iter().enumerate() {
        let depth = depths[index];
        let last = depths[index + 1..]
            .iter()
            .take_while(|&&d| d >= depth)
            .all(|&d| d != depth);
        open.truncate(depth);
        let mut prefix = String::new();
        for level in 1..depth {
            prefix.push_str(if open.get(level).copied().unwrap_or(false) {
                "│ "
            } else {
                "  "
            });
        }
        if depth > 0 {
            prefix.push_str(if last { "└─" } else { "├─" });
        }
        while open.len() < depth {
            open.push(false);
        }
        open.push(!last);
        let service = span["app_service"].as_str().unwrap_or("");
        let next = colors.len();
        let code = *colors
            .entry(service.to_string())
            .or_insert(PALETTE[next % PALETTE.len()]);
        let failed = span["is_error"].as_bool().unwrap_or(false);
        let name = format!(
            "{prefix}{}{}",
            span["endpoint"].as_str().unwrap_or(""),
            if failed { " ✗" } else { "" }
        );
        let micros = span["response_duration"].as_f64().unwrap_or_default();
        let offset = span["adjusted_start_time"]
            .as_i64()
            .or(span["start_time"].as_i64())
            .unwrap_or(start)
            - start;
        let from = ((offset as f64 / total) * bar_width as f64).floor() as usize;
        let from = from.min(bar_width.saturating_sub(1));
        let length = (((micros / total) * bar_width as f64).round() as usize)
            .max(1)
            .min(bar_width - from);
        let bar = format!(
            "{}{}{}",
            " ".repeat(from),
            "█".repeat(length),
            " ".repeat(bar_width - from - length)
        );
        let bar = if failed {
            paint.wrap("31", &bar)
        } else {
            paint.wrap(code, &bar)
        };
        let name = fit(&name, name_width);
        let name = if failed {
            paint.wrap("31", &name)
        } else {
            name
        };
        let _ = writeln!(
            out,
            "{}  {}  {:>10}  {}",
            paint.wrap(code, &fit(service, service_width)),
            name,
            duration(micros),
            bar
        );
    }
    if trace["truncated"].as_bool() == Some(true) {
        let shown = trace["spans_returned"].as_u64().unwrap_or_default();
        let all = summary["span_count"].as_u64().unwrap_or_default();
        let _ = writeln!(
            out,
            "… {} more spans not shown: the trace has {all}; ask for more with --limit",
            all.saturating_sub(shown)
        );
    }
    out
}

/// Rows as an aligned text table with a header and a row count.
pub fn table(columns: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(index) {
                *width = (*width).max(cell.chars().count()).min(60);
            }
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| fit(cell, *width))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = String::new();
    let _ = writeln!(out, "{}", line(columns));
    for row in rows {
        let _ = writeln!(out, "{}", line(row));
    }
    let _ = writeln!(
        out,
        "({} {})",
        rows.len(),
        if rows.len() == 1 { "row" } else { "rows" }
    );
    out
}

/// A JSON value as a table cell: strings bare, null empty.
pub fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The answer of `GET /api/v1/traces` as a table.
pub fn search_table(result: &Value) -> String {
    let columns: Vec<String> = [
        "TRACE ID", "ROOT", "START", "DURATION", "SPANS", "ERRORS", "SERVICES",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = result["traces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|trace| {
            let services: Vec<&str> = trace["services"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["name"].as_str())
                .collect();
            vec![
                cell(&trace["trace_id"]),
                format!(
                    "{}: {}",
                    cell(&trace["root_service"]),
                    cell(&trace["root_operation"])
                ),
                time(trace["start_time"].as_i64().unwrap_or_default()),
                duration(trace["duration"].as_f64().unwrap_or_default()),
                cell(&trace["span_count"]),
                cell(&trace["error_count"]),
                services.join(","),
            ]
        })
        .collect();
    let mut out = table(&columns, &rows);
    if result["complete"].as_bool() == Some(false) {
        out.push_str("older matches may exist: the search stopped at its span budget\n");
    }
    out
}

/// DeepFlow's SQL answer as a table.
pub fn sql_table(answer: &Value) -> String {
    let result = &answer["result"];
    let columns: Vec<String> = result["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .map(cell)
        .collect();
    let rows: Vec<Vec<String>> = result["values"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| row.as_array().into_iter().flatten().map(cell).collect())
        .collect();
    table(&columns, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn span(
        id: &str,
        service: &str,
        name: &str,
        depth: u64,
        start: i64,
        micros: u64,
        failed: bool,
    ) -> Value {
        json!({
            "span_id": id, "app_service": service, "endpoint": name, "depth": depth,
            "adjusted_start_time": start, "response_duration": micros, "is_error": failed,
        })
    }

    fn trace() -> Value {
        json!({
            "trace_id": "aa",
            "summary": {
                "root_service": "frontend", "root_operation": "GET /checkout",
                "start_time": 0, "duration": 100_000, "span_count": 5, "error_count": 1,
                "services": [{ "name": "cart", "span_count": 2 }, { "name": "frontend", "span_count": 3 }],
            },
            "spans": [
                span("1", "frontend", "GET /checkout", 0, 0, 100_000, false),
                span("2", "frontend", "POST /cart", 1, 10_000, 50_000, false),
                span("3", "cart", "POST /cart", 2, 15_000, 40_000, false),
                span("4", "cart", "redis GET", 3, 20_000, 10_000, false),
                span("5", "frontend", "render", 1, 65_000, 30_000, true),
            ],
            "truncated": false,
        })
    }

    #[test]
    fn the_waterfall_draws_the_tree_durations_and_bars() {
        let text = waterfall(&trace(), false, 20);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("frontend: GET /checkout  100.00ms  5 spans, 1 error"),
            "{text}"
        );
        assert!(lines[1].contains("cart (2), frontend (3)"));
        let rows = &lines[4..];
        assert_eq!(rows.len(), 5, "{text}");
        assert!(rows[0].starts_with("frontend  GET /checkout"), "{text}");
        assert!(rows[1].contains("├─POST /cart"), "{text}");
        assert!(rows[2].contains("│ └─POST /cart"), "{text}");
        assert!(rows[3].contains("│   └─redis GET"), "{text}");
        assert!(rows[4].contains("└─render ✗"), "{text}");
        // Bars: the root fills the axis; render starts at 65% of it.
        assert!(rows[0].ends_with(&"█".repeat(20)), "{text}");
        assert!(
            rows[4].ends_with(&format!("{}{}{}", " ".repeat(13), "█".repeat(6), " ")),
            "{text}"
        );
        assert!(rows[1].contains("50.00ms"));
        assert!(!text.contains('\u{1b}'), "no colour unless asked");
    }

    #[test]
    fn colour_marks_services_and_errors() {
        let text = waterfall(&trace(), true, 20);
        assert!(text.contains("\u{1b}[36mfrontend"));
        assert!(text.contains("\u{1b}[33mcart"));
        assert!(text.contains("\u{1b}[31m└─render ✗"));
    }

    #[test]
    fn a_cut_trace_says_so() {
        let mut cut = trace();
        cut["truncated"] = json!(true);
        cut["spans_returned"] = json!(2);
        assert!(waterfall(&cut, false, 20).contains("3 more spans not shown"));
    }

    #[test]
    fn tables_align_and_count() {
        let text = table(
            &["A".into(), "LONGER".into()],
            &[
                vec!["x".into(), "1".into()],
                vec!["yyyy".into(), "22".into()],
            ],
        );
        assert_eq!(text, "A     LONGER\nx     1\nyyyy  22\n(2 rows)\n");
    }
}
