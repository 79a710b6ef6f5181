//! The span row as Arrow: the `l7_flow_log` schema and conversions both ways.
//!
//! One [`SpanRow`] is one Arrow row. Column names are the row's field names (DeepFlow's
//! `l7_flow_log` names), with the resource tags flattened under their own names (`host_name`,
//! `k8s_pod_name`, ...). Times are UTC timestamps. Ids are stored as bytes (`trace_id` 16,
//! `span_id` and `parent_span_id` 8, the parent null for a root span): half the size of hex
//! text before compression, and compared without formatting. SQL sees them as DeepFlow users
//! write them, lowercase hex text (`WHERE trace_id = '5b8e...'`, a root's `parent_span_id` is
//! `''`), through [`sql_view`].
//!
//! # Attributes, events and links
//!
//! Span and resource attributes are three parallel lists each, DeepFlow style, so that
//! `attribute_values[array_position(attribute_names, 'http.route')]` works:
//! `attribute_names` (`List<Utf8>`), `attribute_values` (`List<Utf8>`, the value as text) and
//! `attribute_types` (`List<UInt8>`, the value's type). Same for `resource_attribute_*`.
//! `events` and `links` are JSON text. The text forms and type codes are
//! [`spanflow_store::text`]'s. Files hold the resource attributes packed as one binary value a
//! span instead of three lists, and a span's own attribute names and types as one packed key
//! set beside the values' list ([`crate::packed`]); every read gives the lists back. The store's
//! buffer and write-ahead log hold rows as files do, with what spans share (a resource's tags
//! and attributes, the places of both ends) as dictionaries and a span's own attributes packed
//! too ([`rows_to_buffer`], [`buffer_schema`]).

use std::net::IpAddr;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanArray, BooleanBufferBuilder,
    DictionaryArray, Int32Array, Int32Builder, Int64Array, Int64Builder, ListArray, StringArray,
    StringBuilder, TimestampMicrosecondArray, TimestampSecondArray, UInt16Array, UInt32Array,
    UInt64Array, UInt8Array,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature,
};
use spanflow_model::{
    Attribute, AutoType, IpText, L7Protocol, ObservationPoint, Place, ResourceTags, ResponseStatus,
    SpanId, SpanKind, SpanRow, TraceId,
};
use spanflow_store::text;

use crate::packed::{self, Part};

/// The table name DataFusion queries see, as DeepFlow names it.
pub const TABLE_NAME: &str = "l7_flow_log";

/// Why a record batch does not decode into span rows.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

const UTC: &str = "UTC";

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let utf8 = |name: &str| Field::new(name, DataType::Utf8, false);
    let seconds = DataType::Timestamp(TimeUnit::Second, Some(UTC.into()));
    let micros = DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()));
    let list = |name: &str, item: DataType| {
        Field::new_list(name, Field::new_list_field(item, true), false)
    };
    let mut fields = vec![
        Field::new("time", seconds, false),
        Field::new("start_time", micros.clone(), false),
        // The end, as what it adds to the start plus the duration: nearly always zero, where
        // the end itself costs four bytes a span. The SQL view shows `end_time`.
        Field::new("end_time_offset", DataType::Int64, false),
        Field::new("trace_id", DataType::Binary, false),
        Field::new("span_id", DataType::Binary, false),
        Field::new("parent_span_id", DataType::Binary, true),
        Field::new("span_kind", DataType::UInt8, false),
        utf8("observation_point"),
        utf8("trace_state"),
        Field::new("flags", DataType::UInt32, false),
        utf8("endpoint"),
        utf8("app_service"),
        utf8("app_instance"),
        Field::new("signal_source", DataType::UInt16, false),
        utf8("agent_id"),
        Field::new("l7_protocol", DataType::UInt8, false),
        utf8("l7_protocol_str"),
        utf8("version"),
        Field::new("is_tls", DataType::Boolean, false),
        Field::new("protocol", DataType::UInt8, false),
        utf8("request_type"),
        utf8("request_domain"),
        utf8("request_resource"),
        Field::new("request_length", DataType::Int64, true),
        Field::new("response_length", DataType::Int64, true),
        Field::new("response_code", DataType::Int32, true),
        Field::new("response_status", DataType::UInt8, false),
        utf8("response_exception"),
        Field::new("status_code", DataType::UInt8, false),
        utf8("status_message"),
        Field::new("response_duration", DataType::UInt64, false),
        Field::new("ip_0", DataType::Utf8, true),
        Field::new("ip_1", DataType::Utf8, true),
        Field::new("client_port", DataType::UInt16, false),
        Field::new("server_port", DataType::UInt16, false),
    ];
    for side in SIDES {
        for (name, _) in Place::TEXT_COLUMNS {
            fields.push(utf8(&format!("{name}_{side}")));
        }
        fields.push(Field::new(
            format!("auto_instance_type_{side}"),
            DataType::UInt8,
            false,
        ));
        fields.push(Field::new(
            format!("auto_service_type_{side}"),
            DataType::UInt8,
            false,
        ));
        fields.push(utf8(&format!("labels_{side}")));
    }
    fields.extend([
        utf8("scope_name"),
        utf8("scope_version"),
        utf8("host_name"),
        utf8("container_id"),
        utf8("k8s_cluster_name"),
        utf8("k8s_namespace_name"),
        utf8("k8s_node_name"),
        utf8("k8s_pod_name"),
        utf8("k8s_pod_uid"),
        utf8("k8s_workload_kind"),
        utf8("k8s_workload_name"),
        utf8("service_namespace"),
        utf8("service_version"),
        utf8("deployment_environment"),
        list("attribute_names", DataType::Utf8),
        list("attribute_values", DataType::Utf8),
        list("attribute_types", DataType::UInt8),
        list("resource_attribute_names", DataType::Utf8),
        list("resource_attribute_values", DataType::Utf8),
        list("resource_attribute_types", DataType::UInt8),
        utf8("events"),
        utf8("links"),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        Field::new("dropped_events_count", DataType::UInt32, false),
        Field::new("dropped_links_count", DataType::UInt32, false),
    ]);
    Arc::new(Schema::new(fields))
});

/// The two ends of a call, as the place columns' suffixes name them.
const SIDES: [u8; 2] = [0, 1];

/// Whether `name` is one of both ends' place columns (`pod_0`, `auto_service_type_1`, ...).
pub fn is_place_column(name: &str) -> bool {
    let Some(base) = name.strip_suffix("_0").or_else(|| name.strip_suffix("_1")) else {
        return false;
    };
    Place::TEXT_COLUMNS
        .iter()
        .any(|(column, _)| *column == base)
        || matches!(base, "auto_instance_type" | "auto_service_type" | "labels")
}

/// The `l7_flow_log` schema; every call returns the same shared `Arc`.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The table SQL sees: every stored column in schema order, with the ids as lowercase hex text
/// (a root span's `parent_span_id` as `''`), as DeepFlow users write them:
/// `WHERE trace_id = '5b8e...'`.
pub fn sql_view(frame: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::functions::expr_fn::{coalesce, encode};
    use datafusion::prelude::{cast, col, lit};
    let hex = |name: &str| encode(cast(col(name), DataType::Binary), lit("hex"));
    let columns = SCHEMA
        .fields()
        .iter()
        .map(|field| match field.name().as_str() {
            "trace_id" | "span_id" => hex(field.name()).alias(field.name()),
            "parent_span_id" => coalesce(vec![hex(field.name()), lit("")]).alias(field.name()),
            "end_time_offset" => cast(
                cast(col("start_time"), DataType::Int64)
                    + cast(col("response_duration"), DataType::Int64)
                    + col(field.name()),
                DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            )
            .alias("end_time"),
            name => col(name),
        })
        .collect::<Vec<_>>();
    frame.select(columns)
}

/// SQL functions to register in any DataFusion session that queries `l7_flow_log`, so that
/// DeepFlow-style attribute lookups work:
/// `attribute_values[array_position(attribute_names, 'http.route')]`.
///
/// DataFusion 55's `array_position` returns `UInt64`, and its `array_element` (the `[]`
/// operator) only takes an `Int64` index and will not coerce `UInt64` to it, so that expression
/// fails to plan. This replaces `array_position` (and its aliases) with the same function
/// returning `Int64`. Register with `SessionContext::register_udf` for each, or
/// `SessionStateBuilder::with_scalar_functions`.
pub fn sql_functions() -> Vec<ScalarUDF> {
    vec![ScalarUDF::new_from_impl(ArrayPositionInt64 {
        inner: datafusion::functions_nested::position::array_position_udf(),
    })]
}

/// `array_position` returning `Int64`, usable as an index.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ArrayPositionInt64 {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for ArrayPositionInt64 {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(
        &self,
        mut args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        args.return_field = Arc::new(
            args.return_field
                .as_ref()
                .clone()
                .with_data_type(DataType::UInt64),
        );
        self.inner
            .invoke_with_args(args)?
            .cast_to(&DataType::Int64, None)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// The resource tag columns, in schema order, with their field in [`ResourceTags`].
const RESOURCE_COLUMNS: [(&str, spanflow_model::ResourceTag); 12] = ResourceTags::COLUMNS;

// ---------------------------------------------------------------------------------------------
// Rows as files hold them.

/// Whether files hold this column's empty text as null. Most text columns are empty in most
/// rows (a status message, a pod on a span that ran outside Kubernetes), and a Parquet writer
/// interns every value it writes, empty or not, but only marks a null: that halves what a flush
/// spends on them. The columns searches prune by page statistics (service, endpoint, and those
/// that follow the service) keep their empty text, so that a filter reaches the files as the
/// plain comparison the statistics answer.
fn empty_as_null(field: &Field) -> bool {
    field.data_type() == &DataType::Utf8
        && !field.is_nullable()
        && !crate::files::TEXT_STATISTICS_COLUMNS.contains(&field.name().as_str())
}

/// The number columns files hold a zero of as null: what a span nearly always leaves at zero
/// (its end's offset from start plus duration, TLS, the client's port, the counts of what its
/// sender dropped). A Parquet writer looks every number it writes up in the column's dictionary,
/// a hash a value, but only marks a null: for these six columns that was a twentieth of the
/// writer's work in a flush. Searches prune by none of them.
const ZERO_AS_NULL_COLUMNS: [&str; 6] = [
    "end_time_offset",
    "is_tls",
    "client_port",
    "dropped_attributes_count",
    "dropped_events_count",
    "dropped_links_count",
];

/// The first storage format that holds [`ZERO_AS_NULL_COLUMNS`]' zeros as null.
const ZERO_AS_NULL_SINCE: u32 = 8;

/// Whether files hold this column's zero (`false`) as null ([`ZERO_AS_NULL_COLUMNS`]). Reads
/// take a null of these columns as zero whatever the file's format.
fn zero_as_null(name: &str) -> bool {
    ZERO_AS_NULL_COLUMNS.contains(&name)
}

/// One-byte codes that files hold together as one number, [`CODES_COLUMN`], the first in its
/// lowest byte: a Parquet writer hashes every number it writes into a column's dictionary, so
/// one number a span costs it an eighth of eight. None of them is a column searches prune pages
/// by (the response status, which searches for errors do, stays apart).
const CODE_COLUMNS: [&str; 8] = [
    "span_kind",
    "l7_protocol",
    "protocol",
    "status_code",
    "auto_instance_type_0",
    "auto_service_type_0",
    "auto_instance_type_1",
    "auto_service_type_1",
];

/// The file column of [`CODE_COLUMNS`], where the first of them is in the row schema.
pub(crate) const CODES_COLUMN: &str = "codes";

/// The first storage format that holds [`CODE_COLUMNS`] as [`CODES_COLUMN`].
const CODES_SINCE: u32 = 8;

/// For a column of the row schema that files of `format` hold in [`CODES_COLUMN`]: its byte.
fn code_byte(name: &str, format: u32) -> Option<usize> {
    if format < CODES_SINCE {
        return None;
    }
    CODE_COLUMNS.iter().position(|code| *code == name)
}

/// The codes of `batch`'s [`CODE_COLUMNS`] (of the row schema's `UInt8`) as one number a row.
fn pack_codes(batch: &RecordBatch) -> Result<ArrayRef, SchemaError> {
    let mut codes = vec![0u64; batch.num_rows()];
    for (byte, name) in CODE_COLUMNS.iter().enumerate() {
        let column = column::<UInt8Array>(batch, name)?;
        for (packed, code) in codes.iter_mut().zip(column.values().iter()) {
            *packed |= u64::from(*code) << (8 * byte);
        }
    }
    Ok(Arc::new(UInt64Array::from(codes)))
}

/// Byte `byte` of each of a file's [`CODES_COLUMN`] numbers, as its column of the row schema.
fn unpack_code(codes: &ArrayRef, byte: usize) -> Result<ArrayRef, SchemaError> {
    let codes = codes
        .as_primitive_opt::<arrow::datatypes::UInt64Type>()
        .ok_or_else(|| {
            SchemaError(format!(
                "column `{CODES_COLUMN}` is {}, expected UInt64",
                codes.data_type()
            ))
        })?;
    let values: ScalarBuffer<u8> = codes
        .values()
        .iter()
        .map(|packed| (packed >> (8 * byte)) as u8)
        .collect();
    Ok(Arc::new(UInt8Array::new(values, None)))
}

/// The first storage format that holds each end's place packed, as [`PLACE_COLUMNS`].
const PLACES_SINCE: u32 = 9;

/// The file columns of both ends' places, each where the end's first place column
/// (`pod_0`, `pod_1`) is in the row schema: the end's [`PLACE_TEXTS`] packed as one value
/// ([`packed::pack_texts`]), null for a place of which nothing is known. The spans of a file
/// come from few places, so each column's dictionary holds each place once and a span costs
/// the writer one index an end, where the end's thirteen text columns cost it thirteen. No
/// search prunes by a place (those columns kept no statistics), and SQL reads each text
/// through a function that unpacks it ([`from_file_frame`]). The places' two codes are in
/// [`CODES_COLUMN`].
pub(crate) const PLACE_COLUMNS: [&str; 2] = ["place_0", "place_1"];

/// The type of [`PLACE_COLUMNS`]: a dictionary, as the Parquet writer writes them, so that a
/// reader gets each place of a row group once and unpacks a place rather than a row.
fn place_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Binary))
}

/// The text columns of a place, without the end's suffix, in the order files pack them.
const PLACE_TEXTS: [&str; 13] = [
    "pod",
    "pod_ns",
    "pod_group",
    "pod_group_type",
    "pod_node",
    "pod_cluster",
    "service",
    "host",
    "region",
    "az",
    "auto_instance",
    "auto_service",
    "labels",
];

/// For a column of the row schema that files of `format` hold in an end's packed place: the
/// end and the text's position in the packed value.
fn place_part(name: &str, format: u32) -> Option<(usize, usize)> {
    if format < PLACES_SINCE {
        return None;
    }
    let (base, side) = match (name.strip_suffix("_0"), name.strip_suffix("_1")) {
        (Some(base), _) => (base, 0),
        (_, Some(base)) => (base, 1),
        _ => return None,
    };
    PLACE_TEXTS
        .iter()
        .position(|text| *text == base)
        .map(|index| (side, index))
}

