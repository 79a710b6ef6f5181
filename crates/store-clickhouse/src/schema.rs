//! The tables, as DDL for the server at hand.
//!
//! `l7_flow_log` holds one row per span under DeepFlow's table name, with the embedded store's
//! column names and value forms (see [`spanflow_store::text`]). It is partitioned by the hour
//! of `time` (a span's end, in seconds) and sorted by service, endpoint and time, so searches
//! read little; a `ReplacingMergeTree` on that key keeps one copy of a span sent twice, once
//! parts merge, and reads take one row per (trace id, span id) until then.
//!
//! `l7_resource` holds the sets that many spans share, each once per quarter hour it is used
//! in, keyed by a hash of its columns:
//! - a resource's attributes, and the tags taken from them ([`TAG_COLUMNS`]): a span row
//!   carries their key (`resource_id`), empty `resource_attribute_*` arrays and empty tags,
//!   instead of the resource's names and values again in every row, which were a third of a
//!   row's bytes and of what ClickHouse parses, writes and merges (and the tags and scope
//!   below, a quarter of what was left);
//! - a span's attribute key set, its names and types with every value empty, and its scope
//!   ([`SCOPE_COLUMNS`]): the spans of one operation carry the same keys, so a span row
//!   carries the key set's key (`attribute_keys_id`), its `attribute_values`, and empty
//!   `attribute_names`, `attribute_types` and scope, which were a quarter of a row's bytes.
//!
//! Rows written before these existed keep their arrays and the key 0, or their own tags and
//! scope. Reads fetch the sets of the spans they return by key; SQL that names the columns
//! reads `l7_flow_log` joined with `l7_resource` ([`shared_join`]).
//!
//! `l7_trace_index` maps a trace id to the sort keys of its spans, sorted by trace id: a trace
//! lookup reads it first and then only the granules of `l7_flow_log` that hold the trace,
//! without a time range from the caller.

use spanflow_model::ResourceTags;

/// What the server can do, by version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// Before 20.3 (Debian's 18.16 among them): times as microseconds in `Int64`, plain
    /// `String`s, no TTL (retention drops partitions), no codecs or skip indexes.
    Legacy,
    /// 20.3 and later: `DateTime64(6)`, `LowCardinality`, codecs, skip indexes and a TTL that
    /// drops whole parts.
    Modern,
}

impl Flavor {
    /// The flavor for a server that answers `SELECT version()` with `version`.
    pub fn of_version(version: &str) -> Flavor {
        let mut parts = version
            .split('.')
            .map(|part| part.parse::<u32>().unwrap_or(0));
        let major = parts.next().unwrap_or(0);
        let minor = parts.next().unwrap_or(0);
        if (major, minor) >= (20, 3) {
            Flavor::Modern
        } else {
            Flavor::Legacy
        }
    }
}

/// The span table's name, as DeepFlow's.
pub const SPANS_TABLE: &str = "l7_flow_log";
/// The trace-id index's name.
pub const TRACE_INDEX_TABLE: &str = "l7_trace_index";
/// The resources' table.
pub const RESOURCE_TABLE: &str = "l7_resource";

/// Seconds of span time a resource row covers. A resource row is written for every quarter
/// hour its spans fall in, with the quarter's last second as its `time`: each quarter lies in
/// one hour partition whatever the server's time zone (zones are offset by whole quarter
/// hours), and a resource row is never older than the spans that use it, so retention, which
/// drops a partition once its newest row is past it, drops a resource no earlier than its
/// spans.
pub const RESOURCE_PERIOD_S: u32 = 900;

/// The resource columns a span row keeps, empty, for the rows of older versions.
pub const RESOURCE_ARRAYS: [&str; 3] = [
    "resource_attribute_names",
    "resource_attribute_values",
    "resource_attribute_types",
];

/// The key set columns a span row keeps, empty, for the rows of older versions.
pub const KEY_SET_ARRAYS: [&str; 2] = ["attribute_names", "attribute_types"];

/// The span columns a key set's `l7_resource` row holds, under the same names: the spans of
/// one operation share their scope as they share their keys. A span row keeps them empty;
/// rows of older versions hold their own.
pub const SCOPE_COLUMNS: [&str; 2] = ["scope_name", "scope_version"];

/// The span columns a resource's `l7_resource` row holds, under the same names: its tags
/// ([`ResourceTags`], derived from its attributes). A span row keeps them empty; rows of
/// older versions, and spans without resource attributes, hold their own.
pub const TAG_COLUMNS: [&str; 12] = tag_columns();

