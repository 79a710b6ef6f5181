//! Reads through DataFusion: span search with its filters pushed down into the Parquet scan, and
//! read-only SQL over `l7_flow_log`. (Trace by id reads the files directly, in `files`.)

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{array_position, cast, col, lit, DataFrame, Expr, ParquetReadOptions};
use spanflow_model::SpanRow;
use spanflow_store::sql::SqlResult;
use spanflow_store::{SpanQuery, TimeRange};

use crate::store::EmbeddedConfig;
use crate::{schema, EmbeddedError};

/// The table name SQL sees, DeepFlow's.
pub const TABLE: &str = "l7_flow_log";

/// What all the queries of one store share: one memory pool that they draw on together (so that
/// concurrent queries cannot each take the whole budget) and the spill directory.
pub struct QueryRuntime {
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
}

impl QueryRuntime {
    pub fn new(config: &EmbeddedConfig) -> Result<QueryRuntime, EmbeddedError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(config.query_memory_bytes, 1.0)
            .build_arc()?;
        Ok(QueryRuntime { runtime })
    }
}

fn session(queries: &QueryRuntime) -> Result<SessionContext, EmbeddedError> {
    let mut session_config = SessionConfig::new().with_target_partitions(2);
    let parquet = &mut session_config.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    parquet.bloom_filter_on_read = true;
    // The row schema uses Utf8; keep it, so file and buffer rows share one schema.
    parquet.schema_force_view_types = false;
    let context = SessionContext::new_with_config_rt(session_config, queries.runtime.clone());
    // `attribute_values[array_position(attribute_names, 'key')]` must work as DeepFlow users
    // write it; the stock `array_position` returns an index type `[]` does not accept.
    for function in schema::sql_functions() {
        context.register_udf(function);
    }
    Ok(context)
}

/// A Parquet file of the store, as DataFusion reads it.
#[derive(Clone, Debug)]
pub struct FilePath {
    pub path: String,
    /// The storage format the file was written in, which gives its schema.
    pub format: u32,
}

/// The files as one frame of the row schema. Files of formats of different schemas are each
/// read with their own, and the kinds joined.
async fn read_files(
    context: &SessionContext,
    paths: Vec<FilePath>,
) -> Result<DataFrame, EmbeddedError> {
    let mut by_schema: Vec<(arrow::datatypes::SchemaRef, Vec<String>)> = Vec::new();
    for file in paths {
        let file_schema = schema::file_schema_of(file.format);
        match by_schema
            .iter_mut()
            .find(|(kind, _)| Arc::ptr_eq(kind, &file_schema))
        {
            Some((_, paths)) => paths.push(file.path),
            None => by_schema.push((file_schema, vec![file.path])),
        }
    }
    let mut frames = Vec::new();
    for (file_schema, paths) in by_schema {
        let options = ParquetReadOptions {
            schema: Some(file_schema.as_ref()),
            ..ParquetReadOptions::default()
        };
        frames.push(schema::from_file_frame(
            context.read_parquet(paths, options).await?,
        )?);
    }
    let mut frames = frames.into_iter();
    let first = frames
        .next()
        .expect("read_files is called with at least one file");
    Ok(frames.try_fold(first, |all, frame| all.union(frame))?)
}

/// The files and the buffered batches as one table of the stored schema.
async fn table(
    context: &SessionContext,
    paths: Vec<FilePath>,
    buffered: Vec<RecordBatch>,
) -> Result<DataFrame, EmbeddedError> {
    let buffered_is_empty = buffered.is_empty();
    let buffered = schema::from_buffer_frame(context.read_table(Arc::new(
        datafusion::datasource::MemTable::try_new(schema::buffer_schema(), vec![buffered])?,
    ))?)?;
    Ok(match (paths.is_empty(), buffered_is_empty) {
        (false, false) => read_files(context, paths).await?.union(buffered)?,
        (false, true) => read_files(context, paths).await?,
        (true, _) => buffered,
    })
}

