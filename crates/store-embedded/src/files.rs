//! Writing one Parquet file of rows: sorted so that searches by service, endpoint and time read
//! little, zstd, dictionary encoding, page statistics, a bloom filter on `trace_id`; written to a
//! temporary name, fsynced, then renamed, with its trace-id index beside it.

use std::path::Path;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet_60::arrow::ArrowWriter;
use parquet_60::basic::{Compression, Encoding, ZstdLevel};
use parquet_60::file::properties::{EnabledStatistics, WriterProperties};
use parquet_60::schema::types::ColumnPath;

use crate::manifest::{sync_dir, write_durably, FileEntry};
use crate::trace_index::TraceIndex;
use crate::{schema, EmbeddedError};

/// Rows per row group: small enough that a bloom filter per group prunes well.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Rows per data page. A trace's spans lie apart in a file sorted by service, so a lookup
/// decodes a page of every column per span: smaller pages make lookups cheaper and files
/// larger; BENCHMARKS.md has the figures of each choice.
const PAGE_ROWS: usize = 2 * 1024;

/// The path of a column in a Parquet schema, its parts joined by dots (`attribute_values.list.item`
/// for a list's items). `ColumnPath::from` takes the whole text as one part, which names no
/// nested column.
fn column_path(name: &str) -> ColumnPath {
    ColumnPath::new(name.split('.').map(String::from).collect())
}

fn writer_properties(n_traces: usize) -> WriterProperties {
    let mut builder = WriterProperties::builder();
    for name in DELTA_COLUMNS {
        builder = builder
            .set_column_dictionary_enabled(column_path(name), false)
            .set_column_encoding(column_path(name), Encoding::DELTA_BINARY_PACKED);
    }
    for name in no_statistics_columns() {
        builder =
            builder.set_column_statistics_enabled(column_path(&name), EnabledStatistics::None);
    }
    for name in uncompressed_columns() {
        builder = builder.set_column_compression(column_path(&name), Compression::UNCOMPRESSED);
    }
    builder
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("level 1 is valid"),
        ))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        // Small pages plus the offset index let a lookup decode only the pages that hold the
        // rows it wants, instead of every column's whole row group.
        .set_data_page_row_count_limit(PAGE_ROWS)
        // Unique per row: a dictionary cannot help, and plain byte arrays spend four bytes a
        // value on its length, which delta-length encoding packs to nearly nothing.
        .set_column_dictionary_enabled(ColumnPath::from("span_id"), false)
        .set_column_encoding(
            ColumnPath::from("span_id"),
            Encoding::DELTA_LENGTH_BYTE_ARRAY,
        )
        .set_column_bloom_filter_enabled(ColumnPath::from("trace_id"), true)
        .set_column_bloom_filter_fpp(ColumnPath::from("trace_id"), 0.01)
        .set_column_bloom_filter_max_ndv(
            ColumnPath::from("trace_id"),
            n_traces.clamp(1, ROW_GROUP_ROWS) as u64,
        )
        .build()
}

/// The text columns whose page minimum and maximum are kept. A string's statistics cost a
/// comparison of the string per value written, and pay off only where a page's values lie
/// close together: the columns the file is sorted by (service, then endpoint) and those that
/// follow the service (its instance, namespace, workload, environment). In every other text
/// column a page of 2,048 spans spans nearly the whole range, and prunes nothing.
pub(crate) const TEXT_STATISTICS_COLUMNS: [&str; 7] = [
    "app_service",
    "endpoint",
    "app_instance",
    "k8s_namespace_name",
    "k8s_workload_name",
    "service_namespace",
    "deployment_environment",
];

/// Columns written without statistics: the byte columns (random ids, the packed resource
/// attributes), the span attribute lists (whose items mix every key's values) and the text
/// columns not in [`TEXT_STATISTICS_COLUMNS`]. Numbers keep theirs, which cost little, but for
/// the codes packed together.
fn no_statistics_columns() -> Vec<String> {
    let mut names = Vec::new();
    for field in schema::file_schema().fields() {
        match field.data_type() {
            DataType::Utf8 if !TEXT_STATISTICS_COLUMNS.contains(&field.name().as_str()) => {
                names.push(field.name().clone())
            }
            DataType::Binary => names.push(field.name().clone()),
            // Eight codes in one number, whose minimum and maximum say nothing of any one.
            DataType::UInt64 if field.name() == schema::CODES_COLUMN => {
                names.push(field.name().clone())
            }
            DataType::List(_) => names.push(format!("{}.list.item", field.name())),
            _ => {}
        }
    }
    names
}