const fn tag_columns() -> [&'static str; 12] {
    let mut names = [""; 12];
    let mut i = 0;
    while i < names.len() {
        names[i] = ResourceTags::COLUMNS[i].0;
        i += 1;
    }
    names
}

/// Rows per granule of `l7_flow_log`, the unit ClickHouse reads: a quarter of the default
/// 8192, because a trace lookup reads a granule of every column for each (service, endpoint)
/// the trace touches, and most of those rows are other traces'. On 18.16 here, a lookup took
/// 17 ms at 8192, 6.5 ms at 2048 and 5 ms at 1024, for the same bytes on disk.
pub const SPANS_GRANULARITY: u32 = 2048;

/// The columns of `l7_flow_log`, in insert order: name, legacy type, modern type.
pub const COLUMNS: &[(&str, &str, &str)] = &[
    ("time", "DateTime", "DateTime CODEC(DoubleDelta, ZSTD(1))"),
    (
        "start_time",
        "Int64",
        "DateTime64(6) CODEC(DoubleDelta, ZSTD(1))",
    ),
    (
        "end_time",
        "Int64",
        "DateTime64(6) CODEC(DoubleDelta, ZSTD(1))",
    ),
    ("trace_id", "FixedString(16)", "FixedString(16)"),
    ("span_id", "FixedString(8)", "FixedString(8)"),
    (
        "parent_span_id",
        "Nullable(FixedString(8))",
        "Nullable(FixedString(8))",
    ),
    ("span_kind", "UInt8", "UInt8"),
    ("observation_point", "String", "LowCardinality(String)"),
    ("trace_state", "String", "String CODEC(ZSTD(1))"),
    ("flags", "UInt32", "UInt32"),
    ("endpoint", "String", "LowCardinality(String)"),
    ("app_service", "String", "LowCardinality(String)"),
    ("app_instance", "String", "LowCardinality(String)"),
    ("signal_source", "UInt16", "UInt16"),
    ("agent_id", "String", "LowCardinality(String)"),
    ("l7_protocol", "UInt8", "UInt8"),
    ("l7_protocol_str", "String", "LowCardinality(String)"),
    ("version", "String", "LowCardinality(String)"),
    ("is_tls", "UInt8", "UInt8"),
    ("protocol", "UInt8", "UInt8"),
    ("request_type", "String", "LowCardinality(String)"),
    ("request_domain", "String", "LowCardinality(String)"),
    ("request_resource", "String", "String CODEC(ZSTD(1))"),
    ("request_length", "Nullable(Int64)", "Nullable(Int64)"),
    ("response_length", "Nullable(Int64)", "Nullable(Int64)"),
    ("response_code", "Nullable(Int32)", "Nullable(Int32)"),
    ("response_status", "UInt8", "UInt8"),
    ("response_exception", "String", "String CODEC(ZSTD(1))"),
    ("status_code", "UInt8", "UInt8"),
    ("status_message", "String", "String CODEC(ZSTD(1))"),
    ("response_duration", "UInt64", "UInt64 CODEC(T64, ZSTD(1))"),
    ("ip_0", "String", "String"),
    ("ip_1", "String", "String"),
    ("client_port", "UInt16", "UInt16"),
    ("server_port", "UInt16", "UInt16"),
    ("pod_0", "String", "LowCardinality(String)"),
    ("pod_ns_0", "String", "LowCardinality(String)"),
    ("pod_group_0", "String", "LowCardinality(String)"),
    ("pod_group_type_0", "String", "LowCardinality(String)"),
    ("pod_node_0", "String", "LowCardinality(String)"),
    ("pod_cluster_0", "String", "LowCardinality(String)"),
    ("service_0", "String", "LowCardinality(String)"),
    ("host_0", "String", "LowCardinality(String)"),
    ("region_0", "String", "LowCardinality(String)"),
    ("az_0", "String", "LowCardinality(String)"),
    ("auto_instance_0", "String", "LowCardinality(String)"),
    ("auto_service_0", "String", "LowCardinality(String)"),
    ("auto_instance_type_0", "UInt8", "UInt8"),
    ("auto_service_type_0", "UInt8", "UInt8"),
    ("labels_0", "String", "String CODEC(ZSTD(1))"),
    ("pod_1", "String", "LowCardinality(String)"),
    ("pod_ns_1", "String", "LowCardinality(String)"),
    ("pod_group_1", "String", "LowCardinality(String)"),
    ("pod_group_type_1", "String", "LowCardinality(String)"),
    ("pod_node_1", "String", "LowCardinality(String)"),
    ("pod_cluster_1", "String", "LowCardinality(String)"),
    ("service_1", "String", "LowCardinality(String)"),
    ("host_1", "String", "LowCardinality(String)"),
    ("region_1", "String", "LowCardinality(String)"),
    ("az_1", "String", "LowCardinality(String)"),
    ("auto_instance_1", "String", "LowCardinality(String)"),
    ("auto_service_1", "String", "LowCardinality(String)"),
    ("auto_instance_type_1", "UInt8", "UInt8"),
    ("auto_service_type_1", "UInt8", "UInt8"),
    ("labels_1", "String", "String CODEC(ZSTD(1))"),
    ("scope_name", "String", "LowCardinality(String)"),
    ("scope_version", "String", "LowCardinality(String)"),
    ("host_name", "String", "LowCardinality(String)"),
    ("container_id", "String", "LowCardinality(String)"),
    ("k8s_cluster_name", "String", "LowCardinality(String)"),
    ("k8s_namespace_name", "String", "LowCardinality(String)"),
    ("k8s_node_name", "String", "LowCardinality(String)"),
    ("k8s_pod_name", "String", "LowCardinality(String)"),
    ("k8s_pod_uid", "String", "LowCardinality(String)"),
    ("k8s_workload_kind", "String", "LowCardinality(String)"),
    ("k8s_workload_name", "String", "LowCardinality(String)"),
    ("service_namespace", "String", "LowCardinality(String)"),
    ("service_version", "String", "LowCardinality(String)"),
    ("deployment_environment", "String", "LowCardinality(String)"),
    (
        "attribute_names",
        "Array(String)",
        "Array(LowCardinality(String))",
    ),
    (
        "attribute_values",
        "Array(String)",
        "Array(String) CODEC(ZSTD(1))",
    ),
    ("attribute_types", "Array(UInt8)", "Array(UInt8)"),
    (
        "resource_attribute_names",
        "Array(String)",
        "Array(LowCardinality(String))",
    ),
    (
        "resource_attribute_values",
        "Array(String)",
        "Array(String) CODEC(ZSTD(1))",
    ),
    ("resource_attribute_types", "Array(UInt8)", "Array(UInt8)"),
    ("resource_id", "UInt64", "UInt64"),
    ("attribute_keys_id", "UInt64", "UInt64"),
    ("events", "String", "String CODEC(ZSTD(1))"),
    ("links", "String", "String CODEC(ZSTD(1))"),
    ("dropped_attributes_count", "UInt32", "UInt32"),
    ("dropped_events_count", "UInt32", "UInt32"),
    ("dropped_links_count", "UInt32", "UInt32"),
];