async fn collect_rows(frame: DataFrame) -> Result<Vec<SpanRow>, EmbeddedError> {
    let batches = frame.collect().await?;
    let mut rows = Vec::new();
    for batch in &batches {
        rows.extend(
            schema::batch_to_rows(batch)
                .map_err(|error| EmbeddedError::corrupt(error.to_string()))?,
        );
    }
    Ok(rows)
}

/// The bounds of a time range on `start_time`.
fn range_filters(range: TimeRange) -> Vec<Expr> {
    let micros = |value: i64| {
        lit(datafusion::scalar::ScalarValue::TimestampMicrosecond(
            Some(value),
            Some("UTC".into()),
        ))
    };
    let mut filters = Vec::new();
    if let Some(min) = range.start_us {
        filters.push(col("start_time").gt_eq(micros(min)));
    }
    if let Some(max) = range.end_us {
        filters.push(col("start_time").lt_eq(micros(max)));
    }
    filters
}

/// The filter of a span query as a DataFusion expression.
fn search_filter(query: &SpanQuery) -> Option<Expr> {
    let mut filters: Vec<Expr> = Vec::new();
    if let Some(service) = &query.service {
        filters.push(col("app_service").eq(lit(service.clone())));
    }
    if let Some(operation) = &query.operation {
        filters.push(col("endpoint").eq(lit(operation.clone())));
    }
    if let Some(min) = query.min_duration_us {
        filters.push(col("response_duration").gt_eq(lit(min)));
    }
    if let Some(max) = query.max_duration_us {
        filters.push(col("response_duration").lt_eq(lit(max)));
    }
    filters.extend(range_filters(query.time_range()));
    if let Some(status) = query.response_status {
        filters.push(col("response_status").eq(lit(status.as_u8())));
    }
    for filter in &query.places {
        filters.push(col(filter.column()).eq(lit(filter.value.clone())));
    }
    for filter in &query.attributes {
        let matches = |names: &str, values: &str| {
            let position = cast(
                array_position(col(names), lit(filter.key.clone()), lit(1i64)),
                arrow::datatypes::DataType::Int64,
            );
            datafusion::functions_nested::expr_fn::array_element(col(values), position)
                .eq(lit(filter.value.clone()))
        };
        filters.push(matches("attribute_names", "attribute_values").or(matches(
            "resource_attribute_names",
            "resource_attribute_values",
        )));
    }
    filters.into_iter().reduce(Expr::and)
}

/// The newest `query.limit` matching rows of the given files and buffered batches.
pub async fn search_rows(
    queries: &QueryRuntime,
    paths: Vec<FilePath>,
    buffered: Vec<RecordBatch>,
    query: &SpanQuery,
) -> Result<Vec<SpanRow>, EmbeddedError> {
    let context = session(queries)?;
    let mut frame = table(&context, paths, buffered).await?;
    if let Some(filter) = search_filter(query) {
        frame = frame.filter(filter)?;
    }
    let frame = frame
        .sort(vec![col("start_time").sort(false, true)])?
        .limit(0, Some(query.limit))?;
    collect_rows(frame).await
}

/// The stored rows that start in `range` and, when given, have `service` as their service.
async fn table_of(
    context: &SessionContext,
    paths: Vec<FilePath>,
    buffered: Vec<RecordBatch>,
    range: TimeRange,
    service: Option<&str>,
) -> Result<DataFrame, EmbeddedError> {
    let mut filters = range_filters(range);
    if let Some(service) = service {
        filters.push(col("app_service").eq(lit(service.to_string())));
    }
    let frame = table(context, paths, buffered).await?;
    Ok(match filters.into_iter().reduce(Expr::and) {
        Some(filter) => frame.filter(filter)?,
        None => frame,
    })
}

