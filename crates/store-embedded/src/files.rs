//! Writing one Parquet file of rows: sorted so that searches by service, endpoint and time read
//! little, zstd, dictionary encoding, page statistics, a bloom filter on `trace_id`; written to a
//! temporary name, fsynced, then renamed, with its trace-id index beside it.

use std::path::Path;

use arrow::array::AsArray;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::manifest::{sync_dir, write_durably, FileEntry};
use crate::trace_index::TraceIndex;
use crate::{schema, EmbeddedError};

/// Rows per row group: small enough that a bloom filter per group prunes well.
const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Rows per data page.
const PAGE_ROWS: usize = 4 * 1024;

fn writer_properties(n_traces: usize) -> WriterProperties {
    let mut builder = WriterProperties::builder();
    // A trace's spans lie apart in a file sorted by service, so a lookup decodes one page of
    // every column per span; the attribute lists are the costly ones to decode, so their pages
    // end sooner.
    for name in LIST_COLUMNS {
        builder = builder.set_column_data_page_size_limit(ColumnPath::from(name), LIST_PAGE_BYTES);
    }
    for name in DELTA_COLUMNS {
        builder = builder
            .set_column_dictionary_enabled(ColumnPath::from(name), false)
            .set_column_encoding(ColumnPath::from(name), Encoding::DELTA_BINARY_PACKED);
    }
    builder
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("level 3 is valid"),
        ))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        // Small pages plus the offset index let a lookup decode only the pages that hold the
        // rows it wants, instead of every column's whole row group.
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(LIST_PAGE_ROWS)
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

const LIST_COLUMNS: [&str; 6] = [
    "attribute_names.list.item",
    "attribute_values.list.item",
    "attribute_types.list.item",
    "resource_attribute_names.list.item",
    "resource_attribute_values.list.item",
    "resource_attribute_types.list.item",
];
/// Rows written to a page at a time, and so the smallest a page of the attribute lists gets.
const LIST_PAGE_ROWS: usize = 1024;
const LIST_PAGE_BYTES: usize = 8 * 1024;

/// Times and durations: nearly ordered within a service and endpoint, so their differences
/// are small and pack tighter than the values.
const DELTA_COLUMNS: [&str; 4] = ["time", "start_time", "end_time", "response_duration"];

/// Writes `batch`, already in file order (see [`crate::batches::by_partition`]), as file `id`
/// of `partition`; returns the manifest entry and the file's trace-id index. Blocking.
pub fn write_file(
    data_dir: &Path,
    id: u64,
    partition: i64,
    batch: &RecordBatch,
) -> Result<(FileEntry, TraceIndex), EmbeddedError> {
    let ids = batch
        .column_by_name("trace_id")
        .ok_or_else(|| EmbeddedError::corrupt("rows without a trace_id column"))?
        .as_binary::<i32>();
    let index = TraceIndex::build([ids]);
    let start_times = batch
        .column_by_name("start_time")
        .ok_or_else(|| EmbeddedError::corrupt("rows without a start_time column"))?
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    let mut entry = FileEntry {
        id,
        partition,
        n_rows: batch.num_rows() as u64,
        n_bytes: 0,
        min_start_time: arrow::compute::min(start_times).unwrap_or(0),
        max_start_time: arrow::compute::max(start_times).unwrap_or(0),
    };
    let path = data_dir.join(entry.relative_path());
    let dir = path.parent().expect("file paths have a parent");
    std::fs::create_dir_all(dir)
        .map_err(|error| EmbeddedError::io(format!("creating {}", dir.display()), error))?;
    let temporary = path.with_extension("parquet.tmp");
    let file = std::fs::File::create(&temporary)
        .map_err(|error| EmbeddedError::io(format!("creating {}", temporary.display()), error))?;
    let mut writer = ArrowWriter::try_new(
        file,
        schema::schema(),
        Some(writer_properties(index.n_traces())),
    )
    .map_err(|error| EmbeddedError::parquet(&temporary, error))?;
    writer
        .write(batch)
        .map_err(|error| EmbeddedError::parquet(&temporary, error))?;
    let file = writer
        .into_inner()
        .map_err(|error| EmbeddedError::parquet(&temporary, error))?;
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

/// The rows of one trace in a file: only row groups whose `trace_id` bloom filter may hold the
/// trace are read, and of those only the rows whose `trace_id` matches are decoded past that
/// column. Blocking.
pub fn read_trace(
    data_dir: &Path,
    entry: &FileEntry,
    trace_id: &[u8; 16],
) -> Result<Vec<RecordBatch>, EmbeddedError> {
    use arrow::array::{Array, BooleanArray};
    use parquet::arrow::arrow_reader::{
        ArrowPredicateFn, ParquetRecordBatchReaderBuilder, RowFilter,
    };
    use parquet::arrow::ProjectionMask;
    use parquet::file::properties::ReaderProperties;
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};

    let path = data_dir.join(entry.relative_path());
    let open = || {
        std::fs::File::open(&path)
            .map_err(|error| EmbeddedError::io(format!("opening {}", path.display()), error))
    };
    let options = ReadOptionsBuilder::new()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let file_reader = SerializedFileReader::new_with_options(open()?, options)
        .map_err(|error| EmbeddedError::parquet(&path, error))?;
    let trace_column = file_reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|column| column.name() == "trace_id")
        .ok_or_else(|| {
            EmbeddedError::corrupt(format!("{} has no trace_id column", path.display()))
        })?;
    let mut row_groups = Vec::new();
    for index in 0..file_reader.num_row_groups() {
        let row_group = file_reader
            .get_row_group(index)
            .map_err(|error| EmbeddedError::parquet(&path, error))?;
        let may_hold = row_group
            .get_column_bloom_filter(trace_column)
            .is_none_or(|bloom| bloom.check(&trace_id[..]));
        if may_hold {
            row_groups.push(index);
        }
    }
    if row_groups.is_empty() {
        return Ok(Vec::new());
    }
    let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
        .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Optional);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(open()?, options)
        .map_err(|error| EmbeddedError::parquet(&path, error))?;
    let mask = ProjectionMask::leaves(builder.parquet_schema(), [trace_column]);
    let wanted = *trace_id;
    let predicate = ArrowPredicateFn::new(mask, move |batch| {
        let ids = batch.column(0).as_binary::<i32>();
        Ok(BooleanArray::from_iter(
            (0..ids.len()).map(|row| Some(ids.value(row) == wanted)),
        ))
    });
    let reader = builder
        .with_row_groups(row_groups)
        .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
        .build()
        .map_err(|error| EmbeddedError::parquet(&path, error))?;
    batches_of(reader, &path)
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
        crate::batches::check_schema(&batch, &path.display().to_string())?;
        batches.push(batch);
    }
    Ok(batches)
}