/// Columns of few distinct values, whose dictionary indices run-length encode to almost
/// nothing, and columns whose encoding leaves nothing to compress (deltas, unique ids, counts
/// nearly always zero): compressing their pages again saves a few bytes or none, and costs a
/// lookup, which decodes one page of every column per span, a decompressor for each (with the
/// Parquet crate's zstd codec, a decompression context and a compression context each).
/// Both ends' place columns are among them.
fn uncompressed_columns() -> Vec<String> {
    let mut names: Vec<String> = UNCOMPRESSED_COLUMNS.map(String::from).to_vec();
    names.extend(schema::PLACE_COLUMNS.map(String::from));
    names
}

const UNCOMPRESSED_COLUMNS: [&str; 43] = [
    schema::CODES_COLUMN,
    "end_time_offset",
    "span_id",
    "response_code",
    "response_status",
    "status_code",
    "response_duration",
    "events",
    "links",
    "dropped_attributes_count",
    "dropped_events_count",
    "dropped_links_count",
    "span_kind",
    "observation_point",
    "trace_state",
    "flags",
    "app_service",
    "signal_source",
    "l7_protocol",
    "l7_protocol_str",
    "version",
    "is_tls",
    "protocol",
    "request_type",
    "request_domain",
    "request_length",
    "response_length",
    "response_exception",
    "status_message",
    "client_port",
    "server_port",
    "scope_name",
    "scope_version",
    "host_name",
    "container_id",
    "k8s_cluster_name",
    "k8s_namespace_name",
    "k8s_pod_uid",
    "k8s_workload_kind",
    "k8s_workload_name",
    "service_namespace",
    "service_version",
    "deployment_environment",
];

/// Times and durations: nearly ordered within a service and endpoint, so their differences
/// are small and pack tighter than the values.
const DELTA_COLUMNS: [&str; 3] = ["time", "start_time", "response_duration"];

/// Writes `runs` as file `id` of `partition`, one after another, each already in file order
/// (see [`crate::batches::runs_by_partition`]); `prepare` turns each run into the batch the
/// writer takes, of [`schema::file_schema`] or as a flush hands it over
/// ([`schema::buffer_to_file`]: its dictionaries are written as plain columns), one run at a
/// time. Returns the manifest entry and the file's trace-id index. Blocking.
pub fn write_file(
    data_dir: &Path,
    id: u64,
    partition: i64,
    runs: &[RecordBatch],
    prepare: impl Fn(&RecordBatch) -> Result<RecordBatch, EmbeddedError>,
) -> Result<(FileEntry, TraceIndex), EmbeddedError> {
    let column = |run: &RecordBatch, name: &str| {
        run.column_by_name(name)
            .cloned()
            .ok_or_else(|| EmbeddedError::corrupt(format!("rows without a {name} column")))
    };
    let ids = runs
        .iter()
        .map(|run| column(run, "trace_id"))
        .collect::<Result<Vec<_>, _>>()?;
    let start_times = runs
        .iter()
        .map(|run| column(run, "start_time"))
        .collect::<Result<Vec<_>, _>>()?;
    let start_times = start_times
        .iter()
        .map(|times| times.as_primitive::<arrow::datatypes::TimestampMicrosecondType>());
    let index = TraceIndex::build(ids.iter().map(|ids| ids.as_binary::<i32>()));
    let mut entry = FileEntry {
        id,
        partition,
        n_rows: runs.iter().map(RecordBatch::num_rows).sum::<usize>() as u64,
        n_bytes: 0,
        min_start_time: start_times
            .clone()
            .filter_map(arrow::compute::min)
            .min()
            .unwrap_or(0),
        max_start_time: start_times
            .filter_map(arrow::compute::max)
            .max()
            .unwrap_or(0),
        format: crate::manifest::FORMAT,
    };
    let path = data_dir.join(entry.relative_path());
    let dir = path.parent().expect("file paths have a parent");
    std::fs::create_dir_all(dir)
        .map_err(|error| EmbeddedError::io(format!("creating {}", dir.display()), error))?;
    let temporary = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&temporary)
        .map_err(|error| EmbeddedError::io(format!("creating {}", temporary.display()), error))?;
    let file = encode_into(runs, prepare, index.n_traces(), file, &temporary)?;
    file.sync_all()
        .map_err(|error| EmbeddedError::io(format!("syncing {}", temporary.display()), error))?;
    entry.n_bytes = file
        .metadata()
        .map_err(|error| EmbeddedError::io(format!("reading {}", temporary.display()), error))?
        .len();
    drop(file);
    write_durably(
        &data_dir.join(entry.relative_index_path()),
        &index.to_bytes(),
    )?;
    std::fs::rename(&temporary, &path)
        .map_err(|error| EmbeddedError::io(format!("renaming {}", temporary.display()), error))?;
    sync_dir(dir)?;
    Ok((entry, index))
}