/// The distinct values of `columns` among the rows that start in `range` and, when given, have
/// `service` as their service.
pub async fn distinct(
    queries: &QueryRuntime,
    paths: Vec<FilePath>,
    buffered: Vec<RecordBatch>,
    range: TimeRange,
    service: Option<&str>,
    columns: &[&str],
) -> Result<Vec<RecordBatch>, EmbeddedError> {
    let context = session(queries)?;
    let frame = table_of(&context, paths, buffered, range, service).await?;
    let frame = frame.aggregate(columns.iter().map(|name| col(*name)).collect(), Vec::new())?;
    Ok(frame.collect().await?)
}

/// Runs spanflow's own `sql` over the stored rows (raw ids, no view) registered as `spans`,
/// after `filter`: the aggregates behind the service map and RED series.
pub async fn aggregate(
    queries: &QueryRuntime,
    paths: Vec<FilePath>,
    buffered: Vec<RecordBatch>,
    range: TimeRange,
    service: Option<&str>,
    sql: &str,
) -> Result<SqlResult, EmbeddedError> {
    let context = session(queries)?;
    let frame = table_of(&context, paths, buffered, range, service).await?;
    context.register_table("spans", frame.into_view())?;
    let batches = context.sql(sql).await?.collect().await?;
    to_json(&batches)
}

/// Read-only SQL over `l7_flow_log`: the files and the buffered rows as one table.
pub async fn sql(
    queries: &QueryRuntime,
    paths: Vec<FilePath>,
    buffered: Vec<RecordBatch>,
    sql: &str,
    max_rows: Option<usize>,
) -> Result<Vec<RecordBatch>, EmbeddedError> {
    let context = session(queries)?;
    let table = schema::sql_view(table(&context, paths, buffered).await?)?.into_view();
    context.register_table(TABLE, table.clone())?;
    // Also as DeepFlow's queries name it, in its database.
    if let Some(catalog) = context.catalog("datafusion") {
        catalog.register_schema(
            "flow_log",
            Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
        )?;
        context.register_table(
            datafusion::common::TableReference::partial("flow_log", TABLE),
            table,
        )?;
    }
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = context
        .sql_with_options(sql, options)
        .await
        .map_err(|error| match error {
            datafusion::error::DataFusionError::Plan(message)
                if message.contains("not supported")
                    || message.contains("Statement")
                    || message.contains("DDL")
                    || message.contains("DML") =>
            {
                EmbeddedError::BadQuery(format!("only read-only queries are allowed: {message}"))
            }
            other => EmbeddedError::Query(other),
        })?;
    let frame = match max_rows {
        Some(max_rows) => frame.limit(0, Some(max_rows))?,
        None => frame,
    };
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    // An empty answer still says which columns it has.
    Ok(if batches.is_empty() {
        vec![RecordBatch::new_empty(schema)]
    } else {
        batches
    })
}

/// Query results as column names, type names and rows of JSON values: numbers stay numbers,
/// times are µs since the epoch, lists are arrays, everything else is its text.
pub fn to_json(batches: &[RecordBatch]) -> Result<SqlResult, EmbeddedError> {
    let mut result = SqlResult::default();
    let Some(first) = batches.first() else {
        return Ok(result);
    };
    for field in first.schema().fields() {
        result.columns.push(field.name().clone());
        result.types.push(field.data_type().to_string());
    }
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .map(|array| json_values(array.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            result
                .values
                .push(columns.iter().map(|column| column[row].clone()).collect());
        }
    }
    Ok(result)
}

