//! DeepFlow's querier SQL API: `POST /v1/query/` with `db` and `sql` (form fields or JSON),
//! answered in DeepFlow's envelope (`OPT_STATUS`, `DESCRIPTION`, `result.columns`,
//! `result.values`). `SELECT` runs on the store, read-only and within limits; the `show`
//! commands DeepFlow's tools send are answered here.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use spanflow_store::sql::{SqlResult, TABLE};
use spanflow_store::StoreError;

use crate::{store_status, Api};

/// The database DeepFlow keeps `l7_flow_log` in.
const DATABASE: &str = "flow_log";
/// Values `show tag ... values` lists when the query sets no limit.
const DEFAULT_TAG_VALUES: usize = 1_000;

pub(crate) fn router() -> Router<Arc<Api>> {
    Router::new()
        .route("/v1/query", post(query))
        .route("/v1/query/", post(query))
}

#[derive(serde::Deserialize, Default)]
struct Form {
    #[serde(default)]
    db: String,
    #[serde(default)]
    sql: String,
}

fn fail(status: StatusCode, description: &str) -> Response {
    (
        status,
        Json(json!({
            "OPT_STATUS": "FAIL",
            "DESCRIPTION": description,
            "result": null,
            "debug": null,
        })),
    )
        .into_response()
}

fn store_fail(error: StoreError) -> Response {
    fail(store_status(&error), &error.to_string())
}

fn success(result: SqlResult) -> Response {
    let schemas: Vec<Value> = result
        .types
        .iter()
        .map(|kind| json!({ "value_type": kind }))
        .collect();
    Json(json!({
        "OPT_STATUS": "SUCCESS",
        "DESCRIPTION": "",
        "result": {
            "columns": result.columns,
            "schemas": schemas,
            "values": result.values,
        },
        "debug": null,
    }))
    .into_response()
}

fn table(columns: &[&str], values: Vec<Vec<Value>>) -> SqlResult {
    SqlResult {
        columns: columns.iter().map(|name| name.to_string()).collect(),
        types: columns.iter().map(|_| "String".to_string()).collect(),
        values,
    }
}

async fn query(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let form: Form = if is_json {
        match serde_json::from_slice(&body) {
            Ok(form) => form,
            Err(error) => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    &format!("malformed JSON body: {error}"),
                )
            }
        }
    } else {
        match serde_urlencoded::from_bytes(&body) {
            Ok(form) => form,
            Err(error) => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    &format!("malformed form body: {error}"),
                )
            }
        }
    };
    if !form.db.is_empty() && form.db != DATABASE {
        return fail(
            StatusCode::BAD_REQUEST,
            &format!("unknown database {:?}; spans are in {DATABASE}", form.db),
        );
    }
    let sql = form.sql.trim().trim_end_matches(';').trim();
    if sql.is_empty() {
        return fail(StatusCode::BAD_REQUEST, "the sql field is empty");
    }
    let words: Vec<String> = sql
        .split_whitespace()
        .take(4)
        .map(str::to_lowercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["show", "databases", ..] => success(table(&["name"], vec![vec![json!(DATABASE)]])),
        ["show", "tables", ..] => success(table(&["name"], vec![vec![json!(TABLE)]])),
        ["show", "tags", "from", from] => {
            if !is_table(from) {
                return unknown_table(from);
            }
            show_tags(&api).await
        }
        ["show", "tag", ..] => show_tag_values(&api, sql).await,
        ["show", ..] => fail(
            StatusCode::BAD_REQUEST,
            "unsupported show command; try show tables, show tags from l7_flow_log or \
             show tag <name> values from l7_flow_log",
        ),
        _ => match api.store.sql(sql, &api.config.sql).await {
            Ok(result) => success(result),
            Err(error) => store_fail(error),
        },
    }
}

fn is_table(name: &str) -> bool {
    let name = name.trim_matches('`');
    name == TABLE || name == format!("{DATABASE}.{TABLE}")
}

fn unknown_table(name: &str) -> Response {
    fail(
        StatusCode::BAD_REQUEST,
        &format!("unknown table {name:?}; spans are in {TABLE}"),
    )
}

/// `show tags from l7_flow_log`: every column, and how to read an attribute.
async fn show_tags(api: &Api) -> Response {
    let columns = match api
        .store
        .sql(&format!("SELECT * FROM {TABLE} LIMIT 0"), &api.config.sql)
        .await
    {
        Ok(result) => result,
        Err(error) => return store_fail(error),
    };
    let mut values: Vec<Vec<Value>> = columns
        .columns
        .iter()
        .zip(&columns.types)
        .map(|(name, kind)| {
            vec![
                json!(name),
                json!(name),
                json!(kind),
                json!("column"),
                json!(""),
            ]
        })
        .collect();
    values.push(vec![
        json!("attribute.<key>"),
        json!("attribute"),
        json!("map_item"),
        json!("attribute"),
        json!("a span attribute by key, as text: attribute.http.route"),
    ]);
    success(table(
        &["name", "display_name", "type", "category", "description"],
        values,
    ))
}

/// `show tag <name> values from l7_flow_log [where ...] [limit n]`: the tag's values, most
/// frequent first.
async fn show_tag_values(api: &Api, sql: &str) -> Response {
    let usage = "want show tag <name> values from l7_flow_log [where ...] [limit n]";
    let words: Vec<&str> = sql.split_whitespace().collect();
    let (name, from) = match words.as_slice() {
        [_, _, name, values, from_word, from, ..]
            if values.eq_ignore_ascii_case("values") && from_word.eq_ignore_ascii_case("from") =>
        {
            (*name, *from)
        }
        _ => return fail(StatusCode::BAD_REQUEST, usage),
    };
    if !is_table(from) {
        return unknown_table(from);
    }
    let name_ok = name
        .trim_matches('`')
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !name_ok {
        return fail(
            StatusCode::BAD_REQUEST,
            &format!("invalid tag name {name:?}"),
        );
    }
    // What follows the table (`where ...`, `limit n`) passes through the same checks as any
    // SELECT, since it becomes part of one.
    let rest = words[6..].join(" ");
    let lower = rest.to_lowercase();
    let has_limit = lower.split_whitespace().any(|word| word == "limit");
    let (filter, limit) = if has_limit {
        let at = lower.rfind("limit").unwrap_or(lower.len());
        (rest[..at].trim().to_string(), rest[at..].trim().to_string())
    } else {
        (
            rest.trim().to_string(),
            format!("LIMIT {DEFAULT_TAG_VALUES}"),
        )
    };
    let column = if name.starts_with("attribute.") {
        format!("`{}`", name.trim_matches('`'))
    } else {
        name.to_string()
    };
    let select = format!(
        "SELECT {column} AS value, count(*) AS count FROM {TABLE} {filter} GROUP BY {column} \
         ORDER BY count DESC, value {limit}"
    );
    match api.store.sql(&select, &api.config.sql).await {
        Ok(result) => {
            let values = result
                .values
                .into_iter()
                .map(|row| {
                    let value = row.first().cloned().unwrap_or(Value::Null);
                    let count = row.get(1).cloned().unwrap_or(Value::Null);
                    vec![value.clone(), value, count]
                })
                .collect();
            let value_type = result.types.first().cloned().unwrap_or_default();
            let count_type = result.types.get(1).cloned().unwrap_or_default();
            success(SqlResult {
                columns: ["value", "display_name", "count"]
                    .map(String::from)
                    .to_vec(),
                types: vec![value_type.clone(), value_type, count_type],
                values,
            })
        }
        Err(error) => store_fail(error),
    }
}