/// The place of end `side` of `batch`'s rows packed as one value a row ([`PLACE_COLUMNS`]).
/// The buffer holds an end's texts as dictionaries over the same keys; the packed column is
/// then a dictionary over those keys, each distinct place packed once. Otherwise (rows of
/// the row schema) each row's place is packed.
fn pack_places(batch: &RecordBatch, side: usize) -> Result<ArrayRef, SchemaError> {
    let columns = PLACE_TEXTS
        .iter()
        .map(|text| {
            let name = format!("{text}_{side}");
            batch
                .column_by_name(&name)
                .ok_or_else(|| SchemaError(format!("missing column `{name}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dictionaries: Option<Vec<&DictionaryArray<Int32Type>>> = columns
        .iter()
        .map(|column| column.as_dictionary_opt::<Int32Type>())
        .collect();
    if let Some(dictionaries) = dictionaries {
        let keys = dictionaries[0].keys();
        let shared = dictionaries.iter().all(|dictionary| {
            let (these, values) = (dictionary.keys(), dictionary.values());
            let Some(texts) = values.as_string_opt::<i32>() else {
                return false;
            };
            if these.len() != keys.len() || values.len() != dictionaries[0].values().len() {
                return false;
            }
            // One key buffer for all, as the buffer builds them and a write's sort gathers
            // them (`batches::take_rows`); the buffer's keys are null only where their text
            // is empty (`KeyNulls`).
            if these.values().as_ptr() == keys.values().as_ptr() {
                return true;
            }
            // Otherwise (gathered a column at a time) equal keys, and a null key must index an
            // empty text, so that each key's texts are its rows'.
            these.values() == keys.values()
                && these.nulls().is_none_or(|nulls| {
                    (!nulls.inner()).set_indices().all(|row| {
                        let key = these.values()[row] as usize;
                        key < texts.len() && (texts.is_null(key) || texts.value_length(key) == 0)
                    })
                })
        });
        if shared {
            // The buffer's keys are null where their column's text is empty (`KeyNulls`), and
            // index the row's place all the same: the packed keys are the key values, null
            // where the whole place is unknown.
            let values: Vec<&StringArray> = dictionaries
                .iter()
                .map(|dictionary| dictionary.values().as_string::<i32>())
                .collect();
            let packed = packed::pack_texts(&values);
            let keys = keys.values();
            if keys
                .iter()
                .any(|&key| key < 0 || key as usize >= packed.len())
            {
                return Err(SchemaError("packing places: a key past the places".into()));
            }
            let nulls = packed.nulls().map(|unknown| {
                NullBuffer::new(BooleanBuffer::collect_bool(keys.len(), |row| {
                    unknown.is_valid(keys[row] as usize)
                }))
            });
            let keys = Int32Array::new(keys.clone(), nulls);
            // SAFETY: every key was checked above to index a packed place.
            let packed =
                unsafe { DictionaryArray::<Int32Type>::new_unchecked(keys, Arc::new(packed)) };
            return Ok(Arc::new(packed));
        }
    }
    let texts = columns
        .iter()
        .map(|column| {
            arrow::compute::cast(column, &DataType::Utf8)
                .map_err(|error| SchemaError(format!("packing places: {error}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let texts: Vec<&StringArray> = texts.iter().map(|text| text.as_string::<i32>()).collect();
    let packed: ArrayRef = Arc::new(packed::pack_texts(&texts));
    arrow::compute::cast(&packed, &place_type())
        .map_err(|error| SchemaError(format!("packing places: {error}")))
}

/// The texts of a file's packed places ([`PLACE_COLUMNS`]), as the row schema's columns, in
/// [`PLACE_TEXTS`]' order: all of them, or only the one at `only`.
fn unpack_places(column: &ArrayRef, only: Option<usize>) -> Result<Vec<ArrayRef>, SchemaError> {
    let not_packed = || {
        SchemaError(format!(
            "a packed place column is {}, expected Binary",
            column.data_type()
        ))
    };
    let (packed, keys) = match column.as_dictionary_opt::<Int32Type>() {
        Some(dictionary) => (dictionary.values(), Some(dictionary.keys())),
        None => (column, None),
    };
    let packed = packed.as_binary_opt::<i32>().ok_or_else(not_packed)?;
    let texts = packed::unpack_texts(packed, PLACE_TEXTS.len(), only)?;
    let Some(keys) = keys else {
        return Ok(texts
            .into_iter()
            .map(|texts| Arc::new(texts) as ArrayRef)
            .collect());
    };
    // A null key (nothing known of the place) takes an empty text, one past the places.
    let n_places = packed.len() as i32;
    let mut rows = Vec::with_capacity(keys.len());
    for key in keys.iter() {
        match key {
            Some(key) if !(0..n_places).contains(&key) => {
                return Err(SchemaError(format!(
                    "a place key {key} past the column's {n_places} places"
                )))
            }
            Some(key) => rows.push(key),
            None => rows.push(n_places),
        }
    }
    let rows = Int32Array::from(rows);
    texts
        .into_iter()
        .map(|texts| {
            let (offsets, values, _) = texts.into_parts();
            let last = *offsets.last().expect("offsets are never empty");
            let offsets: Vec<i32> = offsets.iter().copied().chain([last]).collect();
            let texts = StringArray::try_new(OffsetBuffer::new(offsets.into()), values, None)
                .map_err(|error| SchemaError(format!("unpacking places: {error}")))?;
            arrow::compute::take(&texts, &rows, None)
                .map_err(|error| SchemaError(format!("unpacking places: {error}")))
        })
        .collect()
}

/// An attribute set that files hold packed ([`crate::packed`]) in place of the row schema's
/// three lists (`<prefix>_names`, `<prefix>_values`, `<prefix>_types`).
struct PackedSet {
    /// The file's column.
    column: &'static str,
    prefix: &'static str,
    /// Whether the values are packed too; if not, the column is the set's key set
    /// ([`packed::pack_keys`]) and the values stay a list.
    values: bool,
    /// The first storage format that packs the set.
    since: u32,
}

/// The attribute sets files hold packed: a resource's attributes whole (format 6 on: the spans
/// of one resource share the set, so a file's dictionary holds each once), a span's own
/// attributes' names and types (format 7 on: the spans of one operation mostly share their
/// keys, while their values differ apart).
const PACKED_SETS: [PackedSet; 2] = [
    PackedSet {
        column: "resource_attributes",
        prefix: "resource_attribute",
        values: true,
        since: 6,
    },
    PackedSet {
        column: "attribute_keys",
        prefix: "attribute",
        values: false,
        since: 7,
    },
];

/// The storage format this version writes files in.
const FILE_FORMAT: u32 = crate::manifest::FORMAT;

/// For a list column of the row schema that files of `format` hold packed: the set and which
/// of the three lists it is.
fn packed_part(name: &str, format: u32) -> Option<(&'static PackedSet, Part)> {
    PACKED_SETS
        .iter()
        .filter(|set| set.since <= format)
        .find_map(|set| {
            let part = match name.strip_prefix(set.prefix)? {
                "_names" => Part::Names,
                "_values" if set.values => Part::Values,
                "_types" => Part::Types,
                _ => return None,
            };
            Some((set, part))
        })
}

fn file_field(field: &Field, format: u32) -> Field {
    let nullable = field.is_nullable()
        || empty_as_null(field)
        || (format >= ZERO_AS_NULL_SINCE && zero_as_null(field.name()));
    field.clone().with_nullable(nullable)
}

fn file_schema_for(format: u32) -> SchemaRef {
    let fields: Vec<Field> = SCHEMA
        .fields()
        .iter()
        .filter_map(|field| match packed_part(field.name(), format) {
            Some((set, Part::Names)) => Some(Field::new(set.column, DataType::Binary, true)),
            Some(_) => None,
            None => match (
                code_byte(field.name(), format),
                place_part(field.name(), format),
            ) {
                (Some(0), _) => Some(Field::new(CODES_COLUMN, DataType::UInt64, false)),
                (_, Some((side, 0))) => Some(Field::new(PLACE_COLUMNS[side], place_type(), true)),
                (Some(_), _) | (_, Some(_)) => None,
                (None, None) => Some(file_field(field, format)),
            },
        })
        .collect();
    Arc::new(Schema::new(fields))
}

static FILE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| file_schema_for(FILE_FORMAT));
static FORMAT_8_FILE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| file_schema_for(8));
static FORMAT_7_FILE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| file_schema_for(7));
static FORMAT_6_FILE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| file_schema_for(6));
static LIST_FILE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| file_schema_for(5));

/// The schema of the Parquet files: [`schema()`] with the columns files hold empty text or a
/// zero of as null made nullable, the resource attributes' three lists as one packed column
/// (`resource_attributes`), the span attributes' names and types as one key set a span
/// (`attribute_keys`) beside their values' list, eight one-byte codes as one number
/// ([`CODES_COLUMN`]) and each end's place as one packed value ([`PLACE_COLUMNS`]). Rows read
/// from a file go back through [`from_file`], and SQL sees the row schema (see
/// [`from_file_frame`]).
pub fn file_schema() -> SchemaRef {
    FILE_SCHEMA.clone()
}

/// The schema of the files of storage `format` (4 on): format 4's and 5's hold the attribute
/// sets as lists (format 4's text columns hold no nulls, which the schema allows), format 6's
/// the resource attributes packed and the span's as lists, format 7's as format 8's with no
/// nulls in its numbers and a column a code, format 8's as [`file_schema()`] with a column a
/// place text, later ones as [`file_schema()`].
pub fn file_schema_of(format: u32) -> SchemaRef {
    match format {
        ..=5 => LIST_FILE_SCHEMA.clone(),
        6 => FORMAT_6_FILE_SCHEMA.clone(),
        7 => FORMAT_7_FILE_SCHEMA.clone(),
        8 => FORMAT_8_FILE_SCHEMA.clone(),
        _ => FILE_SCHEMA.clone(),
    }
}

/// Whether the buffer holds this file column as a dictionary: the text of what many spans
/// share (a resource's tags, the places of both ends) and the packed resource attributes. A
/// batch then holds each distinct value once and a row its key, which is cheaper to build, to
/// log, and to gather for a flush than a copy a row.
fn buffered_as_dictionary(field: &Field) -> bool {
    matches!(field.data_type(), DataType::Utf8 | DataType::Binary)
        && (is_place_column(field.name())
            || ADDRESS_COLUMNS.contains(&field.name().as_str())
            || RUN_COLUMNS.contains(&field.name().as_str())
            || RESOURCE_COLUMNS
                .iter()
                .any(|(name, _)| *name == field.name())
            || PACKED_SETS
                .iter()
                .any(|set| set.values && set.column == field.name()))
}

/// The ends' addresses, which the buffer holds as dictionaries ([`AddressDictionary`]).
const ADDRESS_COLUMNS: [&str; 2] = ["ip_0", "ip_1"];

/// Text that the spans of a run share, one after another in a write: a resource's instance,
/// the agent that forwarded the batch, the instrumentation scope. The buffer holds each as a
/// dictionary of a value a run ([`RunDictionary`]).
const RUN_COLUMNS: [&str; 4] = ["app_instance", "agent_id", "scope_name", "scope_version"];

/// The attribute set the buffer holds packed whole while files hold its key set and values
/// apart: a span's own attributes. A flush gathers a row's set as one value then, not item by
/// item in lists, and splits each row once, sorted.
const BUFFER_PACKED_SET: (&str, &str) = ("attributes", "attribute");

/// For a list column of the file schema that the buffer holds packed: which list it is.
fn buffer_packed_part(name: &str) -> Option<Part> {
    match name.strip_prefix(BUFFER_PACKED_SET.1)? {
        "_names" => Some(Part::Names),
        "_values" => Some(Part::Values),
        "_types" => Some(Part::Types),
        _ => None,
    }
}

/// A file field as the buffer holds it: a dictionary where [`buffered_as_dictionary`].
fn buffer_field(field: &Field) -> Field {
    if buffered_as_dictionary(field) {
        let data_type = DataType::Dictionary(
            Box::new(DataType::Int32),
            Box::new(field.data_type().clone()),
        );
        field.clone().with_data_type(data_type)
    } else {
        field.clone()
    }
}

static BUFFER_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    // Format 6's columns: the span's attribute lists are where `attributes` goes.
    let fields: Vec<Field> = FORMAT_6_FILE_SCHEMA
        .fields()
        .iter()
        .filter_map(|field| match buffer_packed_part(field.name()) {
            Some(Part::Names) => Some(Field::new(BUFFER_PACKED_SET.0, DataType::Binary, true)),
            Some(_) => None,
            None => Some(buffer_field(field)),
        })
        .collect();
    Arc::new(Schema::new(fields))
});

/// The schema of the rows the store buffers and logs before a flush: [`file_schema()`] with the
/// columns of shared values as dictionaries and a span's own attributes packed (see
/// [`rows_to_buffer`]). A flush writes files from it through [`buffer_to_file`].
pub fn buffer_schema() -> SchemaRef {
    BUFFER_SCHEMA.clone()
}

/// A batch of [`buffer_schema()`] as files hold it (of [`file_schema()`]): the dictionaries'
/// values a row, the span's attributes as lists.
pub fn from_buffer(batch: &RecordBatch) -> Result<RecordBatch, SchemaError> {
    unbuffer(batch, true)
}

/// A batch of [`buffer_schema()`] with the columns of [`file_schema()`], for a Parquet writer:
/// the span's attributes as lists, the dictionaries kept (the writer takes each value from
/// them as it would from a plain column).
pub fn buffer_to_file(batch: &RecordBatch) -> Result<RecordBatch, SchemaError> {
    unbuffer(batch, false)
}

fn unbuffer(batch: &RecordBatch, plain: bool) -> Result<RecordBatch, SchemaError> {
    let n_fields = FILE_SCHEMA.fields().len();
    let (mut fields, mut columns) = (Vec::with_capacity(n_fields), Vec::with_capacity(n_fields));
    let missing = |name: &str| SchemaError(format!("missing column `{name}`"));
    let mut attribute_values = None;
    for field in FILE_SCHEMA.fields() {
        match packed_part_of_file_column(field.name()) {
            Some(Part::Names) => {
                let packed = packed_column(batch, BUFFER_PACKED_SET.0)?;
                let (keys, values) = if plain {
                    let (keys, values) = packed::split(packed)?;
                    (Arc::new(keys) as ArrayRef, values)
                } else {
                    packed::split_shared(packed)?
                };
                columns.push(keys);
                attribute_values = Some(values);
            }
            Some(_) => {
                let values = attribute_values
                    .take()
                    .ok_or_else(|| missing(field.name()))?;
                columns.push(values);
            }
            None if field.name() == CODES_COLUMN => columns.push(pack_codes(batch)?),
            None if PLACE_COLUMNS.contains(&field.name().as_str()) => {
                let side = PLACE_COLUMNS
                    .iter()
                    .position(|column| column == field.name())
                    .expect("a place column");
                columns.push(pack_places(batch, side)?);
            }
            None => {
                let column = batch
                    .column_by_name(field.name())
                    .ok_or_else(|| missing(field.name()))?;
                let column = if plain && column.data_type() != field.data_type() {
                    arrow::compute::cast(column, field.data_type()).map_err(|error| {
                        SchemaError(format!("column `{}`: {error}", field.name()))
                    })?
                } else if zero_as_null(field.name()) {
                    // Here rather than in the buffer, whose rows a sort gathers first.
                    zeros_to_null(column)?
                } else {
                    column.clone()
                };
                columns.push(column);
            }
        }
        if !plain {
            let column = columns.last().expect("a column for each field");
            fields.push(buffer_field(field).with_data_type(column.data_type().clone()));
        }
    }
    let schema = if plain {
        file_schema()
    } else {
        Arc::new(Schema::new(fields))
    };
    RecordBatch::try_new(schema, columns).map_err(|error| SchemaError(error.to_string()))
}

/// For a column of [`file_schema()`] made of the buffer's packed span attributes: the key set
/// (as [`Part::Names`]) or the values' list.
fn packed_part_of_file_column(name: &str) -> Option<Part> {
    let keys = PACKED_SETS
        .iter()
        .find(|set| set.prefix == BUFFER_PACKED_SET.1)
        .expect("the span attributes are a packed set");
    if name == keys.column {
        Some(Part::Names)
    } else if name.strip_prefix(BUFFER_PACKED_SET.1) == Some("_values") {
        Some(Part::Values)
    } else {
        None
    }
}

/// A packed attribute set's column of `batch`.
fn packed_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a BinaryArray, SchemaError> {
    let packed = batch
        .column_by_name(name)
        .ok_or_else(|| SchemaError(format!("missing column `{name}`")))?;
    packed
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| {
            SchemaError(format!(
                "column `{name}` is {}, expected Binary",
                packed.data_type()
            ))
        })
}

/// A batch of [`schema()`] as the store buffers it (of [`buffer_schema()`]), as the write-ahead
/// logs of earlier versions hold rows.
pub fn to_buffer(batch: &RecordBatch) -> Result<RecordBatch, SchemaError> {
    // The buffer holds its columns as format 7's files do, zeros as numbers and each code
    // apart: a flush nulls the zeros and packs the codes once its sort has gathered the rows
    // (a gather of a column with nulls costs more).
    let file = to_file_of(batch, ZERO_AS_NULL_SINCE - 1)?;
    let mut columns = Vec::with_capacity(BUFFER_SCHEMA.fields().len());
    for field in BUFFER_SCHEMA.fields() {
        if field.name() == BUFFER_PACKED_SET.0 {
            let list =
                |part: &str| column::<ListArray>(batch, &format!("{}_{part}", BUFFER_PACKED_SET.1));
            columns.push(Arc::new(packed::pack(packed::Lists {
                names: list("names")?,
                values: list("values")?,
                types: list("types")?,
            })?) as ArrayRef);
            continue;
        }
        let column = file
            .column_by_name(field.name())
            .ok_or_else(|| SchemaError(format!("missing column `{}`", field.name())))?;
        columns.push(
            arrow::compute::cast(column, field.data_type())
                .map_err(|error| SchemaError(format!("column `{}`: {error}", field.name())))?,
        );
    }
    RecordBatch::try_new(buffer_schema(), columns).map_err(|error| SchemaError(error.to_string()))
}

/// A batch of an earlier version's buffer schema (the same columns, some of them held plainly
/// where this version holds a dictionary) as this version buffers it; `None` when the batch's
/// columns are not the buffer's.
pub fn recast_to_buffer(batch: &RecordBatch) -> Option<Result<RecordBatch, SchemaError>> {
    let fields = batch.schema_ref().fields();
    let same_columns = fields.len() == BUFFER_SCHEMA.fields().len()
        && fields
            .iter()
            .zip(BUFFER_SCHEMA.fields())
            .all(|(field, buffered)| {
                field.name() == buffered.name()
                    && (field.data_type() == buffered.data_type()
                        || buffer_field(field).data_type() == buffered.data_type())
            });
    if !same_columns {
        return None;
    }
    let columns = batch
        .columns()
        .iter()
        .zip(BUFFER_SCHEMA.fields())
        .map(|(column, field)| {
            arrow::compute::cast(column, field.data_type())
                .map_err(|error| SchemaError(format!("column `{}`: {error}", field.name())))
        })
        .collect::<Result<Vec<_>, _>>();
    Some(columns.and_then(|columns| {
        RecordBatch::try_new(buffer_schema(), columns)
            .map_err(|error| SchemaError(error.to_string()))
    }))
}

/// A DataFusion frame over buffered rows (of [`buffer_schema()`]) as one of [`schema()`], as
/// [`from_file_frame`] shows files.
pub fn from_buffer_frame(frame: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::prelude::{cast, col};
    // As a file of format 6: the span's attributes as lists, the resource's packed.
    let columns = FORMAT_6_FILE_SCHEMA
        .fields()
        .iter()
        .map(|field| match buffer_packed_part(field.name()) {
            Some(part) => UNPACK[part as usize]
                .call(vec![col(BUFFER_PACKED_SET.0)])
                .alias(field.name()),
            None if buffered_as_dictionary(field) => {
                cast(col(field.name()), field.data_type().clone()).alias(field.name())
            }
            None => col(field.name()),
        })
        .collect::<Vec<_>>();
    from_file_frame(frame.select(columns)?)
}

/// `batch` (of [`schema()`]) as a file holds it (of [`file_schema()`]): empty text null where
/// the file schema lets it be, sharing the batch's buffers (only the validity is new), the
/// resource attributes packed and the span attributes' key sets packed.
pub fn to_file(batch: &RecordBatch) -> Result<RecordBatch, SchemaError> {
    to_file_of(batch, FILE_FORMAT)
}

/// `batch` (of [`schema()`]) as a file of storage `format` (5 on) holds it (of
/// [`file_schema_of`]), as [`to_file`] for this version's; older formats for tests of reading
/// what earlier versions wrote.
pub fn to_file_of(batch: &RecordBatch, format: u32) -> Result<RecordBatch, SchemaError> {
    let file_schema = file_schema_of(format);
    let mut columns = Vec::with_capacity(file_schema.fields().len());
    for (array, field) in batch.columns().iter().zip(SCHEMA.fields()) {
        match packed_part(field.name(), format) {
            Some((set, Part::Names)) => {
                let list =
                    |part: &str| column::<ListArray>(batch, &format!("{}_{part}", set.prefix));
                let packed = if set.values {
                    packed::pack(packed::Lists {
                        names: list("names")?,
                        values: list("values")?,
                        types: list("types")?,
                    })?
                } else {
                    packed::pack_keys(list("names")?, list("types")?)?
                };
                columns.push(Arc::new(packed) as ArrayRef);
            }
            Some(_) => {}
            None => match (
                code_byte(field.name(), format),
                place_part(field.name(), format),
            ) {
                (Some(0), _) => columns.push(pack_codes(batch)?),
                (_, Some((side, 0))) => columns.push(pack_places(batch, side)?),
                (Some(_), _) | (_, Some(_)) => {}
                (None, None) => columns.push(to_file_column(field, array, format)?),
            },
        }
    }
    RecordBatch::try_new(file_schema, columns).map_err(|error| SchemaError(error.to_string()))
}

/// A column of [`schema()`] as a file of `format` holds it: empty text null where
/// [`empty_as_null`] says so, zero null where [`zero_as_null`] does.
fn to_file_column(field: &Field, column: &ArrayRef, format: u32) -> Result<ArrayRef, SchemaError> {
    if zero_as_null(field.name()) && format >= ZERO_AS_NULL_SINCE {
        zeros_to_null(column)
    } else {
        Ok(text_to_file(field, column))
    }
}

/// The zero (`false`) of a column [`zero_as_null`] names, as files' nulls stand for it.
fn zero_of(data_type: &DataType) -> ScalarValue {
    ScalarValue::new_zero(data_type)
        .expect("the columns files hold a zero of as null are numbers or booleans")
}

/// A number or boolean column with its zeros (`false`) null; its values stay as they are.
fn zeros_to_null(column: &ArrayRef) -> Result<ArrayRef, SchemaError> {
    let failed = |error: arrow::error::ArrowError| SchemaError(error.to_string());
    let zero = zero_of(column.data_type())
        .to_scalar()
        .map_err(|error| SchemaError(error.to_string()))?;
    let is_zero = arrow::compute::kernels::cmp::eq(column, &zero).map_err(failed)?;
    arrow::compute::nullif(column, &is_zero).map_err(failed)
}

/// A number or boolean column read from a file as [`schema()`] has it: null back to zero
/// (`false`).
fn nulls_to_zero(column: &ArrayRef) -> Result<ArrayRef, SchemaError> {
    if column.null_count() == 0 {
        return Ok(column.clone());
    }
    let failed = |error: arrow::error::ArrowError| SchemaError(error.to_string());
    let zero = zero_of(column.data_type())
        .to_scalar()
        .map_err(|error| SchemaError(error.to_string()))?;
    let is_null = arrow::compute::is_null(column).map_err(failed)?;
    arrow::compute::kernels::zip::zip(&is_null, &zero, column).map_err(failed)
}

/// A text column as a file holds it: empty text null where [`empty_as_null`] says so.
fn text_to_file(field: &Field, column: &ArrayRef) -> ArrayRef {
    let strings = match column.as_any().downcast_ref::<StringArray>() {
        Some(strings) if empty_as_null(field) && strings.null_count() == 0 => strings,
        _ => return column.clone(),
    };
    let offsets = strings.value_offsets();
    let valid = BooleanBuffer::collect_bool(strings.len(), |row| offsets[row + 1] != offsets[row]);
    let nulls = arrow::buffer::NullBuffer::new(valid);
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    Arc::new(StringArray::new(
        strings.offsets().clone(),
        strings.values().clone(),
        nulls,
    ))
}

/// A column read from a file as [`schema()`] has it: null text back to `''`. Shares the
/// column's buffers where its null rows are empty, as the Parquet reader leaves them.
fn from_file_column(field: &Field, column: &ArrayRef) -> Result<ArrayRef, SchemaError> {
    if zero_as_null(field.name()) {
        return nulls_to_zero(column);
    }
    let strings = match column.as_any().downcast_ref::<StringArray>() {
        Some(strings) if empty_as_null(field) && strings.null_count() > 0 => strings,
        _ => return Ok(column.clone()),
    };
    let offsets = strings.value_offsets();
    let nulls_empty = (0..strings.len())
        .filter(|&row| strings.is_null(row))
        .all(|row| offsets[row + 1] == offsets[row]);
    if nulls_empty {
        if let Ok(plain) =
            StringArray::try_new(strings.offsets().clone(), strings.values().clone(), None)
        {
            return Ok(Arc::new(plain));
        }
    }
    Ok(Arc::new(StringArray::from_iter_values(
        strings.iter().map(|value| value.unwrap_or_default()),
    )))
}

/// A batch read from a file of any format this version reads, whatever its columns' order, as
/// a batch of [`schema()`]: null text back to `''`, packed attribute sets back to lists.
pub fn from_file(batch: &RecordBatch) -> Result<RecordBatch, SchemaError> {
    // The lists of a packed set, unpacked together when its first list is asked for.
    let mut unpacked: Vec<(&str, [Option<ArrayRef>; 3])> = Vec::new();
    // Each end's place texts, unpacked together when the first is asked for.
    let mut places: [Vec<ArrayRef>; 2] = [Vec::new(), Vec::new()];
    let mut columns = Vec::with_capacity(SCHEMA.fields().len());
    for field in SCHEMA.fields() {
        if let Some(column) = batch.column_by_name(field.name()) {
            columns.push(from_file_column(field, column)?);
            continue;
        }
        let missing = || SchemaError(format!("missing column `{}`", field.name()));
        if let Some(byte) = code_byte(field.name(), FILE_FORMAT) {
            let codes = batch.column_by_name(CODES_COLUMN).ok_or_else(missing)?;
            columns.push(unpack_code(codes, byte)?);
            continue;
        }
        if let Some((side, index)) = place_part(field.name(), FILE_FORMAT) {
            if places[side].is_empty() {
                let packed = batch
                    .column_by_name(PLACE_COLUMNS[side])
                    .ok_or_else(missing)?;
                places[side] = unpack_places(packed, None)?;
            }
            columns.push(places[side][index].clone());
            continue;
        }
        let (set, part) = packed_part(field.name(), FILE_FORMAT).ok_or_else(missing)?;
        if !unpacked.iter().any(|(name, _)| *name == set.column) {
            let parts: &[Part] = if set.values {
                &Part::ALL
            } else {
                &[Part::Names, Part::Types]
            };
            let mut lists = [None, None, None];
            for (part, list) in parts
                .iter()
                .zip(packed::unpack(packed_column(batch, set.column)?, parts)?)
            {
                lists[*part as usize] = Some(list);
            }
            unpacked.push((set.column, lists));
        }
        let (_, lists) = unpacked
            .iter()
            .find(|(name, _)| *name == set.column)
            .expect("unpacked above");
        columns.push(lists[part as usize].clone().ok_or_else(missing)?);
    }
    RecordBatch::try_new(schema(), columns).map_err(|error| SchemaError(error.to_string()))
}

/// A DataFusion frame over files (of any [`file_schema_of`]) as one of [`schema()`]: null text
/// shown as `''`, packed attribute sets as their lists, every other column as it is.
pub fn from_file_frame(frame: DataFrame) -> datafusion::error::Result<DataFrame> {
    use datafusion::functions::expr_fn::coalesce;
    use datafusion::logical_expr::{binary_expr, Operator};
    use datafusion::prelude::{cast, col, lit};
    let has = |name: &str| frame.schema().has_column_with_unqualified_name(name);
    let columns = SCHEMA
        .fields()
        .iter()
        .map(|field| {
            if let Some((side, index)) =
                place_part(field.name(), FILE_FORMAT).filter(|_| !has(field.name()))
            {
                return UNPACK_PLACE[index]
                    .call(vec![col(PLACE_COLUMNS[side])])
                    .alias(field.name());
            }
            if empty_as_null(field) {
                return coalesce(vec![col(field.name()), lit("")]).alias(field.name());
            }
            if zero_as_null(field.name()) {
                let zero = lit(zero_of(field.data_type()));
                return coalesce(vec![col(field.name()), zero]).alias(field.name());
            }
            if let Some(byte) = code_byte(field.name(), FILE_FORMAT).filter(|_| !has(field.name()))
            {
                let shifted = binary_expr(
                    col(CODES_COLUMN),
                    Operator::BitwiseShiftRight,
                    lit(8 * byte as u64),
                );
                let code = binary_expr(shifted, Operator::BitwiseAnd, lit(0xff_u64));
                return cast(code, DataType::UInt8).alias(field.name());
            }
            match packed_part(field.name(), FILE_FORMAT) {
                Some((set, part)) if !has(field.name()) => UNPACK[part as usize]
                    .call(vec![col(set.column)])
                    .alias(field.name()),
                _ => col(field.name()),
            }
        })
        .collect::<Vec<_>>();
    frame.select(columns)
}

/// The functions that give SQL over files the lists of a packed set, one for each list.
static UNPACK: LazyLock<[ScalarUDF; 3]> = LazyLock::new(|| {
    Part::ALL.map(|part| {
        ScalarUDF::new_from_impl(Unpack {
            part,
            name: format!("unpack_attribute_{}", part.name()),
            signature: Signature::exact(
                vec![DataType::Binary],
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    })
});

/// The functions that give SQL over files the texts of a packed place, one for each text.
static UNPACK_PLACE: LazyLock<[ScalarUDF; PLACE_TEXTS.len()]> = LazyLock::new(|| {
    std::array::from_fn(|index| {
        ScalarUDF::new_from_impl(UnpackPlace {
            index,
            name: format!("unpack_place_{}", PLACE_TEXTS[index]),
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![place_type()]),
                    TypeSignature::Exact(vec![DataType::Binary]),
                ],
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    })
});

/// One text of a packed place ([`PLACE_COLUMNS`]).
#[derive(Debug, PartialEq, Eq, Hash)]
struct UnpackPlace {
    index: usize,
    name: String,
    signature: Signature,
}

impl ScalarUDFImpl for UnpackPlace {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        use datafusion::common::DataFusionError;
        let [packed] = args.args.as_slice() else {
            return Err(DataFusionError::Internal(format!(
                "{} takes one argument",
                self.name
            )));
        };
        let is_scalar = matches!(packed, ColumnarValue::Scalar(_));
        let packed = packed.to_array(args.number_rows)?;
        let text = unpack_places(&packed, Some(self.index))
            .map_err(|error| DataFusionError::Execution(error.0))?
            .pop()
            .expect("the one text asked for");
        Ok(if is_scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&text, 0)?)
        } else {
            ColumnarValue::Array(text)
        })
    }
}

/// One list of a packed attribute set (see [`crate::packed`]).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Unpack {
    part: Part,
    name: String,
    signature: Signature,
}