/// Encodes `batch`, as files hold it and already in file order, as Parquet with the store's
/// writer properties, in memory (for benchmarks of the encoding).
pub fn encode(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), EmbeddedError> {
    let n_traces = batch
        .column_by_name("trace_id")
        .map(|ids| TraceIndex::build([ids.as_binary::<i32>()]).n_traces())
        .unwrap_or(0);
    encode_into(
        std::slice::from_ref(batch),
        |batch| Ok(batch.clone()),
        n_traces,
        out,
        Path::new("memory"),
    )?;
    Ok(())
}

/// Writes `runs` (each made of [`schema::file_schema`] by `prepare`) as one Parquet file to
/// `out`, in order, and hands `out` back; `path` names it in errors. The runs share row groups:
/// the writer starts one every [`ROW_GROUP_ROWS`] rows, wherever the runs meet.
fn encode_into<W: std::io::Write + Send>(
    runs: &[RecordBatch],
    prepare: impl Fn(&RecordBatch) -> Result<RecordBatch, EmbeddedError>,
    n_traces: usize,
    out: W,
    path: &Path,
) -> Result<W, EmbeddedError> {
    let mut writer = ArrowWriter::try_new(
        out,
        to_writer_schema(&schema::file_schema())?,
        Some(writer_properties(n_traces)),
    )
    .map_err(|error| EmbeddedError::parquet_write(path, error))?;
    for run in runs {
        let run = to_writer_batch(&for_writer(&prepare(run)?))?;
        writer
            .write(&run)
            .map_err(|error| EmbeddedError::parquet_write(path, error))?;
    }
    writer
        .into_inner()
        .map_err(|error| EmbeddedError::parquet_write(path, error))
}

/// `batch` as the writer is given it: its text and byte columns as dictionaries of their runs
/// where they come in runs ([`schema::runs_as_dictionary`]), but for those written without a
/// dictionary (`span_id`) and `trace_id`, whose rows a trace's spans hold apart; and every
/// column's values in an allocation of their own ([`schema::with_allocated_values`]).
fn for_writer(batch: &RecordBatch) -> RecordBatch {
    let (fields, columns): (Vec<_>, Vec<_>) = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, column)| {
            if matches!(field.name().as_str(), "span_id" | "trace_id") {
                return (field.clone(), schema::with_allocated_values(column));
            }
            let column = schema::with_allocated_values(&schema::runs_as_dictionary(column));
            let field = field
                .as_ref()
                .clone()
                .with_data_type(column.data_type().clone());
            (Arc::new(field), column)
        })
        .unzip();
    let schema = Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        batch.schema().metadata().clone(),
    ));
    RecordBatch::try_new(schema, columns).expect("the same columns, of the types they were given")
}

/// `batch` as the Parquet writer's Arrow takes it, its buffers shared, not copied: handed over
/// by the Arrow C data interface, which both Arrow versions speak.
fn to_writer_batch(batch: &RecordBatch) -> Result<arrow_array_60::RecordBatch, EmbeddedError> {
    use arrow_array_60::ffi as to;
    let bad = |error: &dyn std::fmt::Display| {
        EmbeddedError::corrupt(format!("handing rows to the parquet writer: {error}"))
    };
    let rows = arrow::array::StructArray::from(batch.clone());
    let (mut array, mut array_schema) =
        arrow::ffi::to_ffi(&arrow::array::Array::to_data(&rows)).map_err(|error| bad(&error))?;
    // SAFETY: both are the C data interface's `ArrowArray` and `ArrowSchema`, `#[repr(C)]` of one
    // layout; `from_raw` moves each out, leaving a released value behind, so each export's
    // release callback runs once, when the writer's copy is dropped.
    let (array, array_schema) = unsafe {
        (
            to::FFI_ArrowArray::from_raw((&raw mut array).cast()),
            to::FFI_ArrowSchema::from_raw((&raw mut array_schema).cast()),
        )
    };
    // SAFETY: the array was exported just above by Arrow itself, from valid data.
    let data = unsafe { to::from_ffi(array, &array_schema) }.map_err(|error| bad(&error))?;
    // The exported struct's fields are the batch's own, so its schema comes across with it.
    let (fields, columns, _) = arrow_array_60::StructArray::from(data).into_parts();
    let schema = std::sync::Arc::new(arrow_schema_60::Schema::new(fields));
    arrow_array_60::RecordBatch::try_new(schema, columns).map_err(|error| bad(&error))
}