/// The columns of `l7_resource`, in insert order: name, legacy type, modern type. A row is a
/// resource (its attributes, and its tags) or a span key set (names and types with every value
/// empty, and its spans' scope); the other kind's columns are empty. Each column but the first
/// two has the type of the span column it stands for.
pub fn resource_columns() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut columns = vec![
        ("time", "DateTime", "DateTime"),
        ("resource_id", "UInt64", "UInt64"),
    ];
    for name in RESOURCE_ARRAYS
        .iter()
        .chain(&SCOPE_COLUMNS)
        .chain(&TAG_COLUMNS)
    {
        let column = COLUMNS
            .iter()
            .find(|(span_column, ..)| span_column == name)
            .expect("a resource column is a span column");
        columns.push(*column);
    }
    columns
}

/// `l7_flow_log` as SQL sees it, as a subquery: every column, with each span's resource
/// attributes and tags (when `resources`) and attribute names, types and scope (when
/// `key_sets`) from `l7_resource`, or, for rows of older versions, from the row's own columns
/// (arrays where the key is 0, text where the row's own is not empty). `ANY LEFT JOIN ...
/// USING`, which 18.16 and current servers both take, one join a level; a span whose set is
/// missing gets empty arrays and text.
pub fn shared_join(
    spans_table: &str,
    resource_table: &str,
    resources: bool,
    key_sets: bool,
) -> String {
    let mut relation = spans_table.to_string();
    if resources {
        relation = join_level(
            &relation,
            resource_table,
            "resource_id",
            (&RESOURCE_ARRAYS, &RESOURCE_ARRAYS),
            &TAG_COLUMNS,
        );
    }
    if key_sets {
        relation = join_level(
            &relation,
            resource_table,
            "attribute_keys_id",
            (
                &KEY_SET_ARRAYS,
                &["resource_attribute_names", "resource_attribute_types"],
            ),
            &SCOPE_COLUMNS,
        );
    }
    relation
}