impl ScalarUDFImpl for Unpack {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(self.part.data_type())
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
        use datafusion::common::DataFusionError;
        let packed = args
            .args
            .first()
            .ok_or_else(|| DataFusionError::Internal(format!("{} takes one argument", self.name)))?
            .to_array(args.number_rows)?;
        let packed = packed
            .as_any()
            .downcast_ref::<BinaryArray>()
            .ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "{} takes Binary, not {}",
                    self.name,
                    packed.data_type()
                ))
            })?;
        let mut lists = packed::unpack(packed, &[self.part])
            .map_err(|error| DataFusionError::Execution(error.0))?;
        Ok(ColumnarValue::Array(lists.remove(0)))
    }
}

// ---------------------------------------------------------------------------------------------
// Rows to a batch.

/// The place columns of one end. A batch holds few distinct places (rows share them), so each
/// text column is a dictionary of the distinct places' values with one key a row, shared by the
/// thirteen text columns: one lookup a row for the fifteen columns.
fn place_columns(
    columns: &mut Vec<ArrayRef>,
    (keys, distinct): (ScalarBuffer<i32>, Vec<Arc<Place>>),
) {
    for (_, field) in Place::TEXT_COLUMNS {
        columns.push(dictionary(
            &keys,
            Arc::new(StringArray::from_iter_values(
                distinct.iter().map(|place| field(place)),
            )),
        ));
    }
    let mut take = |values: ArrayRef| {
        columns.push(
            arrow::compute::take(&values, &Int32Array::new(keys.clone(), None), None)
                .expect("every key indexes a value"),
        );
    };
    take(Arc::new(UInt8Array::from_iter_values(
        distinct
            .iter()
            .map(|place| place.auto_instance_type.as_u8()),
    )));
    take(Arc::new(UInt8Array::from_iter_values(
        distinct.iter().map(|place| place.auto_service_type.as_u8()),
    )));
    columns.push(dictionary(
        &keys,
        Arc::new(StringArray::from_iter_values(
            distinct.iter().map(|place| place.labels_json()),
        )),
    ));
}