/// `schema` as the Parquet writer's Arrow takes it.
fn to_writer_schema(
    schema: &arrow::datatypes::Schema,
) -> Result<arrow_schema_60::SchemaRef, EmbeddedError> {
    let bad = |error: &dyn std::fmt::Display| {
        EmbeddedError::corrupt(format!("handing a schema to the parquet writer: {error}"))
    };
    let mut exported =
        arrow::ffi::FFI_ArrowSchema::try_from(schema).map_err(|error| bad(&error))?;
    // SAFETY: as in `to_writer_batch`.
    let exported =
        unsafe { arrow_array_60::ffi::FFI_ArrowSchema::from_raw((&raw mut exported).cast()) };
    let schema = arrow_schema_60::Schema::try_from(&exported).map_err(|error| bad(&error))?;
    Ok(std::sync::Arc::new(schema))
}

/// Removes a file and its index; a file already gone is not an error.
pub fn remove_file(data_dir: &Path, entry: &FileEntry) -> Result<(), EmbeddedError> {
    for relative in [entry.relative_path(), entry.relative_index_path()] {
        let path = data_dir.join(relative);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(EmbeddedError::io(
                    format!("removing {}", path.display()),
                    error,
                ))
            }
        }
    }
    let dir = data_dir.join(entry.relative_path());
    if let Some(partition_dir) = dir.parent() {
        // Removing an emptied partition folder is tidiness, not correctness.
        let _ = std::fs::remove_dir(partition_dir);
    }
    Ok(())
}

/// Reads a file's trace-id index, rebuilding it from the file if the index is missing or bad.
pub fn load_index(data_dir: &Path, entry: &FileEntry) -> Result<TraceIndex, EmbeddedError> {
    let index_path = data_dir.join(entry.relative_index_path());
    if let Some(index) = std::fs::read(&index_path)
        .ok()
        .and_then(|bytes| TraceIndex::from_bytes(&bytes))
    {
        return Ok(index);
    }
    tracing::warn!(path = %index_path.display(), "trace-id index missing or damaged; rebuilding it from the file");
    let batches = read_file(data_dir, entry)?;
    let index = TraceIndex::build(
        batches
            .iter()
            .filter_map(|batch| batch.column_by_name("trace_id"))
            .map(|ids| ids.as_binary::<i32>()),
    );
    write_durably(&index_path, &index.to_bytes())?;
    Ok(index)
}

/// Every row of a file as this version's files hold them ([`schema::file_schema`]), to write
/// again: a file of this format as it is stored, an older one converted. Blocking.
pub fn read_file_for_rewrite(
    data_dir: &Path,
    entry: &FileEntry,
) -> Result<Vec<RecordBatch>, EmbeddedError> {
    let path = data_dir.join(entry.relative_path());
    let corrupt = |error: &dyn std::fmt::Display| {
        EmbeddedError::corrupt(format!("reading {}: {error}", path.display()))
    };
    if entry.format < crate::manifest::FORMAT {
        return read_file(data_dir, entry)?
            .iter()
            .map(|batch| schema::to_file(batch).map_err(|error| corrupt(&error)))
            .collect();
    }
    let file = std::fs::File::open(&path)
        .map_err(|error| EmbeddedError::io(format!("opening {}", path.display()), error))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.build())
        .map_err(|error| EmbeddedError::parquet(&path, error))?;
    reader
        .map(|batch| {
            let batch = batch.map_err(|error| corrupt(&error))?;
            RecordBatch::try_new(schema::file_schema(), batch.columns().to_vec())
                .map_err(|error| corrupt(&error))
        })
        .collect()
}