/// Which of the columns held in `l7_resource` a query over `l7_flow_log` reads: (the
/// resource's, the key set's). A column named anywhere counts, and so does `*` (but not
/// `count(*)`); a word inside a string literal, or a product, counts too, which costs a join,
/// not a wrong answer.
pub fn shared_arrays_read(sql: &str) -> (bool, bool) {
    let (mut resources, mut key_sets) = (false, false);
    let lower = sql.to_ascii_lowercase();
    for word in lower.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        if RESOURCE_ARRAYS.contains(&word) || TAG_COLUMNS.contains(&word) {
            resources = true;
        } else if KEY_SET_ARRAYS.contains(&word) || SCOPE_COLUMNS.contains(&word) {
            key_sets = true;
        }
    }
    let mut previous = ' ';
    for c in lower.chars() {
        if c == '*' && previous != '(' {
            return (true, true);
        }
        if !c.is_whitespace() {
            previous = c;
        }
    }
    (resources, key_sets)
}

/// `relation` with columns taken from the `resource_table` row whose `resource_id` is the
/// row's `key`: `arrays`, as the columns `stored` there, where the key is not 0, and `texts`,
/// under their own names there, where the row's own is empty.
fn join_level(
    relation: &str,
    resource_table: &str,
    key: &str,
    (arrays, stored): (&[&str], &[&str]),
    texts: &[&str],
) -> String {
    let mut inner = Vec::new();
    let mut outer = Vec::new();
    for (name, ..) in COLUMNS {
        if arrays.contains(name) {
            inner.push(format!("`{name}` AS `own_{name}`"));
            outer.push(format!(
                "if({key} = 0, `own_{name}`, `joined_{name}`) AS `{name}`"
            ));
        } else if texts.contains(name) {
            inner.push(format!("`{name}` AS `own_{name}`"));
            outer.push(format!(
                "if(`own_{name}` != '', `own_{name}`, `joined_{name}`) AS `{name}`"
            ));
        } else {
            inner.push(format!("`{name}`"));
            outer.push(format!("`{name}`"));
        }
    }
    let joined: Vec<String> = arrays
        .iter()
        .zip(stored)
        .chain(texts.iter().zip(texts))
        .map(|(name, column)| format!("`{column}` AS `joined_{name}`"))
        .collect();
    format!(
        "(SELECT {} FROM (SELECT {} FROM {relation}) AS own ANY LEFT JOIN \
         (SELECT resource_id AS {key}, {} FROM {resource_table} LIMIT 1 BY resource_id) \
         AS joined USING {key})",
        outer.join(", "),
        inner.join(", "),
        joined.join(", ")
    )
}

/// The columns of `l7_trace_index`, in insert order: name, legacy type, modern type (the same).
pub const INDEX_COLUMNS: &[(&str, &str, &str)] = &[
    ("trace_id", "FixedString(16)", "FixedString(16)"),
    ("time", "DateTime", "DateTime"),
    ("app_service", "String", "String"),
    ("endpoint", "String", "String"),
];

/// The columns spanflow writes to `table` (one of the three), in the order of its rows'
/// `RowBinary`, as an `INSERT` names them: a table that has more (added by a newer spanflow
/// while this one still runs) fills those with their defaults instead of refusing the rows.
pub fn insert_columns(table: &str) -> String {
    let names: Vec<&str> = match table {
        SPANS_TABLE => COLUMNS.iter().map(|(name, ..)| *name).collect(),
        RESOURCE_TABLE => resource_columns().iter().map(|(name, ..)| *name).collect(),
        TRACE_INDEX_TABLE => INDEX_COLUMNS.iter().map(|(name, ..)| *name).collect(),
        _ => panic!("spanflow writes no table `{table}`"),
    };
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    quoted.join(", ")
}

/// `columns` as a `CREATE TABLE` lists them, with the flavor's types.
fn column_list(columns: &[(&str, &str, &str)], flavor: Flavor) -> Vec<String> {
    columns
        .iter()
        .map(|(name, legacy, modern)| {
            let kind = match flavor {
                Flavor::Legacy => legacy,
                Flavor::Modern => modern,
            };
            format!("    `{name}` {kind}")
        })
        .collect()
}