/// A dictionary column of `values` by `keys`, each key built as an index into `values`.
///
/// Without the check `DictionaryArray::try_new` makes of every key: a write builds forty-three
/// dictionary columns over a handful of shared key buffers, and checking each column's keys
/// again cost more than building them.
fn dictionary(keys: &ScalarBuffer<i32>, values: ArrayRef) -> ArrayRef {
    let keys = Int32Array::new(keys.clone(), None);
    debug_assert!(keys
        .values()
        .iter()
        .all(|&key| key >= 0 && (key as usize) < values.len()));
    // SAFETY: every caller builds `keys` as indexes of `values` (`SharedKeys` numbers the
    // distinct objects it lists, `RunDictionary` and `AddressDictionary` the values they
    // append).
    Arc::new(unsafe { DictionaryArray::<Int32Type>::new_unchecked(keys, values) })
}

/// What a span's end adds to its start plus its duration; wrapping, so that any three values
/// come back exactly from [`end_time`].
fn end_time_offset(row: &SpanRow) -> i64 {
    row.end_time
        .wrapping_sub(row.start_time)
        .wrapping_sub(row.response_duration as i64)
}

fn end_time(start_time: i64, response_duration: u64, offset: i64) -> i64 {
    start_time
        .wrapping_add(response_duration as i64)
        .wrapping_add(offset)
}

/// The rows as one record batch of [`schema()`]. Never fails.
pub fn rows_to_batch(rows: &[SpanRow]) -> RecordBatch {
    from_buffer(&rows_to_buffer(rows))
        .and_then(|batch| from_file(&batch))
        .expect("the columns are built to match the schema")
}

/// The rows as the store buffers them: a record batch of [`buffer_schema()`]. Never fails.
pub fn rows_to_buffer(rows: &[SpanRow]) -> RecordBatch {
    let mut builder = BufferBuilder::new(rows);
    for row in rows {
        builder.append(row);
    }
    builder.finish()
}

/// The number of text columns a buffer builder sizes ([`TextSizes`]): ten text columns and the
/// packed span attributes.
const N_SIZED: usize = 11;

/// The bytes of each sized column of a write's rows: ten text columns and the packed span
/// attributes, in the order [`BufferBuilder::with_sizes`] takes them.
fn text_sizes(rows: &[SpanRow]) -> [usize; N_SIZED] {
    let mut sizes = [0usize; N_SIZED];
    for row in rows {
        let lengths = [
            row.trace_state.len(),
            row.endpoint.len(),
            row.app_service.len(),
            row.l7_protocol_str.len(),
            row.version.len(),
            row.request_type.len(),
            row.request_domain.len(),
            row.request_resource.len(),
            row.response_exception.len(),
            row.status_message.len(),
            row.attributes
                .iter()
                .map(|attribute| attribute.key.len() + 16)
                .sum::<usize>(),
        ];
        for (total, length) in sizes.iter_mut().zip(lengths) {
            *total += length;
        }
    }
    sizes
}

/// What the rows of the writes before held a row, for each sized column: where a write is built
/// as its rows are mapped, with none of them seen yet, its builders start at the size the last
/// write's rows would have needed, and rarely grow (each growth a copy of what they hold).
#[derive(Debug, Default)]
pub struct TextSizes {
    /// Bytes a row, times 16 (a running figure, a quarter of it the last write).
    per_row: [std::sync::atomic::AtomicUsize; N_SIZED],
}

impl TextSizes {
    /// The most a column's builder is given before its first row.
    const MAX_RESERVED: usize = 16 << 20;

    /// The bytes `n_rows` rows are expected to need in each sized column.
    fn for_rows(&self, n_rows: usize) -> [usize; N_SIZED] {
        let per_row =
            |slot: &std::sync::atomic::AtomicUsize| slot.load(std::sync::atomic::Ordering::Relaxed);
        // A sixteenth more than the figure, for a write with longer text than the last; past
        // the cap, a column grows as it fills rather than reserve for a guess.
        self.per_row.each_ref().map(|slot| {
            let expected = per_row(slot).saturating_mul(n_rows).div_ceil(16);
            (expected + expected / 16).min(Self::MAX_RESERVED)
        })
    }