/// Every row of a file. Blocking.
pub fn read_file(data_dir: &Path, entry: &FileEntry) -> Result<Vec<RecordBatch>, EmbeddedError> {
    let path = data_dir.join(entry.relative_path());
    let file = std::fs::File::open(&path)
        .map_err(|error| EmbeddedError::io(format!("opening {}", path.display()), error))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.build())
        .map_err(|error| EmbeddedError::parquet(&path, error))?;
    batches_of(reader, &path)
}

/// What a trace lookup needs of a file before it reads rows: its footer and offset index,
/// parsed, for the most recently used files, up to a bound in bytes. File ids are never reused,
/// so an entry of a file since removed is only memory, dropped in its turn.
pub struct LookupCache {
    entries: std::sync::Mutex<LookupEntries>,
    max_bytes: usize,
}

#[derive(Default)]
struct LookupEntries {
    by_file: std::collections::HashMap<u64, (ArrowReaderMetadata, usize)>,
    /// File ids, least recently used first.
    order: std::collections::VecDeque<u64>,
    n_bytes: usize,
}

impl LookupCache {
    pub fn new(max_bytes: usize) -> LookupCache {
        LookupCache {
            entries: std::sync::Mutex::new(LookupEntries::default()),
            max_bytes,
        }
    }

    /// Only what a lookup uses: the offset index, to skip pages without the trace's rows; no
    /// statistics, which it never prunes by.
    fn options() -> ArrowReaderOptions {
        use parquet::file::metadata::{PageIndexPolicy, ParquetStatisticsPolicy};
        ArrowReaderOptions::new()
            .with_column_index_policy(PageIndexPolicy::Skip)
            .with_offset_index_policy(PageIndexPolicy::Optional)
            .with_column_stats_policy(ParquetStatisticsPolicy::SkipAll)
            .with_encoding_stats_policy(ParquetStatisticsPolicy::SkipAll)
    }

    fn metadata(
        &self,
        file_id: u64,
        load: impl FnOnce() -> Result<ArrowReaderMetadata, EmbeddedError>,
    ) -> Result<ArrowReaderMetadata, EmbeddedError> {
        {
            let mut entries = self.entries.lock().expect("lookup cache lock");
            if let Some((metadata, _)) = entries.by_file.get(&file_id) {
                let metadata = metadata.clone();
                entries.order.retain(|id| *id != file_id);
                entries.order.push_back(file_id);
                return Ok(metadata);
            }
        }
        let metadata = load()?;
        let n_bytes = metadata.metadata().memory_size();
        let mut entries = self.entries.lock().expect("lookup cache lock");
        if entries.by_file.contains_key(&file_id) || n_bytes > self.max_bytes {
            return Ok(metadata);
        }
        while entries.n_bytes + n_bytes > self.max_bytes {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            if let Some((_, bytes)) = entries.by_file.remove(&oldest) {
                entries.n_bytes -= bytes;
            }
        }
        entries.n_bytes += n_bytes;
        entries.order.push_back(file_id);
        entries.by_file.insert(file_id, (metadata.clone(), n_bytes));
        Ok(metadata)
    }

    /// Bytes held, as the parsed metadata reports them.
    pub fn n_bytes(&self) -> usize {
        self.entries.lock().expect("lookup cache lock").n_bytes
    }
}