/// Where the tables live: one server, or the shards of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub database: String,
    /// A cluster named in the servers' `<remote_servers>`: each shard keeps its rows in
    /// `<table>_local`, and `<table>` is a `Distributed` table over them, sharded by a hash of
    /// the trace id so that a trace's spans and index rows land on one shard.
    pub cluster: Option<String>,
}

impl Layout {
    /// The table that holds `table`'s rows on a server: `<table>_local` in a cluster.
    pub fn storage_table(&self, table: &str) -> String {
        match self.cluster {
            Some(_) => format!("{table}_local"),
            None => table.to_string(),
        }
    }

    /// `CREATE ... IF NOT EXISTS` for the database and both tables, to run on every server;
    /// `retention_hours` becomes the TTL where the server has TTLs.
    pub fn create_statements(&self, flavor: Flavor, retention_hours: u32) -> Vec<String> {
        let database = &self.database;
        let columns = column_list(COLUMNS, flavor);
        let (indexes, ttl, settings) = match flavor {
            Flavor::Legacy => (String::new(), String::new(), "\nSETTINGS "),
            Flavor::Modern => (
                ",\n    INDEX response_duration_idx response_duration TYPE minmax GRANULARITY 2,\n    \
                 INDEX response_status_idx response_status TYPE set(16) GRANULARITY 2,\n    \
                 INDEX request_resource_idx request_resource TYPE bloom_filter GRANULARITY 2"
                    .to_string(),
                format!("\nTTL time + toIntervalHour({retention_hours})"),
                "\nSETTINGS ttl_only_drop_parts = 1, ",
            ),
        };
        let spans = self.storage_table(SPANS_TABLE);
        let index = self.storage_table(TRACE_INDEX_TABLE);
        let mut statements = vec![
            format!("CREATE DATABASE IF NOT EXISTS `{database}`"),
            format!(
                "CREATE TABLE IF NOT EXISTS `{database}`.`{spans}` (\n{}{indexes}\n)\n\
                 ENGINE = ReplacingMergeTree()\n\
                 PARTITION BY toStartOfHour(time)\n\
                 ORDER BY (app_service, endpoint, time, trace_id, span_id){ttl}\
                 {settings}index_granularity = {SPANS_GRANULARITY}",
                columns.join(",\n")
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS `{database}`.`{index}` (\n{}\n)\n\
                 ENGINE = ReplacingMergeTree()\n\
                 PARTITION BY toStartOfDay(time)\n\
                 ORDER BY (trace_id, time, app_service, endpoint){ttl}{}",
                column_list(INDEX_COLUMNS, flavor).join(",\n"),
                match flavor {
                    Flavor::Legacy => "",
                    Flavor::Modern => "\nSETTINGS ttl_only_drop_parts = 1",
                }
            ),
        ];
        let resources = self.storage_table(RESOURCE_TABLE);
        statements.push(format!(
            "CREATE TABLE IF NOT EXISTS `{database}`.`{resources}` (\n{}\n)\n\
             ENGINE = ReplacingMergeTree()\n\
             PARTITION BY toStartOfHour(time)\n\
             ORDER BY (resource_id, time){ttl}{}",
            column_list(&resource_columns(), flavor).join(",\n"),
            match flavor {
                Flavor::Legacy => "",
                Flavor::Modern => "\nSETTINGS ttl_only_drop_parts = 1",
            }
        ));
        if let Some(cluster) = &self.cluster {
            for (table, local, key) in [
                (SPANS_TABLE, &spans, "cityHash64(trace_id)"),
                (TRACE_INDEX_TABLE, &index, "cityHash64(trace_id)"),
                (RESOURCE_TABLE, &resources, "resource_id"),
            ] {
                statements.push(format!(
                    "CREATE TABLE IF NOT EXISTS `{database}`.`{table}` AS `{database}`.`{local}`\n\
                     ENGINE = Distributed(`{cluster}`, `{database}`, `{local}`, {key})"
                ));
            }
        }
        statements
    }