    /// Takes a write's bytes into the running figure.
    fn record(&self, n_rows: usize, bytes: [usize; N_SIZED]) {
        if n_rows == 0 {
            return;
        }
        for (slot, bytes) in self.per_row.iter().zip(bytes) {
            let last = bytes * 16 / n_rows;
            let before = slot.load(std::sync::atomic::Ordering::Relaxed);
            let figure = if before == 0 {
                last
            } else {
                (before * 3 + last) / 4
            };
            slot.store(figure, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The buffer's columns, built a row at a time: each row and its text are read once, while
/// they are in cache, where a pass a column read a write's rows (some 600 bytes each plus
/// their text, more than a core's cache) some ninety times over (BENCHMARKS.md).
pub struct BufferBuilder {
    time: Vec<i64>,
    start_time: Vec<i64>,
    end_time_offset: Vec<i64>,
    trace_id: BinaryBuilder,
    span_id: BinaryBuilder,
    parent_span_id: BinaryBuilder,
    span_kind: Vec<u8>,
    observation_point: StringBuilder,
    trace_state: StringBuilder,
    flags: Vec<u32>,
    endpoint: StringBuilder,
    app_service: StringBuilder,
    app_instance: RunDictionary,
    signal_source: Vec<u16>,
    agent_id: RunDictionary,
    l7_protocol: Vec<u8>,
    l7_protocol_str: StringBuilder,
    version: StringBuilder,
    is_tls: BooleanBufferBuilder,
    protocol: Vec<u8>,
    request_type: StringBuilder,
    request_domain: StringBuilder,
    request_resource: StringBuilder,
    request_length: Int64Builder,
    response_length: Int64Builder,
    response_code: Int32Builder,
    response_status: Vec<u8>,
    response_exception: StringBuilder,
    status_code: Vec<u8>,
    status_message: StringBuilder,
    response_duration: Vec<u64>,
    ip_0: AddressDictionary,
    ip_1: AddressDictionary,
    client_port: Vec<u16>,
    server_port: Vec<u16>,
    places: [SharedKeys<Place>; 2],
    scope_name: RunDictionary,
    scope_version: RunDictionary,
    resource: SharedKeys<ResourceTags>,
    attributes: BinaryBuilder,
    resource_attributes: SharedKeys<[Attribute]>,
    events: StringBuilder,
    links: StringBuilder,
    dropped_attributes_count: Vec<u32>,
    dropped_events_count: Vec<u32>,
    dropped_links_count: Vec<u32>,
    /// Scratch for the text and JSON of attribute values that are not text.
    text: String,
    json: Vec<u8>,
}

impl BufferBuilder {
    /// Builders sized for `rows`: the text of each column summed first, so that no builder
    /// grows (and copies what it holds) on the way.
    fn new(rows: &[SpanRow]) -> BufferBuilder {
        BufferBuilder::with_sizes(rows.len(), text_sizes(rows))
    }

    /// Builders for about `n_rows` rows whose text is expected to come to what the writes
    /// before held a row ([`TextSizes`]).
    pub fn expecting(n_rows: usize, sizes: &TextSizes) -> BufferBuilder {
        BufferBuilder::with_sizes(n_rows, sizes.for_rows(n_rows))
    }

    /// Builders for `n` rows of `text` bytes in each sized column ([`text_sizes`]).
    fn with_sizes(n: usize, text: [usize; N_SIZED]) -> BufferBuilder {
        let strings = |bytes: usize| StringBuilder::with_capacity(n, bytes);
        BufferBuilder {
            time: Vec::with_capacity(n),
            start_time: Vec::with_capacity(n),
            end_time_offset: Vec::with_capacity(n),
            trace_id: BinaryBuilder::with_capacity(n, n * 16),
            span_id: BinaryBuilder::with_capacity(n, n * 8),
            parent_span_id: BinaryBuilder::with_capacity(n, n * 8),
            span_kind: Vec::with_capacity(n),
            observation_point: strings(n * 10),
            trace_state: strings(text[0]),
            flags: Vec::with_capacity(n),
            endpoint: strings(text[1]),
            app_service: strings(text[2]),
            app_instance: RunDictionary::new(n),
            signal_source: Vec::with_capacity(n),
            agent_id: RunDictionary::new(n),
            l7_protocol: Vec::with_capacity(n),
            l7_protocol_str: strings(text[3]),
            version: strings(text[4]),
            is_tls: BooleanBufferBuilder::new(n),
            protocol: Vec::with_capacity(n),
            request_type: strings(text[5]),
            request_domain: strings(text[6]),
            request_resource: strings(text[7]),
            request_length: Int64Builder::with_capacity(n),
            response_length: Int64Builder::with_capacity(n),
            response_code: Int32Builder::with_capacity(n),
            response_status: Vec::with_capacity(n),
            response_exception: strings(text[8]),
            status_code: Vec::with_capacity(n),
            status_message: strings(text[9]),
            response_duration: Vec::with_capacity(n),
            ip_0: AddressDictionary::default(),
            ip_1: AddressDictionary::default(),
            client_port: Vec::with_capacity(n),
            server_port: Vec::with_capacity(n),
            places: [SharedKeys::new(n), SharedKeys::new(n)],
            scope_name: RunDictionary::new(n),
            scope_version: RunDictionary::new(n),
            resource: SharedKeys::new(n),
            attributes: BinaryBuilder::with_capacity(n, text[10]),
            resource_attributes: SharedKeys::new(n),
            events: strings(n * 2),
            links: strings(n * 2),
            dropped_attributes_count: Vec::with_capacity(n),
            dropped_events_count: Vec::with_capacity(n),
            dropped_links_count: Vec::with_capacity(n),
            text: String::new(),
            json: Vec::new(),
        }
    }

    /// How many rows it holds.
    pub fn len(&self) -> usize {
        self.time.len()
    }

    pub fn is_empty(&self) -> bool {
        self.time.is_empty()
    }

    /// The buffer, its text's sizes taken into `sizes` for the writes after it.
    pub fn finish_noting(self, sizes: &TextSizes) -> RecordBatch {
        let bytes = [
            self.trace_state.values_slice().len(),
            self.endpoint.values_slice().len(),
            self.app_service.values_slice().len(),
            self.l7_protocol_str.values_slice().len(),
            self.version.values_slice().len(),
            self.request_type.values_slice().len(),
            self.request_domain.values_slice().len(),
            self.request_resource.values_slice().len(),
            self.response_exception.values_slice().len(),
            self.status_message.values_slice().len(),
            self.attributes.values_slice().len(),
        ];
        sizes.record(self.len(), bytes);
        self.finish()
    }

    pub fn append(&mut self, row: &SpanRow) {
        self.time.push(row.time);
        self.start_time.push(row.start_time);
        self.end_time_offset.push(end_time_offset(row));
        self.trace_id.append_value(row.trace_id.0);
        self.span_id.append_value(row.span_id.0);
        match &row.parent_span_id {
            Some(id) => self.parent_span_id.append_value(id.0),
            None => self.parent_span_id.append_null(),
        }
        self.span_kind.push(row.span_kind.as_u8());
        self.observation_point
            .append_value(row.observation_point.as_str());
        self.trace_state.append_value(&row.trace_state);
        self.flags.push(row.flags);
        self.endpoint.append_value(&row.endpoint);
        self.app_service.append_value(&row.app_service);
        self.app_instance.append(&row.app_instance);
        self.signal_source.push(row.signal_source);
        self.agent_id.append(&row.agent_id);
        self.l7_protocol.push(row.l7_protocol.as_u8());
        self.l7_protocol_str.append_value(&row.l7_protocol_str);
        self.version.append_value(&row.version);
        self.is_tls.append(row.is_tls);
        self.protocol.push(row.protocol);
        self.request_type.append_value(&row.request_type);
        self.request_domain.append_value(&row.request_domain);
        self.request_resource.append_value(&row.request_resource);
        self.request_length.append_option(row.request_length);
        self.response_length.append_option(row.response_length);
        self.response_code.append_option(row.response_code);
        self.response_status.push(row.response_status.as_u8());
        self.response_exception
            .append_value(&row.response_exception);
        self.status_code.push(row.status_code);
        self.status_message.append_value(&row.status_message);
        self.response_duration.push(row.response_duration);
        self.ip_0.append(row.ip_0);
        self.ip_1.append(row.ip_1);
        self.client_port.push(row.client_port);
        self.server_port.push(row.server_port);
        self.places[0].append(&row.place_0);
        self.places[1].append(&row.place_1);
        self.scope_name.append(&row.scope_name);
        self.scope_version.append(&row.scope_version);
        self.resource.append(&row.resource);
        if row.attributes.is_empty() {
            self.attributes.append_null();
        } else {
            // Packed into the value being built, which an empty append then closes.
            packed::pack_attributes(
                &row.attributes,
                &mut self.attributes,
                &mut self.text,
                &mut self.json,
            );
            self.attributes.append_value([]);
        }
        self.resource_attributes.append(&row.resource_attributes);
        append_json(&mut self.events, &mut self.json, |json| {
            text::write_events_json(&row.events, json)
        });
        append_json(&mut self.links, &mut self.json, |json| {
            text::write_links_json(&row.links, json)
        });
        self.dropped_attributes_count
            .push(row.dropped_attributes_count);
        self.dropped_events_count.push(row.dropped_events_count);
        self.dropped_links_count.push(row.dropped_links_count);
    }

    pub fn finish(mut self) -> RecordBatch {
        fn strings(mut builder: StringBuilder) -> ArrayRef {
            Arc::new(builder.finish())
        }
        fn bytes(mut builder: BinaryBuilder) -> ArrayRef {
            Arc::new(builder.finish())
        }
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(BUFFER_SCHEMA.fields().len());
        columns.push(Arc::new(
            TimestampSecondArray::from(self.time).with_timezone(UTC),
        ));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(self.start_time).with_timezone(UTC),
        ));
        columns.push(Arc::new(Int64Array::from(self.end_time_offset)));
        columns.push(bytes(self.trace_id));
        columns.push(bytes(self.span_id));
        columns.push(bytes(self.parent_span_id));
        columns.push(Arc::new(UInt8Array::from(self.span_kind)));
        columns.push(strings(self.observation_point));
        columns.push(strings(self.trace_state));
        columns.push(Arc::new(UInt32Array::from(self.flags)));
        columns.push(strings(self.endpoint));
        columns.push(strings(self.app_service));
        columns.push(self.app_instance.finish());
        columns.push(Arc::new(UInt16Array::from(self.signal_source)));
        columns.push(self.agent_id.finish());
        columns.push(Arc::new(UInt8Array::from(self.l7_protocol)));
        columns.push(strings(self.l7_protocol_str));
        columns.push(strings(self.version));
        columns.push(Arc::new(BooleanArray::new(self.is_tls.finish(), None)));
        columns.push(Arc::new(UInt8Array::from(self.protocol)));
        columns.push(strings(self.request_type));
        columns.push(strings(self.request_domain));
        columns.push(strings(self.request_resource));
        columns.push(Arc::new(self.request_length.finish()));
        columns.push(Arc::new(self.response_length.finish()));
        columns.push(Arc::new(self.response_code.finish()));
        columns.push(Arc::new(UInt8Array::from(self.response_status)));
        columns.push(strings(self.response_exception));
        columns.push(Arc::new(UInt8Array::from(self.status_code)));
        columns.push(strings(self.status_message));
        columns.push(Arc::new(UInt64Array::from(self.response_duration)));
        columns.push(self.ip_0.finish());
        columns.push(self.ip_1.finish());
        columns.push(Arc::new(UInt16Array::from(self.client_port)));
        columns.push(Arc::new(UInt16Array::from(self.server_port)));
        for places in self.places {
            place_columns(&mut columns, places.finish());
        }
        columns.push(self.scope_name.finish());
        columns.push(self.scope_version.finish());
        let (keys, resources) = self.resource.finish();
        for (_, field) in RESOURCE_COLUMNS {
            columns.push(dictionary(
                &keys,
                Arc::new(StringArray::from_iter_values(
                    resources.iter().map(|resource| field(resource)),
                )),
            ));
        }
        columns.push(bytes(self.attributes));
        let (keys, sets) = self.resource_attributes.finish();
        columns.push(dictionary(
            &keys,
            Arc::new(packed_sets(sets.iter().map(|set| &set[..]), &mut self.json)),
        ));
        columns.push(strings(self.events));
        columns.push(strings(self.links));
        columns.push(Arc::new(UInt32Array::from(self.dropped_attributes_count)));
        columns.push(Arc::new(UInt32Array::from(self.dropped_events_count)));
        columns.push(Arc::new(UInt32Array::from(self.dropped_links_count)));
        let mut key_nulls = KeyNulls::default();
        let columns = columns
            .iter()
            .zip(BUFFER_SCHEMA.fields())
            .map(|(column, field)| {
                with_allocated_values(&empty_to_null(field, column, &mut key_nulls))
            })
            .collect();
        RecordBatch::try_new(buffer_schema(), columns)
            .expect("the columns are built to match the schema")
    }
}

/// A dictionary column of addresses as text, each distinct one written once, found by a hash
/// of the address rather than formatted at every row: a write's spans come from and call a
/// few hundred addresses. No address is a null value, which the buffer makes a null key.
#[derive(Default)]
struct AddressDictionary {
    index: std::collections::HashMap<Option<IpAddr>, i32, foldhash::fast::RandomState>,
    values: StringBuilder,
    keys: Vec<i32>,
}

impl AddressDictionary {
    fn append(&mut self, ip: Option<IpAddr>) {
        let AddressDictionary {
            index,
            values,
            keys,
        } = self;
        let key = *index.entry(ip).or_insert_with(|| {
            match ip {
                Some(ip) => values.append_value(IpText::new(ip).as_str()),
                None => values.append_null(),
            }
            values.offsets_slice().len() as i32 - 2
        });
        keys.push(key);
    }

    fn finish(mut self) -> ArrayRef {
        dictionary(
            &ScalarBuffer::from(self.keys),
            Arc::new(self.values.finish()),
        )
    }
}

/// A JSON value: `write` writes it into `json`, or returns false for `[]`.
fn append_json(
    builder: &mut StringBuilder,
    json: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> bool,
) {
    json.clear();
    if write(json) {
        builder.append_value(std::str::from_utf8(json).expect("JSON is UTF-8"));
    } else {
        builder.append_value("[]");
    }
}

/// A dictionary column of text that runs of rows share: each value once a run of rows that
/// hold it, without a lookup (a value that comes back after another is held again).
struct RunDictionary {
    values: StringBuilder,
    keys: Vec<i32>,
}

impl RunDictionary {
    fn new(n_rows: usize) -> RunDictionary {
        RunDictionary {
            values: StringBuilder::new(),
            keys: Vec::with_capacity(n_rows),
        }
    }

    fn append(&mut self, value: &str) {
        let offsets = self.values.offsets_slice();
        let n_values = offsets.len() - 1;
        let last = match n_values {
            0 => None,
            _ => Some(&self.values.values_slice()[offsets[n_values - 1] as usize..]),
        };
        if last != Some(value.as_bytes()) {
            self.values.append_value(value);
        }
        self.keys.push(self.values.offsets_slice().len() as i32 - 2);
    }

    fn finish(mut self) -> ArrayRef {
        dictionary(
            &ScalarBuffer::from(self.keys),
            Arc::new(self.values.finish()),
        )
    }
}

/// Each row's index among the distinct objects it holds (told apart by address: rows share
/// them through `Arc`s), and those objects.
struct SharedKeys<T: ?Sized> {
    index: std::collections::HashMap<*const u8, i32, foldhash::fast::RandomState>,
    distinct: Vec<Arc<T>>,
    keys: Vec<i32>,
    /// The last object's address and key: rows of one resource mostly come one after another.
    last: Option<(*const u8, i32)>,
}

impl<T: ?Sized> SharedKeys<T> {
    fn new(n_rows: usize) -> SharedKeys<T> {
        SharedKeys {
            index: Default::default(),
            distinct: Vec::new(),
            keys: Vec::with_capacity(n_rows),
            last: None,
        }
    }

    fn append(&mut self, shared: &Arc<T>) {
        let address = Arc::as_ptr(shared) as *const u8;
        let key = match self.last {
            Some((last, key)) if last == address => key,
            _ => {
                let distinct = &mut self.distinct;
                let key = *self.index.entry(address).or_insert_with(|| {
                    distinct.push(shared.clone());
                    (distinct.len() - 1) as i32
                });
                self.last = Some((address, key));
                key
            }
        };
        self.keys.push(key);
    }

    fn finish(self) -> (ScalarBuffer<i32>, Vec<Arc<T>>) {
        (ScalarBuffer::from(self.keys), self.distinct)
    }
}

/// Each set packed ([`crate::packed`]) as one value; null where a set is empty.
fn packed_sets<'a>(
    sets: impl Iterator<Item = &'a [Attribute]> + Clone,
    json: &mut Vec<u8>,
) -> BinaryArray {
    let (mut n_sets, mut bytes) = (0, 0);
    for set in sets.clone() {
        n_sets += 1;
        bytes += set
            .iter()
            .map(|attribute| attribute.key.len() + 16)
            .sum::<usize>();
    }
    let mut values = BinaryBuilder::with_capacity(n_sets, bytes);
    let (mut value, mut text) = (Vec::with_capacity(512), String::new());
    for set in sets {
        if set.is_empty() {
            values.append_null();
        } else {
            value.clear();
            packed::pack_attributes(set, &mut value, &mut text, json);
            values.append_value(&value);
        }
    }
    values.finish()
}

/// `column` with its text or bytes in an allocation of their own where every value is empty.
///
/// Arrow gives a column whose values are all empty a values buffer of no bytes at a dangling
/// address, where each empty value points. Comparing such a value (as a Parquet writer does to
/// intern it and to keep page statistics, or a sort) calls `memcmp` with a length of zero, and
/// glibc's AVX-512 `memcmp` loads from the address under an empty mask; at an unmapped address
/// that costs the processor a microcode assist of hundreds of cycles. A text column empty in
/// every row (an environment, or Kubernetes names outside Kubernetes) then cost a flush 0.2 µs a
/// row, ten times a column of short text; with an allocation behind it, it costs what any other
/// does (BENCHMARKS.md).
pub(crate) fn with_allocated_values(column: &ArrayRef) -> ArrayRef {
    fn allocated<T: arrow::datatypes::ByteArrayType<Offset = i32>>(
        column: &ArrayRef,
        array: &arrow::array::GenericByteArray<T>,
    ) -> ArrayRef {
        if !array.values().is_empty() || array.is_empty() {
            return column.clone();
        }
        let values = arrow::buffer::Buffer::from_vec(Vec::<u8>::with_capacity(64));
        Arc::new(arrow::array::GenericByteArray::<T>::new(
            array.offsets().clone(),
            values,
            array.nulls().cloned(),
        ))
    }
    match column.data_type() {
        DataType::Utf8 => allocated(column, column.as_string::<i32>()),
        DataType::Binary => allocated(column, column.as_binary::<i32>()),
        DataType::Dictionary(key, _) if key.as_ref() == &DataType::Int32 => {
            let dictionary = column.as_dictionary::<Int32Type>();
            let values = with_allocated_values(dictionary.values());
            if Arc::ptr_eq(&values, dictionary.values()) {
                return column.clone();
            }
            Arc::new(
                DictionaryArray::<Int32Type>::try_new(dictionary.keys().clone(), values)
                    .expect("the same keys over the same values"),
            )
        }
        _ => column.clone(),
    }
}

/// `column` (text or bytes) as a dictionary of its runs, a value for each run of rows that hold
/// the same one, where it has at most half as many runs as rows; else `column` as it is.
///
/// A file's rows are sorted by service, endpoint and start time, so the columns that follow the
/// endpoint (its protocol, request type and domain, a span's attribute key set, the empty
/// events and links) come in long runs. The Parquet writer interns a plain column's value at
/// every row, a hash and a comparison of its bytes; it interns a dictionary's value once. A run
/// costs one comparison with the row before instead.
pub(crate) fn runs_as_dictionary(column: &ArrayRef) -> ArrayRef {
    fn of<T: arrow::datatypes::ByteArrayType<Offset = i32>>(
        column: &ArrayRef,
        array: &arrow::array::GenericByteArray<T>,
    ) -> ArrayRef {
        let n = array.len();
        let mut keys: Vec<i32> = Vec::with_capacity(n);
        let mut firsts: Vec<usize> = Vec::new();
        let mut last: Option<&[u8]> = None;
        for row in 0..n {
            if array.is_valid(row) {
                let value: &[u8] = array.value(row).as_ref();
                if last != Some(value) {
                    firsts.push(row);
                    last = Some(value);
                }
            }
            keys.push(firsts.len().saturating_sub(1) as i32);
            if firsts.len() * 2 > n {
                return column.clone();
            }
        }
        let values = arrow::array::GenericByteArray::<T>::from_iter_values(
            firsts.iter().map(|&row| array.value(row)),
        );
        let keys = Int32Array::new(keys.into(), array.nulls().cloned());
        // SAFETY: every key of a valid row is the index of its run's value, below `firsts.len()`;
        // a null row's key is a valid index or, with no value at all, masked by its null.
        Arc::new(unsafe { DictionaryArray::<Int32Type>::new_unchecked(keys, Arc::new(values)) })
    }
    match column.data_type() {
        DataType::Utf8 => of(column, column.as_string::<i32>()),
        DataType::Binary => of(column, column.as_binary::<i32>()),
        _ => column.clone(),
    }
}

/// A column as the buffer holds it: empty text null where files hold it so ([`empty_as_null`]),
/// for plain text and for dictionaries of text; a packed set's null value a null key.
fn empty_to_null(field: &Field, column: &ArrayRef, key_nulls: &mut KeyNulls) -> ArrayRef {
    let row_field = SCHEMA.field_with_name(field.name()).ok();
    let DataType::Dictionary(_, value_type) = field.data_type() else {
        return match row_field {
            Some(row_field) => text_to_file(row_field, column),
            None => column.clone(),
        };
    };
    let dictionary = column
        .as_any()
        .downcast_ref::<DictionaryArray<Int32Type>>()
        .expect("dictionary columns are built with Int32 keys");
    let values = dictionary.values();
    let absent: Vec<bool> = match value_type.as_ref() {
        DataType::Utf8 if row_field.is_some_and(empty_as_null) => {
            let text = values.as_any().downcast_ref::<StringArray>();
            let text = text.expect("a text dictionary");
            (0..text.len())
                .map(|index| text.value(index).is_empty())
                .collect()
        }
        _ => (0..values.len())
            .map(|index| values.is_null(index))
            .collect(),
    };
    if !absent.contains(&true) {
        return column.clone();
    }
    let keys = dictionary.keys().values();
    let nulls = key_nulls.of(keys, absent);
    let keys = Int32Array::new(keys.clone(), Some(nulls));
    // SAFETY: the keys are those of the valid dictionary `column`, over the same values, with
    // more of them null.
    Arc::new(unsafe { DictionaryArray::<Int32Type>::new_unchecked(keys, values.clone()) })
}

/// The null buffers of a buffer's dictionary columns by their keys and which of their values
/// are absent: the columns of a place, or of the resource's tags, share their keys and are
/// mostly absent for the same values (an unknown peer has no pod, no node, no workload), so
/// each such null buffer is built once rather than once a column.
#[derive(Default)]
struct KeyNulls {
    built: Vec<(*const i32, Vec<bool>, arrow::buffer::NullBuffer)>,
}

impl KeyNulls {
    fn of(&mut self, keys: &ScalarBuffer<i32>, absent: Vec<bool>) -> arrow::buffer::NullBuffer {
        let address = keys.as_ptr();
        let known = self
            .built
            .iter()
            .find(|(keys, known, _)| *keys == address && *known == absent);
        if let Some((_, _, nulls)) = known {
            return nulls.clone();
        }
        let nulls = if absent.iter().all(|absent| *absent) {
            arrow::buffer::NullBuffer::new_null(keys.len())
        } else {
            let valid = BooleanBuffer::collect_bool(keys.len(), |row| !absent[keys[row] as usize]);
            arrow::buffer::NullBuffer::new(valid)
        };
        self.built.push((address, absent, nulls.clone()));
        nulls
    }
}

// ---------------------------------------------------------------------------------------------
// A batch to rows.

/// A column by name, of the array type `T`; non-nullable columns must hold no nulls.
pub(crate) fn column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a T, SchemaError> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| SchemaError(format!("missing column `{name}`")))?;
    let field = SCHEMA
        .field_with_name(name)
        .expect("only schema columns are looked up");
    let typed = array.as_any().downcast_ref::<T>().ok_or_else(|| {
        SchemaError(format!(
            "column `{name}` is {}, expected {}",
            array.data_type(),
            field.data_type()
        ))
    })?;
    if !field.is_nullable() && array.null_count() > 0 {
        return Err(SchemaError(format!("column `{name}` holds nulls")));
    }
    Ok(typed)
}

/// A `List<T>` column: the list array and its values.
fn list_column<'a, T: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<(&'a ListArray, &'a T), SchemaError> {
    let list = column::<ListArray>(batch, name)?;
    let values = list.values().as_any().downcast_ref::<T>().ok_or_else(|| {
        SchemaError(format!(
            "column `{name}` is {}, expected {}",
            list.data_type(),
            SCHEMA
                .field_with_name(name)
                .expect("a schema column")
                .data_type()
        ))
    })?;
    Ok((list, values))
}

fn list_range(list: &ListArray, row: usize) -> Range<usize> {
    let offsets = list.value_offsets();
    offsets[row] as usize..offsets[row + 1] as usize
}

/// The three columns of one attribute set.
struct AttributeColumns<'a> {
    prefix: &'static str,
    names: (&'a ListArray, &'a StringArray),
    values: (&'a ListArray, &'a StringArray),
    types: (&'a ListArray, &'a UInt8Array),
}