/// The rows of one trace in a file. Only row groups whose `trace_id` bloom filter may hold the
/// trace are read; in them, a first pass over the `trace_id` column finds the trace's rows, and a
/// second decodes only the pages that hold those rows, the columns split in two halves read on
/// two threads (a trace's spans lie apart in a file sorted by service, so this pass decodes a
/// page of every column per span and is most of a lookup's time). Blocking.
pub fn read_trace(
    data_dir: &Path,
    entry: &FileEntry,
    trace_id: &[u8; 16],
    cache: &LookupCache,
) -> Result<Vec<RecordBatch>, EmbeddedError> {
    use arrow::array::Array;
    use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection};
    use parquet::arrow::ProjectionMask;

    let path = data_dir.join(entry.relative_path());
    let parquet_error = |error| EmbeddedError::parquet(&path, error);
    let open = || {
        std::fs::File::open(&path)
            .map_err(|error| EmbeddedError::io(format!("opening {}", path.display()), error))
    };
    let metadata = cache.metadata(entry.id, || {
        ArrowReaderMetadata::load(&open()?, LookupCache::options()).map_err(parquet_error)
    })?;
    let columns = metadata.parquet_schema().columns();
    let trace_column = columns
        .iter()
        .position(|column| column.name() == "trace_id")
        .ok_or_else(|| {
            EmbeddedError::corrupt(format!("{} has no trace_id column", path.display()))
        })?;
    let trace_root = metadata.parquet_schema().get_column_root_idx(trace_column);
    // A reader of its own file handle each: clones of one handle share its position, which
    // the reader seeks.
    let reader = || -> Result<_, EmbeddedError> {
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(
            open()?,
            metadata.clone(),
        ))
    };

    let bloom_reader = reader()?;
    let mut row_groups = Vec::new();
    for index in 0..metadata.metadata().num_row_groups() {
        let may_hold = bloom_reader
            .get_row_group_column_bloom_filter(index, trace_column)
            .map_err(parquet_error)?
            .is_none_or(|bloom| bloom.check(&trace_id[..]));
        if may_hold {
            row_groups.push(index);
        }
    }
    if row_groups.is_empty() {
        return Ok(Vec::new());
    }

    // The trace's rows, as positions within the chosen row groups.
    let ids = bloom_reader
        .with_row_groups(row_groups.clone())
        .with_projection(ProjectionMask::roots(
            metadata.parquet_schema(),
            [trace_root],
        ))
        .with_batch_size(ROW_GROUP_ROWS)
        .build()
        .map_err(parquet_error)?;
    let mut rows = Vec::new();
    let mut offset = 0;
    for batch in ids {
        let batch = batch.map_err(|error| {
            EmbeddedError::corrupt(format!("reading {}: {error}", path.display()))
        })?;
        let ids = batch.column(0).as_binary::<i32>();
        rows.extend(
            (0..ids.len())
                .filter(|&row| ids.is_valid(row) && ids.value(row) == trace_id)
                .map(|row| offset + row..offset + row + 1),
        );
        offset += ids.len();
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let n_rows = rows.len();
    let selection = RowSelection::from_consecutive_ranges(rows.into_iter(), offset);

    // All the columns, in two halves of about equal bytes to decode.
    let n_roots = metadata.schema().fields().len();
    let mut root_bytes = vec![0i64; n_roots];
    for &group in &row_groups {
        for (leaf, chunk) in metadata
            .metadata()
            .row_group(group)
            .columns()
            .iter()
            .enumerate()
        {
            let root = metadata.parquet_schema().get_column_root_idx(leaf);
            if let Some(bytes) = root_bytes.get_mut(root) {
                *bytes += chunk.compressed_size();
            }
        }
    }
    let mut by_bytes: Vec<usize> = (0..n_roots).collect();
    by_bytes.sort_by_key(|&root| std::cmp::Reverse(root_bytes[root]));
    let (mut left, mut right) = ((Vec::new(), 0), (Vec::new(), 0));
    for root in by_bytes {
        let side = if left.1 <= right.1 {
            &mut left
        } else {
            &mut right
        };
        side.0.push(root);
        side.1 += root_bytes[root];
    }
    let (left, right) = (left.0, right.0);
    let other_half = {
        let (path, metadata, row_groups, selection) = (
            path.clone(),
            metadata.clone(),
            row_groups.clone(),
            selection.clone(),
        );
        move || read_columns(&path, &metadata, &row_groups, &selection, right, n_rows)
    };
    let (left, right) = crate::join::join(
        || read_columns(&path, &metadata, &row_groups, &selection, left, n_rows),
        other_half,
    );
    let right = right.map_err(|_| EmbeddedError::corrupt("reading a trace's columns panicked"))?;
    let (left, right) = (left?, right?);
    let (mut fields, mut columns) = (Vec::with_capacity(n_roots), Vec::with_capacity(n_roots));
    for half in [&left, &right] {
        fields.extend(half.schema().fields().iter().cloned());
        columns.extend(half.columns().iter().cloned());
    }
    let corrupt = |error: &dyn std::fmt::Display| {
        EmbeddedError::corrupt(format!("reading {}: {error}", path.display()))
    };
    let both = RecordBatch::try_new(
        std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
        columns,
    )
    .map_err(|error| corrupt(&error))?;
    let batch = schema::from_file(&both).map_err(|error| corrupt(&error))?;
    crate::batches::check_schema(&batch, &path.display().to_string())?;
    Ok(vec![batch])
}