/// Each value of `array` as JSON: numbers and booleans as themselves, lists as arrays of their
/// items (as ClickHouse answers `attribute_names`), anything else as its text; null as null.
fn json_values(array: &dyn arrow::array::Array) -> Result<Vec<serde_json::Value>, EmbeddedError> {
    use arrow::array::AsArray;
    use arrow::datatypes::{
        DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
        TimestampMicrosecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
    };
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    use serde_json::{json, Value};
    fn numbers<T: arrow::datatypes::ArrowPrimitiveType>(
        array: &dyn arrow::array::Array,
    ) -> Vec<Value>
    where
        T::Native: serde::Serialize,
    {
        array.as_primitive::<T>().iter().map(|v| json!(v)).collect()
    }
    Ok(match array.data_type() {
        DataType::Int8 => numbers::<Int8Type>(array),
        DataType::Int16 => numbers::<Int16Type>(array),
        DataType::Int32 => numbers::<Int32Type>(array),
        DataType::Int64 => numbers::<Int64Type>(array),
        DataType::UInt8 => numbers::<UInt8Type>(array),
        DataType::UInt16 => numbers::<UInt16Type>(array),
        DataType::UInt32 => numbers::<UInt32Type>(array),
        DataType::UInt64 => numbers::<UInt64Type>(array),
        DataType::Float32 => numbers::<Float32Type>(array),
        DataType::Float64 => numbers::<Float64Type>(array),
        DataType::Boolean => array.as_boolean().iter().map(|v| json!(v)).collect(),
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, _) => {
            numbers::<TimestampMicrosecondType>(array)
        }
        DataType::List(_) => offset_lists_as_json::<i32>(array)?,
        DataType::LargeList(_) => offset_lists_as_json::<i64>(array)?,
        DataType::FixedSizeList(_, size) => {
            let size = *size as usize;
            let lists = array.as_fixed_size_list();
            lists_as_json(array, lists.values(), |row| row * size..(row + 1) * size)?
        }
        _ => {
            let options = FormatOptions::default().with_null("");
            let formatter = ArrayFormatter::try_new(array, &options)
                .map_err(|error| EmbeddedError::Query(error.into()))?;
            (0..array.len())
                .map(|row| {
                    if array.is_null(row) {
                        Value::Null
                    } else {
                        Value::String(formatter.value(row).to_string())
                    }
                })
                .collect()
        }
    })
}

/// [`lists_as_json`] for a list array with offsets of type `O`.
fn offset_lists_as_json<O: arrow::array::OffsetSizeTrait>(
    array: &dyn arrow::array::Array,
) -> Result<Vec<serde_json::Value>, EmbeddedError> {
    use arrow::array::AsArray;
    let lists = array.as_list::<O>();
    let offsets = lists.value_offsets();
    lists_as_json(array, lists.values(), |row| {
        offsets[row].as_usize()..offsets[row + 1].as_usize()
    })
}

/// Each list of `array` as a JSON array of its `items` in `range(row)`; null as null. The
/// items are converted once, all lists together.
fn lists_as_json(
    array: &dyn arrow::array::Array,
    items: &arrow::array::ArrayRef,
    range: impl Fn(usize) -> std::ops::Range<usize>,
) -> Result<Vec<serde_json::Value>, EmbeddedError> {
    let items = json_values(items.as_ref())?;
    Ok((0..array.len())
        .map(|row| {
            if array.is_null(row) {
                serde_json::Value::Null
            } else {
                serde_json::Value::Array(items[range(row)].to_vec())
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::MemoryConsumer;

    #[test]
    fn the_queries_of_a_store_draw_on_one_memory_pool() {
        let config = EmbeddedConfig {
            query_memory_bytes: 1 << 20,
            ..EmbeddedConfig::new("unused")
        };
        let queries = QueryRuntime::new(&config).unwrap();
        let (first, second) = (session(&queries).unwrap(), session(&queries).unwrap());
        let pool = |context: &SessionContext| context.runtime_env().memory_pool.clone();
        let held = MemoryConsumer::new("first query").register(&pool(&first));
        held.try_grow(768 << 10).unwrap();
        let wanted = MemoryConsumer::new("second query").register(&pool(&second));
        let error = wanted.try_grow(512 << 10).unwrap_err();
        assert!(error.to_string().contains("Resources exhausted"), "{error}");
        drop(held);
        wanted.try_grow(512 << 10).unwrap();
    }
}