impl<'a> AttributeColumns<'a> {
    fn get(batch: &'a RecordBatch, prefix: &'static str) -> Result<Self, SchemaError> {
        Ok(AttributeColumns {
            prefix,
            names: list_column(batch, &format!("{prefix}_names"))?,
            values: list_column(batch, &format!("{prefix}_values"))?,
            types: list_column(batch, &format!("{prefix}_types"))?,
        })
    }

    fn row(&self, row: usize) -> Result<Vec<Attribute>, SchemaError> {
        let names = list_range(self.names.0, row);
        let values = list_range(self.values.0, row);
        let types = list_range(self.types.0, row);
        if names.len() != values.len() || names.len() != types.len() {
            return Err(SchemaError(format!(
                "row {row}: {} has {} names, {} values and {} types",
                self.prefix,
                names.len(),
                values.len(),
                types.len()
            )));
        }
        names
            .zip(values)
            .zip(types)
            .map(|((name, value), code)| {
                let key = self.names.1.value(name);
                let value = text::parse_value(self.values.1.value(value), self.types.1.value(code))
                    .map_err(|error| {
                        SchemaError(format!("row {row}: {} `{key}`: {error}", self.prefix))
                    })?;
                Ok(Attribute {
                    key: key.to_owned(),
                    value,
                })
            })
            .collect()
    }
}

/// An id column whose values are all `width` bytes long.
fn id_column_of<'a>(
    batch: &'a RecordBatch,
    name: &str,
    width: usize,
) -> Result<&'a BinaryArray, SchemaError> {
    let array = column::<BinaryArray>(batch, name)?;
    if let Some(row) =
        (0..array.len()).find(|&row| array.is_valid(row) && array.value(row).len() != width)
    {
        return Err(SchemaError(format!(
            "row {row}: {name} is {} bytes long, expected {width}",
            array.value(row).len()
        )));
    }
    Ok(array)
}

fn span_id_at(array: &BinaryArray, row: usize) -> SpanId {
    SpanId(array.value(row).try_into().expect("the width is checked"))
}

fn ip_at(array: &StringArray, name: &str, row: usize) -> Result<Option<IpAddr>, SchemaError> {
    if array.is_null(row) {
        return Ok(None);
    }
    let text = array.value(row);
    text.parse()
        .map(Some)
        .map_err(|_| SchemaError(format!("row {row}: {name} `{text}` is not an IP address")))
}

fn nullable<T: arrow::array::ArrowPrimitiveType>(
    array: &arrow::array::PrimitiveArray<T>,
    row: usize,
) -> Option<T::Native> {
    array.is_valid(row).then(|| array.value(row))
}

/// The place columns of one side.
struct PlaceColumns<'a> {
    text: Vec<&'a StringArray>,
    auto_instance_type: &'a UInt8Array,
    auto_service_type: &'a UInt8Array,
    labels: &'a StringArray,
}

impl<'a> PlaceColumns<'a> {
    fn get(batch: &'a RecordBatch, side: u8) -> Result<PlaceColumns<'a>, SchemaError> {
        Ok(PlaceColumns {
            text: Place::TEXT_COLUMNS
                .iter()
                .map(|(name, _)| column::<StringArray>(batch, &format!("{name}_{side}")))
                .collect::<Result<_, _>>()?,
            auto_instance_type: column(batch, &format!("auto_instance_type_{side}"))?,
            auto_service_type: column(batch, &format!("auto_service_type_{side}"))?,
            labels: column(batch, &format!("labels_{side}"))?,
        })
    }

    fn at(&self, row: usize) -> Place {
        let mut place = Place {
            auto_instance_type: AutoType::from_u8(self.auto_instance_type.value(row)),
            auto_service_type: AutoType::from_u8(self.auto_service_type.value(row)),
            labels: Place::parse_labels_json(self.labels.value(row)),
            ..Place::default()
        };
        for ((name, _), array) in Place::TEXT_COLUMNS.iter().zip(&self.text) {
            let value = array.value(row);
            if !value.is_empty() {
                *place.text_mut(name).expect("every text column is settable") = value.to_owned();
            }
        }
        place
    }
}

/// The rows of a batch of [`schema()`]; columns are found by name, so their order is free.
pub fn batch_to_rows(batch: &RecordBatch) -> Result<Vec<SpanRow>, SchemaError> {
    let time = column::<TimestampSecondArray>(batch, "time")?;
    let start_time = column::<TimestampMicrosecondArray>(batch, "start_time")?;
    let end_time_offset = column::<Int64Array>(batch, "end_time_offset")?;
    let trace_id = id_column_of(batch, "trace_id", 16)?;
    let span_id = id_column_of(batch, "span_id", 8)?;
    let parent_span_id = id_column_of(batch, "parent_span_id", 8)?;
    let span_kind = column::<UInt8Array>(batch, "span_kind")?;
    let observation_point = column::<StringArray>(batch, "observation_point")?;
    let trace_state = column::<StringArray>(batch, "trace_state")?;
    let flags = column::<UInt32Array>(batch, "flags")?;
    let endpoint = column::<StringArray>(batch, "endpoint")?;
    let app_service = column::<StringArray>(batch, "app_service")?;
    let app_instance = column::<StringArray>(batch, "app_instance")?;
    let signal_source = column::<UInt16Array>(batch, "signal_source")?;
    let agent_id = column::<StringArray>(batch, "agent_id")?;
    let l7_protocol = column::<UInt8Array>(batch, "l7_protocol")?;
    let l7_protocol_str = column::<StringArray>(batch, "l7_protocol_str")?;
    let version = column::<StringArray>(batch, "version")?;
    let is_tls = column::<BooleanArray>(batch, "is_tls")?;
    let protocol = column::<UInt8Array>(batch, "protocol")?;
    let request_type = column::<StringArray>(batch, "request_type")?;
    let request_domain = column::<StringArray>(batch, "request_domain")?;
    let request_resource = column::<StringArray>(batch, "request_resource")?;
    let request_length = column::<Int64Array>(batch, "request_length")?;
    let response_length = column::<Int64Array>(batch, "response_length")?;
    let response_code = column::<Int32Array>(batch, "response_code")?;
    let response_status = column::<UInt8Array>(batch, "response_status")?;
    let response_exception = column::<StringArray>(batch, "response_exception")?;
    let status_code = column::<UInt8Array>(batch, "status_code")?;
    let status_message = column::<StringArray>(batch, "status_message")?;
    let response_duration = column::<UInt64Array>(batch, "response_duration")?;
    let ip_0 = column::<StringArray>(batch, "ip_0")?;
    let ip_1 = column::<StringArray>(batch, "ip_1")?;
    let client_port = column::<UInt16Array>(batch, "client_port")?;
    let server_port = column::<UInt16Array>(batch, "server_port")?;
    let places = [PlaceColumns::get(batch, 0)?, PlaceColumns::get(batch, 1)?];
    let mut last_places: [Arc<Place>; 2] = [Place::unknown(), Place::unknown()];
    let scope_name = column::<StringArray>(batch, "scope_name")?;
    let scope_version = column::<StringArray>(batch, "scope_version")?;
    let resource = RESOURCE_COLUMNS
        .iter()
        .map(|(name, _)| column::<StringArray>(batch, name))
        .collect::<Result<Vec<_>, _>>()?;
    let attributes = AttributeColumns::get(batch, "attribute")?;
    let resource_attributes = AttributeColumns::get(batch, "resource_attribute")?;
    let events = column::<StringArray>(batch, "events")?;
    let links = column::<StringArray>(batch, "links")?;
    let dropped_attributes_count = column::<UInt32Array>(batch, "dropped_attributes_count")?;
    let dropped_events_count = column::<UInt32Array>(batch, "dropped_events_count")?;
    let dropped_links_count = column::<UInt32Array>(batch, "dropped_links_count")?;

    let text = |array: &StringArray, row: usize| array.value(row).to_owned();
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let trace = TraceId(trace_id.value(i).try_into().expect("the width is checked"));
        let parent = parent_span_id
            .is_valid(i)
            .then(|| span_id_at(parent_span_id, i));
        let point_text = observation_point.value(i);
        let point = ObservationPoint::parse(point_text).ok_or_else(|| {
            SchemaError(format!(
                "row {i}: observation_point `{point_text}` is not c-app, s-app or app"
            ))
        })?;
        let tags = |column: usize| text(resource[column], i);
        for side in 0..2 {
            let place = places[side].at(i);
            if *last_places[side] != place {
                last_places[side] = Arc::new(place);
            }
        }
        rows.push(SpanRow {
            time: time.value(i),
            start_time: start_time.value(i),
            end_time: end_time(
                start_time.value(i),
                response_duration.value(i),
                end_time_offset.value(i),
            ),
            trace_id: trace,
            span_id: span_id_at(span_id, i),
            parent_span_id: parent,
            span_kind: SpanKind::from_i32(i32::from(span_kind.value(i))),
            observation_point: point,
            trace_state: text(trace_state, i),
            flags: flags.value(i),
            endpoint: text(endpoint, i),
            app_service: text(app_service, i),
            app_instance: text(app_instance, i),
            signal_source: signal_source.value(i),
            agent_id: text(agent_id, i),
            l7_protocol: L7Protocol::from_u8(l7_protocol.value(i)),
            l7_protocol_str: text(l7_protocol_str, i),
            version: text(version, i),
            is_tls: is_tls.value(i),
            protocol: protocol.value(i),
            request_type: text(request_type, i),
            request_domain: text(request_domain, i),
            request_resource: text(request_resource, i),
            request_length: nullable(request_length, i),
            response_length: nullable(response_length, i),
            response_code: nullable(response_code, i),
            response_status: ResponseStatus::from_u8(response_status.value(i)),
            response_exception: text(response_exception, i),
            status_code: status_code.value(i),
            status_message: text(status_message, i),
            response_duration: response_duration.value(i),
            ip_0: ip_at(ip_0, "ip_0", i)?,
            ip_1: ip_at(ip_1, "ip_1", i)?,
            client_port: client_port.value(i),
            server_port: server_port.value(i),
            place_0: last_places[0].clone(),
            place_1: last_places[1].clone(),
            scope_name: text(scope_name, i),
            scope_version: text(scope_version, i),
            resource: ResourceTags {
                host_name: tags(0),
                container_id: tags(1),
                k8s_cluster_name: tags(2),
                k8s_namespace_name: tags(3),
                k8s_node_name: tags(4),
                k8s_pod_name: tags(5),
                k8s_pod_uid: tags(6),
                k8s_workload_kind: tags(7),
                k8s_workload_name: tags(8),
                service_namespace: tags(9),
                service_version: tags(10),
                deployment_environment: tags(11),
            }
            .into(),
            attributes: attributes.row(i)?,
            resource_attributes: resource_attributes.row(i)?.into(),
            events: text::parse_events(events.value(i))
                .map_err(|error| SchemaError(format!("row {i}: events: {error}")))?,
            links: text::parse_links(links.value(i))
                .map_err(|error| SchemaError(format!("row {i}: links: {error}")))?,
            dropped_attributes_count: dropped_attributes_count.value(i),
            dropped_events_count: dropped_events_count.value(i),
            dropped_links_count: dropped_links_count.value(i),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use datafusion::arrow::array::AsArray;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;
    use proptest::collection::vec;
    use proptest::prelude::*;

    #[test]
    fn the_buffer_holds_each_address_once_and_no_address_as_null() {
        let addresses = ["10.1.2.3", "fd00::7"].map(|ip| Some(ip.parse().unwrap()));
        let ips = [addresses[0], None, addresses[1], addresses[0], None];
        let rows: Vec<SpanRow> = ips
            .iter()
            .map(|&ip_0| SpanRow {
                ip_0,
                ..SpanRow::default()
            })
            .collect();
        let batch = rows_to_buffer(&rows);
        let column = batch.column_by_name("ip_0").unwrap();
        let dictionary = column.as_dictionary::<Int32Type>();
        assert_eq!(
            dictionary.values().len() - dictionary.values().null_count(),
            2
        );
        let text = arrow::compute::cast(column, &DataType::Utf8).unwrap();
        let text: Vec<Option<&str>> = text.as_string::<i32>().iter().collect();
        assert_eq!(
            text,
            [
                Some("10.1.2.3"),
                None,
                Some("fd00::7"),
                Some("10.1.2.3"),
                None
            ]
        );
        let back = batch_to_rows(&from_file(&from_buffer(&batch).unwrap()).unwrap()).unwrap();
        let back: Vec<_> = back.iter().map(|row| row.ip_0).collect();
        assert_eq!(back, ips);
    }

    #[test]
    fn a_column_of_runs_becomes_a_dictionary_of_a_value_a_run_and_reads_the_same() {
        let texts: Vec<Option<&str>> = vec![
            Some("GET"),
            Some("GET"),
            None,
            Some("GET"),
            Some(""),
            Some(""),
            Some("POST"),
            Some("POST"),
            Some("GET"),
            None,
        ];
        let column: ArrayRef = Arc::new(StringArray::from(texts.clone()));
        let runs = runs_as_dictionary(&column);
        let dictionary = runs.as_dictionary::<Int32Type>();
        // GET (across the null), "", POST, GET again: four runs.
        assert_eq!(dictionary.values().len(), 4);
        let back = arrow::compute::cast(&runs, &DataType::Utf8).unwrap();
        assert_eq!(back.as_string::<i32>(), column.as_string::<i32>());

        let bytes: ArrayRef = Arc::new(BinaryArray::from(vec![&b"ab"[..], b"ab", b"ab", b"c"]));
        let runs = runs_as_dictionary(&bytes);
        assert_eq!(runs.as_dictionary::<Int32Type>().values().len(), 2);
        let back = arrow::compute::cast(&runs, &DataType::Binary).unwrap();
        assert_eq!(back.as_binary::<i32>(), bytes.as_binary::<i32>());

        // More runs than half the rows: left as it is.
        let distinct: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "b", "c"]));
        assert!(Arc::ptr_eq(&runs_as_dictionary(&distinct), &distinct));
        let nothing: ArrayRef = Arc::new(StringArray::from(vec![None::<&str>, None, None]));
        let runs = runs_as_dictionary(&nothing);
        assert_eq!(runs.null_count(), 3);
        assert_eq!(runs.as_dictionary::<Int32Type>().values().len(), 0);
    }
    use spanflow_store::conformance::{full_row, row, span_id, trace_id};

    use super::*;
    use spanflow_model::{AttrValue, Event, Link};

    #[test]
    fn null_buffers_of_keys_are_built_once_for_the_same_absent_values() {
        let keys = ScalarBuffer::from(vec![0, 1, 2, 1, 0]);
        let other_keys = ScalarBuffer::from(vec![0, 1, 2, 1, 0]);
        let mut key_nulls = KeyNulls::default();
        let first = key_nulls.of(&keys, vec![false, true, false]);
        assert_eq!(
            first.iter().collect::<Vec<_>>(),
            [true, false, true, false, true]
        );
        let again = key_nulls.of(&keys, vec![false, true, false]);
        assert_eq!(again.buffer().as_ptr(), first.buffer().as_ptr(), "shared");
        // Other keys, or other absent values, get their own.
        let other = key_nulls.of(&other_keys, vec![false, true, false]);
        assert_ne!(other.buffer().as_ptr(), first.buffer().as_ptr());
        let none = key_nulls.of(&keys, vec![true, true, true]);
        assert_eq!(none.null_count(), 5);
    }

