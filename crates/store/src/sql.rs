//! Read-only SQL over `l7_flow_log`, as DeepFlow's querier takes it: checked to be one
//! `SELECT` that reads only `l7_flow_log`, with DeepFlow's `attribute.<key>` columns turned
//! into the backend's array lookup. Each backend runs the checked text in its own engine.

use std::ops::ControlFlow;
use std::time::Duration;

use serde_json::Value;
use sqlparser::ast::{ObjectName, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::{ClickHouseDialect, Dialect, GenericDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Word};

use crate::{ErrorKind, StoreError};

/// The one table SQL may read.
pub const TABLE: &str = "l7_flow_log";

/// Which engine runs the SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlDialect {
    /// Apache DataFusion (the embedded store).
    DataFusion,
    /// ClickHouse.
    ClickHouse,
}

/// What one SQL query may cost.
#[derive(Clone, Debug)]
pub struct SqlLimits {
    /// Rows a result may hold; a query returning more fails and says to add a `LIMIT`.
    pub max_rows: usize,
    pub timeout: Duration,
    pub max_memory_bytes: u64,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            max_rows: 10_000,
            timeout: Duration::from_secs(30),
            max_memory_bytes: 1 << 30,
        }
    }
}

/// A query's answer: columns with their engine's type names, and rows of JSON values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SqlResult {
    pub columns: Vec<String>,
    pub types: Vec<String>,
    pub values: Vec<Vec<Value>>,
}

/// The error of a query that returns more than `max_rows` rows.
pub fn too_many_rows(max_rows: usize) -> StoreError {
    bad(format!(
        "the query returns more than {max_rows} rows, the most allowed; add a LIMIT or aggregate"
    ))
}

fn bad(message: impl Into<String>) -> StoreError {
    StoreError::new(ErrorKind::BadRequest, message)
}

/// Longest SQL text taken.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// Checks that `sql` is one read-only `SELECT` over `l7_flow_log` and returns it with
/// DeepFlow's `attribute.<key>` columns (bare or quoted) rewritten for `dialect`.
pub fn prepare(sql: &str, dialect: SqlDialect) -> Result<String, StoreError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(bad(format!(
            "the query is {} bytes, more than the {MAX_SQL_BYTES} allowed",
            sql.len()
        )));
    }
    let engine: Box<dyn Dialect> = match dialect {
        SqlDialect::DataFusion => Box::new(GenericDialect {}),
        SqlDialect::ClickHouse => Box::new(ClickHouseDialect {}),
    };
    let tokens = Tokenizer::new(engine.as_ref(), sql)
        .tokenize()
        .map_err(|error| bad(format!("cannot read the query: {error}")))?;
    let rewritten = rewrite_attributes(tokens, dialect);
    let statements = Parser::new(engine.as_ref())
        .with_recursion_limit(64)
        .try_with_sql(&rewritten)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|error| bad(format!("cannot parse the query: {error}")))?;
    let [statement] = statements.as_slice() else {
        return Err(bad("send exactly one statement"));
    };
    let Statement::Query(query) = statement else {
        return Err(bad(format!(
            "only SELECT queries are allowed; this is a {} statement",
            statement_kind(statement)
        )));
    };
    if query.settings.is_some() {
        return Err(bad(
            "SETTINGS is not allowed; the server sets the query's limits",
        ));
    }
    if query.format_clause.is_some() {
        return Err(bad("FORMAT is not allowed; results are always JSON"));
    }
    let mut check = ReadOnly;
    if let ControlFlow::Break(message) = statement.visit(&mut check) {
        return Err(bad(message));
    }
    Ok(rewritten)
}

fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    text.split_whitespace()
        .next()
        .unwrap_or("unknown")
        .to_uppercase()
}

/// Every relation must be `l7_flow_log` (or `flow_log.l7_flow_log`), read directly: no other
/// table, no table function, no `SELECT ... INTO`.
struct ReadOnly;