    /// `ALTER TABLE ... ADD COLUMN` for the `columns` (as [`COLUMNS`] or [`resource_columns`]
    /// gives them) that a table made by an older spanflow lacks (`existing` names the columns
    /// it has), each after the column before it.
    pub fn upgrade_statements(
        &self,
        table: &str,
        columns: &[(&str, &str, &str)],
        flavor: Flavor,
        existing: &[String],
    ) -> Vec<String> {
        let database = &self.database;
        let mut statements = Vec::new();
        let mut previous: Option<&str> = None;
        for (name, legacy, modern) in columns {
            if !existing.iter().any(|column| column == name) {
                let kind = match flavor {
                    Flavor::Legacy => legacy,
                    Flavor::Modern => modern,
                };
                let place = match previous {
                    Some(previous) => format!(" AFTER `{previous}`"),
                    None => " FIRST".to_string(),
                };
                statements.push(format!(
                    "ALTER TABLE `{database}`.`{table}` ADD COLUMN `{name}` {kind}{place}"
                ));
            }
            previous = Some(name);
        }
        statements
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_join_the_shared_arrays_they_read() {
        let read = shared_arrays_read;
        assert_eq!(read("SELECT count(*) FROM l7_flow_log"), (false, false));
        assert_eq!(
            read("SELECT attribute_values[1] FROM l7_flow_log"),
            (false, false)
        );
        assert_eq!(
            read("SELECT attribute_values[indexOf(`attribute_names`, 'a')] FROM l7_flow_log"),
            (false, true)
        );
        assert_eq!(
            read("SELECT RESOURCE_ATTRIBUTE_VALUES FROM l7_flow_log"),
            (true, false)
        );
        assert_eq!(
            read("SELECT count() FROM l7_flow_log WHERE k8s_pod_name = 'a'"),
            (true, false)
        );
        assert_eq!(read("SELECT scope_version FROM l7_flow_log"), (false, true));
        assert_eq!(read("SELECT * FROM l7_flow_log"), (true, true));
        assert_eq!(read("SELECT t.* FROM l7_flow_log AS t"), (true, true));
    }

    #[test]
    fn versions_pick_their_flavor() {
        assert_eq!(Flavor::of_version("18.16.1"), Flavor::Legacy);
        assert_eq!(Flavor::of_version("20.2.1.1"), Flavor::Legacy);
        assert_eq!(Flavor::of_version("20.3.8.53"), Flavor::Modern);
        assert_eq!(Flavor::of_version("26.9.1"), Flavor::Modern);
        assert_eq!(Flavor::of_version("garbage"), Flavor::Legacy);
    }

    #[test]
    fn the_legacy_ddl_uses_nothing_18_16_lacks() {
        let single = Layout {
            database: "flow_log".into(),
            cluster: None,
        };
        let ddl = single.create_statements(Flavor::Legacy, 72).join("\n");
        for missing in [
            "DateTime64",
            "TTL",
            "CODEC",
            "INDEX",
            "LowCardinality",
            "Map(",
        ] {
            assert!(!ddl.contains(missing), "{missing} in\n{ddl}");
        }
        let modern = single.create_statements(Flavor::Modern, 72).join("\n");
        for used in [
            "DateTime64(6)",
            "TTL time + toIntervalHour(72)",
            "CODEC",
            "INDEX",
        ] {
            assert!(modern.contains(used), "{used} not in\n{modern}");
        }
    }

    #[test]
    fn a_cluster_keeps_rows_in_local_tables_behind_distributed_ones() {
        let layout = Layout {
            database: "flow_log".into(),
            cluster: Some("spans".into()),
        };
        let ddl = layout.create_statements(Flavor::Legacy, 72);
        assert_eq!(layout.storage_table(SPANS_TABLE), "l7_flow_log_local");
        assert!(
            ddl[1].contains("`flow_log`.`l7_flow_log_local`"),
            "{}",
            ddl[1]
        );
        assert!(
            ddl[2].contains("`flow_log`.`l7_trace_index_local`"),
            "{}",
            ddl[2]
        );
        assert!(
            ddl[3].contains("`flow_log`.`l7_resource_local`"),
            "{}",
            ddl[3]
        );
        assert!(
            ddl[4].contains(
                "ENGINE = Distributed(`spans`, `flow_log`, `l7_flow_log_local`, cityHash64(trace_id))"
            ),
            "{}",
            ddl[4]
        );
        assert!(ddl[5].contains("`l7_trace_index` AS `flow_log`.`l7_trace_index_local`"));
        assert!(
            ddl[6].contains(
                "`l7_resource` AS `flow_log`.`l7_resource_local`\nENGINE = Distributed(`spans`, \
                 `flow_log`, `l7_resource_local`, resource_id)"
            ),
            "{}",
            ddl[6]
        );
    }
}