    /// A write built with no rows seen starts at what the writes before needed, and builds
    /// the buffer the rows would give whole.
    #[test]
    fn a_write_is_sized_from_the_writes_before_it() {
        let rows: Vec<SpanRow> = (0..100)
            .map(|n| {
                let mut row = full_row();
                row.endpoint = format!("GET /cart/{n}");
                row
            })
            .collect();
        let sizes = TextSizes::default();
        assert_eq!(sizes.for_rows(100), [0; N_SIZED]);
        for _ in 0..2 {
            let mut builder = BufferBuilder::expecting(rows.len(), &sizes);
            for row in &rows {
                builder.append(row);
            }
            assert_eq!(builder.finish_noting(&sizes), rows_to_buffer(&rows));
        }
        // Each text column expects the bytes of the rows before, and a sixteenth more at most.
        let needed = text_sizes(&rows);
        let expected = sizes.for_rows(rows.len());
        for (expected, needed) in expected.iter().zip(needed).take(10) {
            assert!(
                (needed..=needed + needed / 16 + 1).contains(expected),
                "{expected} for {needed}"
            );
        }
        assert!(expected[1] > 1000, "endpoints: {expected:?}");
        assert!(expected[10] > 0, "packed attributes: {expected:?}");
        // A write of huge text does not have the next reserve past the cap.
        sizes.record(1, [1 << 30; N_SIZED]);
        assert_eq!(
            sizes.for_rows(1_000_000),
            [TextSizes::MAX_RESERVED; N_SIZED]
        );
    }

    #[test]
    fn files_hold_the_one_byte_codes_as_one_number_and_read_them_apart() {
        let full = full_row();
        let rows = [full.clone(), SpanRow::default()];
        let file = to_file(&rows_to_batch(&rows)).unwrap();
        for name in CODE_COLUMNS {
            assert!(file.column_by_name(name).is_none(), "{name} is a column");
        }
        let expected = u64::from_le_bytes([
            full.span_kind as u8,
            full.l7_protocol as u8,
            full.protocol,
            full.status_code,
            full.place_0.auto_instance_type as u8,
            full.place_0.auto_service_type as u8,
            full.place_1.auto_instance_type as u8,
            full.place_1.auto_service_type as u8,
        ]);
        let codes = file.column_by_name(CODES_COLUMN).unwrap();
        assert_eq!(
            codes
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .value(0),
            expected
        );
        // A flush packs the buffer's codes the same way.
        let flushed = buffer_to_file(&rows_to_buffer(&rows)).unwrap();
        assert_eq!(flushed.column_by_name(CODES_COLUMN).unwrap(), codes);
        assert_eq!(batch_to_rows(&from_file(&file).unwrap()).unwrap(), rows);
        // Files of format 7 keep a column a code.
        let older = to_file_of(&rows_to_batch(&rows), 7).unwrap();
        assert!(older.column_by_name(CODES_COLUMN).is_none());
        assert_eq!(batch_to_rows(&from_file(&older).unwrap()).unwrap(), rows);
    }

    #[test]
    fn files_hold_each_ends_place_as_one_value_and_read_its_texts_apart() {
        let first = full_row();
        let mut second = full_row();
        second.place_0 = first.place_0.clone();
        second.place_1 = Place::unknown();
        let rows = [first, second, SpanRow::default()];
        let names: Vec<&str> = Place::TEXT_COLUMNS
            .iter()
            .map(|(name, _)| *name)
            .chain(["labels"])
            .collect();
        assert_eq!(names, PLACE_TEXTS, "files pack every text of a place");
        let file = to_file(&rows_to_batch(&rows)).unwrap();
        for text in PLACE_TEXTS {
            for side in SIDES {
                let name = format!("{text}_{side}");
                assert!(file.column_by_name(&name).is_none(), "{name} is a column");
            }
        }
        let plain = |column: &ArrayRef| arrow::compute::cast(column, &DataType::Binary).unwrap();
        let packed = plain(file.column_by_name("place_0").unwrap());
        let packed = packed.as_binary::<i32>();
        assert_eq!(packed.value(0), packed.value(1), "one place, one value");
        assert!(packed.is_null(2), "nothing known of the place");
        assert_eq!(batch_to_rows(&from_file(&file).unwrap()).unwrap(), rows);

        // A flush packs the buffer's places once each, over the buffer's keys.
        let buffer = rows_to_buffer(&rows);
        // As a write holds it, and gathered in another order column by column.
        let gathered =
            arrow::compute::take_record_batch(&buffer, &UInt32Array::from(vec![2, 0, 1])).unwrap();
        for batch in [buffer, gathered] {
            let in_order =
                batch_to_rows(&from_file(&from_buffer(&batch).unwrap()).unwrap()).unwrap();
            let from_rows = to_file(&rows_to_batch(&in_order)).unwrap();
            let flushed = buffer_to_file(&batch).unwrap();
            for name in PLACE_COLUMNS {
                let column = flushed.column_by_name(name).unwrap();
                assert!(column.as_dictionary_opt::<Int32Type>().is_some(), "{name}");
                assert_eq!(
                    &plain(column),
                    &plain(from_rows.column_by_name(name).unwrap()),
                    "{name}"
                );
            }
        }
        // Files of format 8 keep a column a text.
        let older = to_file_of(&rows_to_batch(&rows), 8).unwrap();
        assert!(older.column_by_name("place_0").is_none());
        assert!(older.column_by_name("pod_0").is_some());
        assert_eq!(batch_to_rows(&from_file(&older).unwrap()).unwrap(), rows);
    }

    #[test]
    fn the_buffer_holds_what_spans_share_once_and_empty_text_as_null() {
        let first = full_row();
        let mut second = full_row();
        second.resource = first.resource.clone();
        second.resource_attributes = first.resource_attributes.clone();
        second.place_0 = first.place_0.clone();
        let rows = [first, second, SpanRow::default()];
        let batch = rows_to_buffer(&rows);
        assert_eq!(batch.schema(), buffer_schema());
        let values_of = |name: &str| {
            let column = batch.column_by_name(name).unwrap();
            let dictionary = column.as_dictionary::<Int32Type>();
            (dictionary.values().len(), column.logical_nulls())
        };
        // Two rows share one set and one place; the third has none of either.
        let (n_sets, nulls) = values_of("resource_attributes");
        assert_eq!(n_sets, 2);
        assert_eq!(nulls.map(|nulls| nulls.null_count()), Some(1));
        let (n_places, nulls) = values_of("pod_0");
        assert_eq!(n_places, 2);
        assert!(nulls.unwrap().is_null(2), "an unknown pod is null");
        // Read back as files would be, every value is a row's own.
        let file = from_buffer(&batch).unwrap();
        assert_eq!(file.schema(), file_schema());
        assert_eq!(batch_to_rows(&from_file(&file).unwrap()).unwrap(), rows);
    }

    fn round_trip(rows: &[SpanRow]) -> Vec<SpanRow> {
        let batch = rows_to_batch(rows);
        assert_eq!(batch.num_rows(), rows.len());
        batch_to_rows(&batch).unwrap()
    }

    #[test]
    fn all_empty_text_gets_an_allocation_and_keeps_its_values() {
        // Arrow's buffer of no bytes sits at an address no page is mapped at.
        let unmapped = |address: *const u8| (address as usize) < 4096;
        let empty: ArrayRef = Arc::new(StringArray::new(
            StringArray::from(vec!["", "", ""]).offsets().clone(),
            arrow::buffer::Buffer::from_vec(Vec::<u8>::new()),
            Some(arrow::buffer::NullBuffer::from(vec![true, false, true])),
        ));
        assert!(unmapped(empty.as_string::<i32>().values().as_ptr()));
        let backed = with_allocated_values(&empty);
        assert!(!unmapped(backed.as_string::<i32>().values().as_ptr()));
        assert_eq!(backed.as_ref(), empty.as_ref());
        let dictionary: ArrayRef = Arc::new(DictionaryArray::<Int32Type>::new(
            Int32Array::from(vec![0, 0, 1]),
            Arc::new(StringArray::from(vec!["", ""])),
        ));
        let backed = with_allocated_values(&dictionary);
        let values = backed.as_dictionary::<Int32Type>().values();
        assert!(!unmapped(values.as_string::<i32>().values().as_ptr()));
        assert_eq!(backed.as_ref(), dictionary.as_ref());
        // Text with bytes is left as it is.
        let text: ArrayRef = Arc::new(StringArray::from(vec!["a", ""]));
        assert!(Arc::ptr_eq(&with_allocated_values(&text), &text));
        // A batch as the store buffers it has no column of the first kind.
        let batch = rows_to_buffer(&[SpanRow::default(), SpanRow::default()]);
        for column in batch.columns() {
            let values = match column.data_type() {
                DataType::Utf8 => column.as_string::<i32>().values().as_ptr(),
                DataType::Dictionary(..) => {
                    let values = column.as_dictionary::<Int32Type>().values();
                    match values.data_type() {
                        DataType::Utf8 => values.as_string::<i32>().values().as_ptr(),
                        _ => continue,
                    }
                }
                _ => continue,
            };
            assert!(!unmapped(values));
        }
    }

    #[test]
    fn schema_round_trips_the_full_row() {
        let rows = vec![full_row()];
        assert_eq!(round_trip(&rows), rows);
    }

    #[test]
    fn schema_round_trips_default_and_mixed_rows() {
        assert_eq!(round_trip(&[]), Vec::<SpanRow>::new());
        let rows = vec![SpanRow::default()];
        assert_eq!(round_trip(&rows), rows);
        let rows = vec![
            row(1, 1, "a", "GET /", 1_700_000_000_000_000),
            full_row(),
            SpanRow::default(),
            row(2, 7, "b", "", 0),
            full_row(),
        ];
        assert_eq!(round_trip(&rows), rows);
    }