/// The `roots` columns of the rows `selection` picks in `row_groups`, as one batch. Blocking.
fn read_columns(
    path: &Path,
    metadata: &ArrowReaderMetadata,
    row_groups: &[usize],
    selection: &parquet::arrow::arrow_reader::RowSelection,
    roots: Vec<usize>,
    n_rows: usize,
) -> Result<RecordBatch, EmbeddedError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;
    let file = std::fs::File::open(path)
        .map_err(|error| EmbeddedError::io(format!("opening {}", path.display()), error))?;
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata.clone())
        .with_row_groups(row_groups.to_vec())
        .with_row_selection(selection.clone())
        .with_projection(ProjectionMask::roots(metadata.parquet_schema(), roots))
        .with_batch_size(n_rows)
        .build()
        .map_err(|error| EmbeddedError::parquet(path, error))?;
    let schema = arrow::record_batch::RecordBatchReader::schema(&reader);
    let batches = batches_of_any(reader, path)?;
    arrow::compute::concat_batches(&schema, &batches)
        .map_err(|error| EmbeddedError::corrupt(format!("reading {}: {error}", path.display())))
}

/// Every record batch a Parquet reader yields, whatever its columns.
fn batches_of_any(
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    path: &Path,
) -> Result<Vec<RecordBatch>, EmbeddedError> {
    reader
        .map(|batch| {
            batch.map_err(|error| {
                EmbeddedError::corrupt(format!("reading {}: {error}", path.display()))
            })
        })
        .collect()
}