impl Visitor for ReadOnly {
    type Break = String;

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<String> {
        let parts: Vec<String> = relation
            .0
            .iter()
            .map(|part| part.to_string().trim_matches(['`', '"']).to_lowercase())
            .collect();
        let allowed = match parts.as_slice() {
            [table] => table == TABLE,
            [database, table] => database == "flow_log" && table == TABLE,
            _ => false,
        };
        if allowed {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(format!(
                "only the table {TABLE} can be queried, not {relation}"
            ))
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<String> {
        match factor {
            TableFactor::Table { args: Some(_), .. } => {
                ControlFlow::Break("table functions are not allowed".into())
            }
            TableFactor::Table { .. }
            | TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            other => ControlFlow::Break(format!(
                "only {TABLE} and subqueries can be read from, not {other}"
            )),
        }
    }

    fn pre_visit_query(&mut self, query: &sqlparser::ast::Query) -> ControlFlow<String> {
        if query.settings.is_some() || query.format_clause.is_some() {
            return ControlFlow::Break("SETTINGS and FORMAT are not allowed".into());
        }
        if let sqlparser::ast::SetExpr::Select(select) = query.body.as_ref() {
            if select.into.is_some() {
                return ControlFlow::Break("SELECT ... INTO is not allowed".into());
            }
        }
        ControlFlow::Continue(())
    }
}

/// The lookup of attribute `key` in `dialect`, as a SQL expression.
pub fn attribute_lookup(key: &str, dialect: SqlDialect) -> String {
    let quoted = format!("'{}'", key.replace('\\', "\\\\").replace('\'', "\\'"));
    match dialect {
        SqlDialect::DataFusion => {
            // A missing key reads as '', as ClickHouse's `arr[0]` does.
            format!("coalesce(attribute_values[array_position(attribute_names, {quoted})], '')")
        }
        SqlDialect::ClickHouse => format!("attribute_values[indexOf(attribute_names, {quoted})]"),
    }
}

/// Replaces `attribute.a.b`, `` `attribute.a.b` `` and `"attribute.a.b"` with the lookup; a
/// rewritten column keeps its DeepFlow name when it is selected without an alias.
fn rewrite_attributes(tokens: Vec<Token>, dialect: SqlDialect) -> String {
    let mut out = String::new();
    let mut index = 0;
    while index < tokens.len() {
        match &tokens[index] {
            Token::Word(Word {
                value,
                quote_style: Some('`' | '"'),
                ..
            }) if value.starts_with("attribute.") && value.len() > "attribute.".len() => {
                out.push_str(&attribute_lookup(&value["attribute.".len()..], dialect));
                index += 1;
            }
            Token::Word(Word {
                value,
                quote_style: None,
                ..
            }) if value.eq_ignore_ascii_case("attribute")
                && matches!(tokens.get(index + 1), Some(Token::Period))
                && matches!(tokens.get(index + 2), Some(Token::Word(_))) =>
            {
                let mut key = String::new();
                let mut next = index + 1;
                while let (Some(Token::Period), Some(Token::Word(part))) =
                    (tokens.get(next), tokens.get(next + 1))
                {
                    if !key.is_empty() {
                        key.push('.');
                    }
                    key.push_str(&part.value);
                    next += 2;
                }
                out.push_str(&attribute_lookup(&key, dialect));
                index = next;
            }
            token => {
                out.push_str(&token.to_string());
                index += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str, dialect: SqlDialect) -> String {
        match prepare(sql, dialect) {
            Ok(text) => panic!("{sql:?} was let through as {text:?}"),
            Err(error) => {
                assert_eq!(error.kind, ErrorKind::BadRequest);
                error.to_string()
            }
        }
    }

    #[test]
    fn selects_over_the_table_pass_and_attributes_are_rewritten() {
        for dialect in [SqlDialect::DataFusion, SqlDialect::ClickHouse] {
            let sql = "SELECT app_service, count(*) AS n FROM l7_flow_log \
                       WHERE attribute.http.route = '/a' GROUP BY app_service ORDER BY n DESC LIMIT 5";
            let prepared = prepare(sql, dialect).unwrap();
            assert!(
                prepared.contains(&attribute_lookup("http.route", dialect)),
                "{prepared}"
            );
            let quoted = prepare(
                "SELECT `attribute.k8s-pod` FROM flow_log.l7_flow_log",
                dialect,
            )
            .unwrap();
            assert!(quoted.contains("'k8s-pod'"), "{quoted}");
            prepare(
                "SELECT * FROM (SELECT trace_id FROM l7_flow_log) AS t \
                 WHERE trace_id IN (SELECT trace_id FROM l7_flow_log LIMIT 1)",
                dialect,
            )
            .unwrap();
        }
    }

    #[test]
    fn writes_other_tables_and_tricks_are_refused() {
        for dialect in [SqlDialect::DataFusion, SqlDialect::ClickHouse] {
            let cases = [
                ("DROP TABLE l7_flow_log", "only SELECT"),
                (
                    "INSERT INTO l7_flow_log SELECT * FROM l7_flow_log",
                    "only SELECT",
                ),
                ("ALTER TABLE l7_flow_log DELETE WHERE 1", ""),
                (
                    "SELECT 1 FROM l7_flow_log; DROP TABLE l7_flow_log",
                    "one statement",
                ),
                ("SELECT * FROM system.users", "only the table"),
                ("SELECT * FROM other", "only the table"),
                (
                    "SELECT * FROM l7_flow_log WHERE trace_id IN (SELECT name FROM system.tables)",
                    "only the table",
                ),
                (
                    "SELECT * FROM l7_flow_log JOIN secrets USING (trace_id)",
                    "only the table",
                ),
                (
                    "WITH x AS (SELECT * FROM secrets) SELECT * FROM x",
                    "only the table",
                ),
                ("SELECT * INTO copy FROM l7_flow_log", "INTO"),
                ("", "one statement"),
            ];
            for (sql, message) in cases {
                let error = refused(sql, dialect);
                assert!(error.contains(message), "{sql}: {error}");
            }
        }
        let clickhouse = [
            (
                "SELECT * FROM url('http://169.254.169.254/', CSV, 'a String')",
                "function",
            ),
            (
                "SELECT * FROM l7_flow_log SETTINGS max_memory_usage = 0",
                "SETTINGS",
            ),
            ("SELECT * FROM l7_flow_log FORMAT TabSeparated", "FORMAT"),
            ("SELECT * FROM remote('127.0.0.1', system.users)", ""),
        ];
        for (sql, message) in clickhouse {
            let error = refused(sql, SqlDialect::ClickHouse);
            assert!(error.contains(message), "{sql}: {error}");
        }
        let huge = format!("SELECT {} 1 FROM l7_flow_log", "(".repeat(10_000));
        refused(&huge, SqlDialect::ClickHouse);
        refused(&"x".repeat(MAX_SQL_BYTES + 1), SqlDialect::DataFusion);
    }
}