    #[test]
    fn schema_values_read_as_deepflow_writes_them() {
        let batch = rows_to_batch(&[full_row(), SpanRow::default()]);
        let text = |name: &str, row: usize| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .value(row)
                .to_owned()
        };
        let id = |name: &str, row: usize| {
            let ids = batch.column_by_name(name).unwrap().as_binary::<i32>();
            ids.is_valid(row).then(|| hex::encode(ids.value(row)))
        };
        assert_eq!(
            id("trace_id", 0).unwrap(),
            "ab0000000000000000000000000000c8"
        );
        assert_eq!(id("span_id", 0).unwrap(), "cd00000000000002");
        assert_eq!(id("parent_span_id", 0).unwrap(), "cd00000000000001");
        assert_eq!(id("parent_span_id", 1), None);
        assert_eq!(text("observation_point", 0), "c-app");
        assert_eq!(text("ip_0", 0), "10.1.2.3");
        assert_eq!(text("ip_1", 0), "fd00::7");
        assert!(batch.column_by_name("ip_0").unwrap().is_null(1));
        assert_eq!(text("events", 1), "[]");
        assert_eq!(text("links", 1), "[]");
        assert_eq!(
            text("events", 0),
            r#"[{"time_us":1700000000500000,"name":"exception","attributes":[["exception.message",{"s":"connection reset"}]],"dropped_attributes_count":1}]"#
        );
        assert_eq!(
            text("links", 0),
            r#"[{"trace_id":"ab0000000000000000000000000000c9","span_id":"cd00000000000009","trace_state":"other=2","attributes":[["link.kind",{"s":"retry"}]],"dropped_attributes_count":2,"flags":1}]"#
        );
        let values = batch
            .column_by_name("attribute_values")
            .unwrap()
            .as_list::<i32>();
        let values = values.value(0);
        let values: Vec<&str> = values.as_string::<i32>().iter().flatten().collect();
        assert_eq!(
            values,
            [
                "postgresql",
                "-3",
                "0.25",
                "false",
                "AP8H",
                r#"[{"s":"a"},{"i":2}]"#,
                r#"[["inner",{"b":true}]]"#,
                ""
            ]
        );
        let types = batch
            .column_by_name("attribute_types")
            .unwrap()
            .as_list::<i32>();
        let types = types.value(0);
        let types: Vec<u8> = types
            .as_primitive::<arrow::datatypes::UInt8Type>()
            .values()
            .to_vec();
        assert_eq!(types, [0, 2, 3, 1, 4, 5, 6, 7]);
    }

    #[test]
    fn schema_special_doubles_and_duplicate_keys_round_trip() {
        let mut row = full_row();
        let doubles = [
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            0.1 + 0.2,
        ];
        row.attributes = doubles
            .iter()
            .map(|value| Attribute::new("d", AttrValue::Double(*value)))
            .collect();
        row.attributes.push(Attribute::new(
            "list",
            AttrValue::KeyValueList(vec![
                Attribute::new("k", AttrValue::Int(i64::MIN)),
                Attribute::new(
                    "k",
                    AttrValue::Array(doubles.map(AttrValue::Double).to_vec()),
                ),
                Attribute::new("", AttrValue::Empty),
            ]),
        ));
        let back = round_trip(std::slice::from_ref(&row));
        assert_eq!(canonical(back), canonical(vec![row.clone()]));
        let mut nan = row.clone();
        nan.attributes = vec![Attribute::new("nan", AttrValue::Double(f64::NAN))];
        let back = round_trip(&[nan]);
        assert!(matches!(back[0].attributes[0].value, AttrValue::Double(value) if value.is_nan()));
    }

    #[test]
    fn schema_decodes_columns_in_another_order() {
        let rows = vec![full_row(), row(3, 4, "c", "op", 42)];
        let batch = rows_to_batch(&rows);
        let reversed = batch.schema().fields().len();
        let indices: Vec<usize> = (0..reversed).rev().collect();
        let shuffled = batch.project(&indices).unwrap();
        assert_eq!(shuffled.schema().field(0).name(), "dropped_links_count");
        assert_eq!(batch_to_rows(&shuffled).unwrap(), rows);
        // A slice decodes too.
        assert_eq!(batch_to_rows(&batch.slice(1, 1)).unwrap(), rows[1..]);
    }

    #[test]
    fn schema_rejects_a_missing_column_or_a_wrong_type() {
        let batch = rows_to_batch(&[full_row()]);
        let without_links: Vec<usize> = (0..batch.num_columns())
            .filter(|index| batch.schema().field(*index).name() != "links")
            .collect();
        let error = batch_to_rows(&batch.project(&without_links).unwrap()).unwrap_err();
        assert!(error.0.contains("links"), "{error}");

        let mut columns = batch.columns().to_vec();
        let mut fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|field| field.as_ref().clone())
            .collect();
        let index = batch.schema().index_of("flags").unwrap();
        columns[index] = Arc::new(Int64Array::from(vec![1]));
        fields[index] = Field::new("flags", DataType::Int64, false);
        let wrong = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
        let error = batch_to_rows(&wrong).unwrap_err();
        assert!(error.0.contains("flags"), "{error}");
    }

    #[test]
    fn schema_has_the_deepflow_columns() {
        let schema = schema();
        assert!(Arc::ptr_eq(&schema, &super::schema()));
        let utc = || Some(Arc::<str>::from("UTC"));
        let utf8_list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
        let u8_list = DataType::List(Arc::new(Field::new_list_field(DataType::UInt8, true)));
        let mut expected: Vec<(&str, DataType, bool)> = vec![
            ("time", DataType::Timestamp(TimeUnit::Second, utc()), false),
            (
                "start_time",
                DataType::Timestamp(TimeUnit::Microsecond, utc()),
                false,
            ),
            ("end_time_offset", DataType::Int64, false),
            ("trace_id", DataType::Binary, false),
            ("span_id", DataType::Binary, false),
            ("parent_span_id", DataType::Binary, true),
            ("span_kind", DataType::UInt8, false),
            ("observation_point", DataType::Utf8, false),
            ("trace_state", DataType::Utf8, false),
            ("flags", DataType::UInt32, false),
            ("endpoint", DataType::Utf8, false),
            ("app_service", DataType::Utf8, false),
            ("app_instance", DataType::Utf8, false),
            ("signal_source", DataType::UInt16, false),
            ("agent_id", DataType::Utf8, false),
            ("l7_protocol", DataType::UInt8, false),
            ("l7_protocol_str", DataType::Utf8, false),
            ("version", DataType::Utf8, false),
            ("is_tls", DataType::Boolean, false),
            ("protocol", DataType::UInt8, false),
            ("request_type", DataType::Utf8, false),
            ("request_domain", DataType::Utf8, false),
            ("request_resource", DataType::Utf8, false),
            ("request_length", DataType::Int64, true),
            ("response_length", DataType::Int64, true),
            ("response_code", DataType::Int32, true),
            ("response_status", DataType::UInt8, false),
            ("response_exception", DataType::Utf8, false),
            ("status_code", DataType::UInt8, false),
            ("status_message", DataType::Utf8, false),
            ("response_duration", DataType::UInt64, false),
            ("ip_0", DataType::Utf8, true),
            ("ip_1", DataType::Utf8, true),
            ("client_port", DataType::UInt16, false),
            ("server_port", DataType::UInt16, false),
            ("pod_0", DataType::Utf8, false),
            ("pod_ns_0", DataType::Utf8, false),
            ("pod_group_0", DataType::Utf8, false),
            ("pod_group_type_0", DataType::Utf8, false),
            ("pod_node_0", DataType::Utf8, false),
            ("pod_cluster_0", DataType::Utf8, false),
            ("service_0", DataType::Utf8, false),
            ("host_0", DataType::Utf8, false),
            ("region_0", DataType::Utf8, false),
            ("az_0", DataType::Utf8, false),
            ("auto_instance_0", DataType::Utf8, false),
            ("auto_service_0", DataType::Utf8, false),
            ("auto_instance_type_0", DataType::UInt8, false),
            ("auto_service_type_0", DataType::UInt8, false),
            ("labels_0", DataType::Utf8, false),
            ("pod_1", DataType::Utf8, false),
            ("pod_ns_1", DataType::Utf8, false),
            ("pod_group_1", DataType::Utf8, false),
            ("pod_group_type_1", DataType::Utf8, false),
            ("pod_node_1", DataType::Utf8, false),
            ("pod_cluster_1", DataType::Utf8, false),
            ("service_1", DataType::Utf8, false),
            ("host_1", DataType::Utf8, false),
            ("region_1", DataType::Utf8, false),
            ("az_1", DataType::Utf8, false),
            ("auto_instance_1", DataType::Utf8, false),
            ("auto_service_1", DataType::Utf8, false),
            ("auto_instance_type_1", DataType::UInt8, false),
            ("auto_service_type_1", DataType::UInt8, false),
            ("labels_1", DataType::Utf8, false),
            ("scope_name", DataType::Utf8, false),
            ("scope_version", DataType::Utf8, false),
        ];
        for name in [
            "host_name",
            "container_id",
            "k8s_cluster_name",
            "k8s_namespace_name",
            "k8s_node_name",
            "k8s_pod_name",
            "k8s_pod_uid",
            "k8s_workload_kind",
            "k8s_workload_name",
            "service_namespace",
            "service_version",
            "deployment_environment",
        ] {
            expected.push((name, DataType::Utf8, false));
        }
        expected.extend([
            ("attribute_names", utf8_list.clone(), false),
            ("attribute_values", utf8_list.clone(), false),
            ("attribute_types", u8_list.clone(), false),
            ("resource_attribute_names", utf8_list.clone(), false),
            ("resource_attribute_values", utf8_list, false),
            ("resource_attribute_types", u8_list, false),
            ("events", DataType::Utf8, false),
            ("links", DataType::Utf8, false),
            ("dropped_attributes_count", DataType::UInt32, false),
            ("dropped_events_count", DataType::UInt32, false),
            ("dropped_links_count", DataType::UInt32, false),
        ]);
        let actual: Vec<(&str, DataType, bool)> = schema
            .fields()
            .iter()
            .map(|field| {
                (
                    field.name().as_str(),
                    field.data_type().clone(),
                    field.is_nullable(),
                )
            })
            .collect();
        assert_eq!(actual, expected);
        assert_eq!(*rows_to_batch(&[]).schema(), *schema);
    }

    #[tokio::test]
    async fn schema_answers_deepflow_style_sql() {
        let other = trace_id(7);
        let rows = vec![
            full_row(),
            row(200, 3, "checkout", "GET /cart", 1_700_000_000_000_000),
            row(7, 1, "cart", "GET /", 1_700_000_000_000_000),
            SpanRow {
                trace_id: other,
                span_id: span_id(9),
                endpoint: "INSERT carts".into(),
                attributes: vec![Attribute::new(
                    "db.system.name",
                    AttrValue::String("mysql".into()),
                )],
                ..SpanRow::default()
            },
        ];
        let table =
            Arc::new(MemTable::try_new(schema(), vec![vec![rows_to_batch(&rows)]]).unwrap());
        // Canary: DataFusion alone cannot index with `array_position`'s UInt64. When this
        // starts to plan, `sql_functions` is no longer needed.
        let plain = SessionContext::new();
        plain.register_table(TABLE_NAME, table.clone()).unwrap();
        let planned = plain
            .sql(
                "SELECT endpoint FROM l7_flow_log \
                 WHERE attribute_values[array_position(attribute_names, 'x')] = 'y'",
            )
            .await;
        let error = match planned {
            Ok(frame) => frame.collect().await.unwrap_err(),
            Err(error) => error,
        };
        assert!(error.to_string().contains("array_element"), "{error}");

        let context = SessionContext::new();
        for function in sql_functions() {
            context.register_udf(function);
        }
        let view = sql_view(context.read_table(table).unwrap()).unwrap();
        context
            .register_table(TABLE_NAME, view.into_view())
            .unwrap();

        let batches = context
            .sql(
                "SELECT endpoint FROM l7_flow_log \
                 WHERE attribute_values[array_position(attribute_names, 'db.system.name')] \
                 = 'postgresql'",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let endpoints: Vec<String> = batches
            .iter()
            .flat_map(|batch| {
                let column = arrow::compute::cast(batch.column(0), &DataType::Utf8).unwrap();
                column
                    .as_string::<i32>()
                    .iter()
                    .map(|value| value.unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(endpoints, ["SELECT orders"]);

        let sql = format!(
            "SELECT count(*) FROM l7_flow_log WHERE trace_id = '{}' \
             AND time > to_timestamp_seconds(0)",
            trace_id(200).to_hex()
        );
        let batches = context.sql(&sql).await.unwrap().collect().await.unwrap();
        let count = batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0);
        assert_eq!(count, 2);

        // Ids read as hex text; a root span's parent as ''.
        let batches = context
            .sql(&format!(
                "SELECT trace_id, span_id, parent_span_id FROM l7_flow_log \
                 WHERE trace_id = '{}' ORDER BY span_id",
                trace_id(200).to_hex()
            ))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let texts: Vec<Vec<String>> = (0..3)
            .map(|column| {
                batches
                    .iter()
                    .flat_map(|batch| {
                        let column =
                            arrow::compute::cast(batch.column(column), &DataType::Utf8).unwrap();
                        column
                            .as_string::<i32>()
                            .iter()
                            .map(|value| value.unwrap().to_owned())
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .collect();
        assert_eq!(texts[0], [trace_id(200).to_hex(), trace_id(200).to_hex()]);
        assert_eq!(texts[1], [span_id(2).to_hex(), span_id(3).to_hex()]);
        assert_eq!(texts[2], [span_id(1).to_hex(), String::new()]);
    }

    // -----------------------------------------------------------------------------------------
    // Generated rows.

    /// Doubles replaced by their bit pattern (one pattern for every NaN), so rows compare exactly.
    fn canonical(mut rows: Vec<SpanRow>) -> Vec<SpanRow> {
        fn canon(value: &mut AttrValue) {
            match value {
                AttrValue::Double(double) => {
                    let bits = if double.is_nan() {
                        u64::MAX
                    } else {
                        double.to_bits()
                    };
                    *value = AttrValue::String(format!("\u{0}f64:{bits:016x}"));
                }
                AttrValue::Array(items) => items.iter_mut().for_each(canon),
                AttrValue::KeyValueList(attributes) => attrs(attributes),
                _ => {}
            }
        }
        fn attrs(attributes: &mut [Attribute]) {
            for attribute in attributes {
                canon(&mut attribute.value);
            }
        }
        for row in &mut rows {
            attrs(&mut row.attributes);
            let mut resource = row.resource_attributes.to_vec();
            attrs(&mut resource);
            row.resource_attributes = resource.into();
            row.events
                .iter_mut()
                .for_each(|event| attrs(&mut event.attributes));
            row.links
                .iter_mut()
                .for_each(|link| attrs(&mut link.attributes));
        }
        rows
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![".*", "[a-z._]{0,12}"]
    }

    fn double() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(-f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(1e300),
            Just(1e-300),
        ]
    }

    fn attr_value() -> impl Strategy<Value = AttrValue> {
        let leaf = prop_oneof![
            text().prop_map(AttrValue::String),
            any::<bool>().prop_map(AttrValue::Bool),
            any::<i64>().prop_map(AttrValue::Int),
            double().prop_map(AttrValue::Double),
            vec(any::<u8>(), 0..10).prop_map(AttrValue::Bytes),
            Just(AttrValue::Empty),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(AttrValue::Array),
                vec((text(), inner), 0..4).prop_map(|pairs| {
                    AttrValue::KeyValueList(
                        pairs
                            .into_iter()
                            .map(|(key, value)| Attribute::new(key, value))
                            .collect(),
                    )
                }),
            ]
        })
    }

    fn attributes() -> impl Strategy<Value = Vec<Attribute>> {
        vec(
            (text(), attr_value()).prop_map(|(key, value)| Attribute::new(key, value)),
            0..5,
        )
    }

    fn ip() -> impl Strategy<Value = Option<IpAddr>> {
        proptest::option::of(prop_oneof![
            any::<[u8; 4]>().prop_map(|bytes| IpAddr::V4(Ipv4Addr::from(bytes))),
            any::<[u8; 16]>().prop_map(|bytes| IpAddr::V6(Ipv6Addr::from(bytes))),
        ])
    }

    fn event() -> impl Strategy<Value = Event> {
        (any::<i64>(), text(), attributes(), any::<u32>()).prop_map(
            |(time_us, name, attributes, dropped_attributes_count)| Event {
                time_us,
                name,
                attributes,
                dropped_attributes_count,
            },
        )
    }

    fn link() -> impl Strategy<Value = Link> {
        (
            any::<[u8; 16]>(),
            any::<[u8; 8]>(),
            text(),
            attributes(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(trace, span, trace_state, attributes, dropped_attributes_count, flags)| Link {
                    trace_id: TraceId(trace),
                    span_id: SpanId(span),
                    trace_state,
                    attributes,
                    dropped_attributes_count,
                    flags,
                },
            )
    }

    fn resource() -> impl Strategy<Value = ResourceTags> {
        vec(text(), 12).prop_map(|tags| {
            let mut tags = tags.into_iter();
            let mut next = || tags.next().unwrap();
            ResourceTags {
                host_name: next(),
                container_id: next(),
                k8s_cluster_name: next(),
                k8s_namespace_name: next(),
                k8s_node_name: next(),
                k8s_pod_name: next(),
                k8s_pod_uid: next(),
                k8s_workload_kind: next(),
                k8s_workload_name: next(),
                service_namespace: next(),
                service_version: next(),
                deployment_environment: next(),
            }
        })
    }

    fn place() -> impl Strategy<Value = Place> {
        (
            vec(text(), 12),
            any::<[u8; 2]>(),
            vec((text(), text()), 0..3),
        )
            .prop_map(|(texts, types, labels)| {
                let mut place = Place {
                    auto_instance_type: AutoType::from_u8(types[0]),
                    auto_service_type: AutoType::from_u8(types[1]),
                    labels,
                    ..Place::default()
                };
                for ((name, _), value) in Place::TEXT_COLUMNS.iter().zip(texts) {
                    *place.text_mut(name).unwrap() = value;
                }
                place
            })
    }

    fn span_row() -> impl Strategy<Value = SpanRow> {
        let ids = (
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<[u8; 16]>(),
            any::<[u8; 8]>(),
            proptest::option::of(any::<[u8; 8]>()),
            0..7i32,
            prop_oneof![
                Just(ObservationPoint::ClientApp),
                Just(ObservationPoint::ServerApp),
                Just(ObservationPoint::App),
            ],
            text(),
            any::<u32>(),
        );
        let names = (text(), text(), text(), any::<u16>(), text(), any::<u8>());
        let request = (
            text(),
            text(),
            any::<bool>(),
            any::<u8>(),
            text(),
            text(),
            text(),
            any::<Option<i64>>(),
            any::<Option<i64>>(),
            any::<Option<i32>>(),
            0..6u8,
        );
        let response = (text(), any::<u8>(), text(), any::<u64>());
        let network = (ip(), ip(), any::<u16>(), any::<u16>(), text(), text());
        let nested = (
            resource(),
            attributes(),
            attributes(),
            vec(event(), 0..3),
            vec(link(), 0..3),
            any::<[u32; 3]>(),
        );
        let places = (place(), place());
        (ids, names, request, response, network, nested, places).prop_map(
            |(ids, names, request, response, network, nested, places)| SpanRow {
                time: ids.0,
                start_time: ids.1,
                end_time: ids.2,
                trace_id: TraceId(ids.3),
                span_id: SpanId(ids.4),
                parent_span_id: ids.5.map(SpanId),
                span_kind: SpanKind::from_i32(ids.6),
                observation_point: ids.7,
                trace_state: ids.8,
                flags: ids.9,
                endpoint: names.0,
                app_service: names.1,
                app_instance: names.2,
                signal_source: names.3,
                agent_id: names.4,
                l7_protocol: L7Protocol::from_u8(names.5),
                l7_protocol_str: request.0,
                version: request.1,
                is_tls: request.2,
                protocol: request.3,
                request_type: request.4,
                request_domain: request.5,
                request_resource: request.6,
                request_length: request.7,
                response_length: request.8,
                response_code: request.9,
                response_status: ResponseStatus::from_u8(request.10),
                response_exception: response.0,
                status_code: response.1,
                status_message: response.2,
                response_duration: response.3,
                ip_0: network.0,
                ip_1: network.1,
                client_port: network.2,
                server_port: network.3,
                place_0: places.0.into(),
                place_1: places.1.into(),
                scope_name: network.4,
                scope_version: network.5,
                resource: nested.0.into(),
                attributes: nested.1,
                resource_attributes: nested.2.into(),
                events: nested.3,
                links: nested.4,
                dropped_attributes_count: nested.5[0],
                dropped_events_count: nested.5[1],
                dropped_links_count: nested.5[2],
            },
        )
    }

    proptest! {
        #[test]
        fn schema_round_trips_generated_rows(rows in vec(span_row(), 0..6)) {
            let back = batch_to_rows(&rows_to_batch(&rows)).unwrap();
            prop_assert_eq!(canonical(back), canonical(rows));
        }

        /// Rows share resources, places and agents through `Arc`s and runs, in any order: one
        /// that comes back after another holds the value it held before.
        #[test]
        fn rows_sharing_what_spans_share_in_any_order_round_trip(
            pool in vec(span_row(), 1..4),
            picks in vec((0usize..4, 0usize..4, 0usize..4), 0..12),
        ) {
            let rows: Vec<SpanRow> = picks
                .iter()
                .map(|&(row, resource, place)| {
                    let from = &pool[resource % pool.len()];
                    let mut out = pool[row % pool.len()].clone();
                    out.resource = from.resource.clone();
                    out.resource_attributes = from.resource_attributes.clone();
                    out.agent_id = from.agent_id.clone();
                    out.place_1 = pool[place % pool.len()].place_0.clone();
                    out
                })
                .collect();
            let batch = rows_to_buffer(&rows);
            let n_resources = rows
                .iter()
                .map(|row| Arc::as_ptr(&row.resource))
                .collect::<std::collections::HashSet<_>>()
                .len();
            let host_names = batch.column_by_name("host_name").unwrap();
            prop_assert_eq!(host_names.as_dictionary::<Int32Type>().values().len(), n_resources);
            let back = batch_to_rows(&from_file(&from_buffer(&batch).unwrap()).unwrap()).unwrap();
            prop_assert_eq!(canonical(back), canonical(rows));
        }
    }
}