/// Every record batch a Parquet reader yields.
fn batches_of(
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    path: &Path,
) -> Result<Vec<RecordBatch>, EmbeddedError> {
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|error| {
            EmbeddedError::corrupt(format!("reading {}: {error}", path.display()))
        })?;
        let batch = schema::from_file(&batch).map_err(|error| {
            EmbeddedError::corrupt(format!("reading {}: {error}", path.display()))
        })?;
        crate::batches::check_schema(&batch, &path.display().to_string())?;
        batches.push(batch);
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    // Files are read, here as by the store, with the reader of DataFusion's Parquet.
    use parquet::basic::{Compression, Encoding};
    use spanflow_model::SpanRow;
    use spanflow_store::conformance;
    use std::cell::Cell;

    fn write(dir: &Path, id: u64, trace: u8) -> FileEntry {
        let rows: Vec<_> = (1..=3u8)
            .map(|span| SpanRow {
                attributes: conformance::full_row().attributes,
                ..conformance::row(trace, span, "svc", "op", 1_700_000_000_000_000)
            })
            .collect();
        let batch = schema::to_file(&schema::rows_to_batch(&rows)).unwrap();
        write_file(dir, id, 1_699_999_200, &[batch], |batch| Ok(batch.clone()))
            .unwrap()
            .0
    }

    #[test]
    fn a_lookup_finds_its_rows_and_the_cache_keeps_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (write(dir.path(), 1, 1), write(dir.path(), 2, 2));
        let one_file = {
            let file = std::fs::File::open(dir.path().join(a.relative_path())).unwrap();
            ArrowReaderMetadata::load(&file, LookupCache::options())
                .unwrap()
                .metadata()
                .memory_size()
        };
        let cache = LookupCache::new(one_file + one_file / 2);

        let found =
            read_trace(dir.path(), &a, conformance::trace_id(1).as_bytes(), &cache).unwrap();
        assert_eq!(found.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        let missing =
            read_trace(dir.path(), &a, conformance::trace_id(2).as_bytes(), &cache).unwrap();
        assert!(missing.is_empty());
        let found =
            read_trace(dir.path(), &b, conformance::trace_id(2).as_bytes(), &cache).unwrap();
        assert_eq!(found.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert!(cache.n_bytes() <= one_file + one_file / 2);

        // b is held now, a was dropped for it.
        let loads = Cell::new(0);
        let load = |entry: &FileEntry| {
            loads.set(loads.get() + 1);
            let file = std::fs::File::open(dir.path().join(entry.relative_path())).unwrap();
            Ok(ArrowReaderMetadata::load(&file, LookupCache::options()).unwrap())
        };
        cache.metadata(b.id, || load(&b)).unwrap();
        assert_eq!(loads.get(), 0);
        cache.metadata(a.id, || load(&a)).unwrap();
        assert_eq!(loads.get(), 1);
    }

    /// The metadata of each column chunk of a written file's first row group, by column path.
    fn first_row_group() -> impl Fn(&str) -> parquet::file::metadata::ColumnChunkMetaData {
        let dir = tempfile::tempdir().unwrap();
        let entry = write(dir.path(), 1, 1);
        let file = std::fs::File::open(dir.path().join(entry.relative_path())).unwrap();
        let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        let group = parquet::file::reader::FileReader::metadata(&reader).row_group(0);
        let chunks: std::collections::HashMap<_, _> = group
            .columns()
            .iter()
            .map(|column| (column.column_path().string(), column.clone()))
            .collect();
        move |name| {
            chunks
                .get(name)
                .cloned()
                .unwrap_or_else(|| panic!("no column {name}"))
        }
    }

    #[test]
    fn searched_columns_keep_statistics_and_scattered_text_does_not() {
        let chunk = first_row_group();
        let has_statistics = |name: &str| {
            chunk(name)
                .statistics()
                .is_some_and(|statistics| statistics.min_bytes_opt().is_some())
        };
        for name in [
            "app_service",
            "endpoint",
            "start_time",
            "response_duration",
            "response_status",
        ] {
            assert!(has_statistics(name), "{name} has no statistics");
        }
        for name in [
            "trace_id",
            "request_resource",
            "status_message",
            "attribute_keys",
            "attribute_values.list.item",
            "resource_attributes",
        ] {
            assert!(!has_statistics(name), "{name} has statistics");
        }
    }

    #[test]
    fn numbers_nearly_always_zero_hold_their_zeros_as_null() {
        // Three spans, none of them with TLS, a client port, an end past start plus duration
        // or anything dropped.
        let chunk = first_row_group();
        for name in [
            "end_time_offset",
            "is_tls",
            "client_port",
            "dropped_attributes_count",
            "dropped_events_count",
            "dropped_links_count",
        ] {
            let statistics = chunk(name).statistics().cloned();
            assert_eq!(
                statistics.and_then(|statistics| statistics.null_count_opt()),
                Some(3),
                "{name}"
            );
        }
        // A zero that is not the rule stays a number.
        assert_eq!(
            chunk("server_port")
                .statistics()
                .and_then(|statistics| statistics.null_count_opt()),
            Some(0)
        );
    }

    #[test]
    fn times_are_delta_packed_and_attribute_keys_and_values_keep_a_dictionary() {
        let chunk = first_row_group();
        let encodings = |name: &str| chunk(name).encodings().collect::<Vec<_>>();
        for name in ["time", "start_time", "response_duration"] {
            let used = encodings(name);
            assert!(
                used.contains(&Encoding::DELTA_BINARY_PACKED),
                "{name}: {used:?}"
            );
            assert!(
                !used.contains(&Encoding::RLE_DICTIONARY),
                "{name}: {used:?}"
            );
        }
        for name in ["attribute_keys", "attribute_values.list.item"] {
            let used = encodings(name);
            assert!(used.contains(&Encoding::RLE_DICTIONARY), "{name}: {used:?}");
        }
    }

    #[test]
    fn columns_with_nothing_to_compress_are_stored_uncompressed() {
        let chunk = first_row_group();
        let compression = |name: &str| chunk(name).compression();
        for name in ["place_0", "place_1", "codes", "span_id", "events"] {
            assert_eq!(compression(name), Compression::UNCOMPRESSED, "{name}");
        }
        for name in [
            "trace_id",
            "ip_0",
            "attribute_values.list.item",
            "resource_attributes",
        ] {
            assert!(
                matches!(compression(name), Compression::ZSTD(_)),
                "{name} is {:?}",
                compression(name)
            );
        }
    }

    #[test]
    fn empty_text_is_null_in_the_file_and_empty_again_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let entry = write(dir.path(), 1, 1);
        let file = std::fs::File::open(dir.path().join(entry.relative_path())).unwrap();
        let raw = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let nulls = |name: &str| Some(raw.column_by_name(name).unwrap().null_count());
        // The rows have no status message and nothing known of the peer's place; every one
        // has a service.
        assert_eq!(nulls("status_message"), Some(3));
        assert_eq!(nulls("place_1"), Some(3));
        assert_eq!(nulls("app_service"), Some(0));

        let batches = read_file(dir.path(), &entry).unwrap();
        let messages = batches[0]
            .column_by_name("status_message")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(arrow::array::Array::null_count(messages), 0);
        assert!(messages.iter().all(|message| message == Some("")));
    }
}
