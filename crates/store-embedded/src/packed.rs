//! Attribute sets packed as one binary value a span instead of three lists, as files hold a
//! span's resource attributes.
//!
//! Rows keep DeepFlow's three parallel lists per set (`attribute_names`, `attribute_values`,
//! `attribute_types`, and the same for `resource_attribute_*`), which SQL indexes into. Written
//! as lists, each item costs a flush a lookup in its column's dictionary plus repetition and
//! definition levels (a typical span has about 11 resource attributes: 33 items), and a trace
//! lookup decodes a page of each list column per span. Packed, a set is one value: for each
//! attribute, its key's length (LEB128) and bytes, its type code (a byte, as `attribute_types`
//! has it), and its value text's length and bytes; an empty set is null. The spans of one
//! resource carry the same set, so the packed column's dictionary holds each resource once and
//! a span costs one index.
//!
//! A span's own attributes are not packed whole in files: their values repeat apart (a status
//! code here, a thread name there) but rarely all together, so packed they compress to about 13
//! bytes a span where a list's dictionary takes under 8. Their keys do repeat together (the
//! spans of one operation carry the same names of the same types), so files hold a span's key
//! set packed ([`pack_keys`]: the same form, every value empty) beside its values' list. The
//! store's buffer and write-ahead log hold a span's set packed whole: a flush gathers a row's
//! set as one value, then splits it once ([`split`]).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, DictionaryArray, Int32Array, ListArray,
    StringArray, UInt8Array,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::Int32Type;
use arrow::datatypes::{DataType, Field};

use spanflow_model::{AttrValue, Attribute};
use spanflow_store::text::{write_value_text, TYPE_STRING};

use crate::schema::SchemaError;

/// The three lists of one attribute set, each a `List` column of the row schema.
pub struct Lists<'a> {
    pub names: &'a ListArray,
    pub values: &'a ListArray,
    pub types: &'a ListArray,
}

fn items<'a, T: Array + 'static>(list: &'a ListArray, what: &str) -> Result<&'a T, SchemaError> {
    list.values()
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| SchemaError(format!("attribute {what} are {}", list.data_type())))
}

fn push_length(out: &mut impl PackOut, mut length: usize) {
    if length < 0x80 {
        return out.byte(length as u8);
    }
    let (mut bytes, mut n) = ([0u8; 10], 0);
    while length >= 0x80 {
        bytes[n] = (length as u8) | 0x80;
        length >>= 7;
        n += 1;
    }
    bytes[n] = length as u8;
    out.bytes(&bytes[..=n]);
}

/// Where a set is packed: a vector, or the value a binary column's builder is building (closed
/// by an `append_value` of nothing), which spares a copy of the set.
pub trait PackOut {
    fn bytes(&mut self, bytes: &[u8]);

    fn byte(&mut self, byte: u8) {
        self.bytes(&[byte]);
    }
}

impl PackOut for Vec<u8> {
    fn bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn byte(&mut self, byte: u8) {
        self.push(byte);
    }
}

impl PackOut for BinaryBuilder {
    fn bytes(&mut self, bytes: &[u8]) {
        std::io::Write::write_all(self, bytes).expect("writing to memory cannot fail");
    }
}

/// One set as [`pack`] packs it, appended to `out`: the same bytes as the set's three lists
/// would pack to. `text` and `json` are scratch space.
pub fn pack_attributes(
    attributes: &[Attribute],
    out: &mut impl PackOut,
    text: &mut String,
    json: &mut Vec<u8>,
) {
    for attribute in attributes {
        push_length(out, attribute.key.len());
        out.bytes(attribute.key.as_bytes());
        // Text as it is; other values as their text, written first.
        let (code, value) = match &attribute.value {
            AttrValue::String(value) => (TYPE_STRING, value.as_str()),
            value => {
                text.clear();
                (write_value_text(text, value, json), text.as_str())
            }
        };
        out.byte(code);
        push_length(out, value.len());
        out.bytes(value.as_bytes());
    }
}

/// Each row's set as one value; null where the set is empty.
pub fn pack(lists: Lists<'_>) -> Result<BinaryArray, SchemaError> {
    pack_sets(lists.names, Some(lists.values), lists.types)
}

/// Each row's key set: its attributes' names and types packed as [`pack`] packs a set, every
/// value empty; null where the set is empty. The spans of one (service, operation) mostly
/// carry the same keys, so a file's dictionary holds each key set once and a span costs one
/// index, where two lists cost a lookup and two levels an item.
pub fn pack_keys(names: &ListArray, types: &ListArray) -> Result<BinaryArray, SchemaError> {
    pack_sets(names, None, types)
}

fn pack_sets(
    name_lists: &ListArray,
    value_lists: Option<&ListArray>,
    type_lists: &ListArray,
) -> Result<BinaryArray, SchemaError> {
    let names = items::<StringArray>(name_lists, "names")?;
    let values = value_lists
        .map(|values| items::<StringArray>(values, "values"))
        .transpose()?;
    let types = items::<UInt8Array>(type_lists, "types")?;
    let (name_offsets, type_offsets) = (name_lists.value_offsets(), type_lists.value_offsets());
    let n_rows = name_lists.len();
    if value_lists.is_some_and(|values| values.len() != n_rows) || type_lists.len() != n_rows {
        return Err(SchemaError("attribute lists of different lengths".into()));
    }
    let item_bytes = |strings: &StringArray| {
        let offsets = strings.value_offsets();
        (offsets[offsets.len() - 1] - offsets[0]) as usize
    };
    let capacity = item_bytes(names) + values.map_or(0, item_bytes) + 3 * types.len();
    let mut builder = BinaryBuilder::with_capacity(n_rows, capacity);
    let mut value = Vec::with_capacity(256);
    for row in 0..n_rows {
        let (first, end) = (name_offsets[row] as usize, name_offsets[row + 1] as usize);
        let n = end - first;
        let n_values = value_lists.map_or(n, |values| {
            let offsets = values.value_offsets();
            offsets[row + 1] as usize - offsets[row] as usize
        });
        if n_values != n || type_offsets[row + 1] as usize - type_offsets[row] as usize != n {
            return Err(SchemaError(format!(
                "row {row}: attribute names, values and types differ in number"
            )));
        }
        if n == 0 {
            builder.append_null();
            continue;
        }
        value.clear();
        let type_first = type_offsets[row] as usize;
        let value_first = value_lists.map_or(0, |lists| lists.value_offsets()[row] as usize);
        for item in 0..n {
            let name = names.value(first + item).as_bytes();
            push_length(&mut value, name.len());
            value.extend_from_slice(name);
            value.push(types.value(type_first + item));
            let text = values.map_or(&[][..], |values| {
                values.value(value_first + item).as_bytes()
            });
            push_length(&mut value, text.len());
            value.extend_from_slice(text);
        }
        builder.append_value(&value);
    }
    Ok(builder.finish())
}

/// Full packed sets (as [`pack`] packs them) split into each row's key set (as [`pack_keys`]
/// packs it) and its values' list (`List<Utf8>`), as files of storage format 7 hold a span's
/// own attributes.
pub fn split(packed: &BinaryArray) -> Result<(BinaryArray, ArrayRef), SchemaError> {
    let (keys, values) = split_sets(packed, false)?;
    Ok((keys.as_binary::<i32>().clone(), values))
}

/// [`split`], with what rows repeat shared, for a file's writer: the key sets as a dictionary
/// of a value a run of rows with the same keys, and the values' list of a dictionary in which
/// an item equal to the item at the same place in the row before is the same entry. A
/// file's rows are sorted by service and endpoint, so rows in turn mostly carry the same keys
/// and many of the same values (a method, a status code, a peer); the writer interns an
/// entry once, where it interns a plain item at every row, and the entries are copied once.
pub fn split_shared(packed: &BinaryArray) -> Result<(ArrayRef, ArrayRef), SchemaError> {
    split_sets(packed, true)
}

fn split_sets(packed: &BinaryArray, shared: bool) -> Result<(ArrayRef, ArrayRef), SchemaError> {
    let total = {
        let offsets = packed.value_offsets();
        (offsets[offsets.len() - 1] - offsets[0]) as usize
    };
    let n_rows = packed.len();
    let (mut key_offsets, mut key_bytes) = (Vec::with_capacity(n_rows + 1), Vec::new());
    key_offsets.push(0i32);
    key_bytes.reserve(if shared { total / 8 } else { total });
    let mut row_keys: Vec<i32> = Vec::with_capacity(n_rows);
    let mut list_offsets: Vec<i32> = Vec::with_capacity(n_rows + 1);
    list_offsets.push(0);
    let (mut value_offsets, mut value_bytes) = (vec![0i32], Vec::with_capacity(total / 2));
    let mut item_keys: Vec<i32> = Vec::with_capacity(total / 8);
    // The entries of the last row's items, and of this row's.
    let (mut last_items, mut items): (Vec<i32>, Vec<i32>) = (Vec::new(), Vec::new());
    let bad = |row: usize| SchemaError(format!("row {row}: a packed attribute set is cut short"));
    for row in 0..n_rows {
        if packed.is_valid(row) {
            let mut cursor = Cursor {
                bytes: packed.value(row),
                at: 0,
            };
            let key_start = key_bytes.len();
            items.clear();
            while cursor.at < cursor.bytes.len() {
                let item_start = cursor.at;
                let n = cursor.length().ok_or_else(|| bad(row))?;
                cursor.take(n + 1).ok_or_else(|| bad(row))?;
                key_bytes.extend_from_slice(&cursor.bytes[item_start..cursor.at]);
                key_bytes.push(0);
                let n = cursor.length().ok_or_else(|| bad(row))?;
                let value = cursor.take(n).ok_or_else(|| bad(row))?;
                items.push(value_entry(
                    value,
                    shared
                        .then(|| last_items.get(items.len()).copied())
                        .flatten(),
                    &mut value_offsets,
                    &mut value_bytes,
                )?);
            }
            let n_keys = key_offsets.len() - 1;
            let last_start = key_offsets[n_keys.saturating_sub(1)] as usize;
            let same_keys = shared
                && n_keys > 0
                && key_start - last_start == key_bytes.len() - key_start
                && key_bytes[last_start..key_start] == key_bytes[key_start..];
            if same_keys {
                key_bytes.truncate(key_start);
            } else {
                key_offsets.push(offset(key_bytes.len())?);
            }
            row_keys.push(key_offsets.len() as i32 - 2);
            item_keys.extend_from_slice(&items);
            std::mem::swap(&mut last_items, &mut items);
        } else {
            row_keys.push(0);
            if !shared {
                key_offsets.push(offset(key_bytes.len())?);
            }
        }
        list_offsets.push(offset(item_keys.len())?);
    }
    let failed =
        |error: arrow::error::ArrowError| SchemaError(format!("a packed attribute set: {error}"));
    let key_sets = BinaryArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(key_offsets)),
        key_bytes.into(),
        None,
    )
    .map_err(failed)?;
    let entries = StringArray::try_new(
        OffsetBuffer::new(ScalarBuffer::from(value_offsets)),
        value_bytes.into(),
        None,
    )
    .map_err(failed)?;
    let (keys, item_type, items): (ArrayRef, DataType, ArrayRef) = if shared {
        let keys = DictionaryArray::<Int32Type>::try_new(
            Int32Array::new(row_keys.into(), packed.nulls().cloned()),
            Arc::new(key_sets),
        )
        .map_err(failed)?;
        let items = DictionaryArray::<Int32Type>::try_new(
            Int32Array::new(item_keys.into(), None),
            Arc::new(entries),
        )
        .map_err(failed)?;
        let item_type = items.data_type().clone();
        (Arc::new(keys), item_type, Arc::new(items))
    } else {
        let keys = BinaryArray::try_new(
            key_sets.offsets().clone(),
            key_sets.values().clone(),
            packed.nulls().cloned(),
        )
        .map_err(failed)?;
        (Arc::new(keys), DataType::Utf8, Arc::new(entries))
    };
    let field = Arc::new(Field::new_list_field(item_type, true));
    let values = ListArray::try_new(
        field,
        OffsetBuffer::new(ScalarBuffer::from(list_offsets)),
        items,
        None,
    )
    .map_err(failed)?;
    Ok((keys, Arc::new(values)))
}

/// The entry of an item's `value`: `same`, the entry of the same item of the row before, where
/// it holds the same text, else a new entry.
fn value_entry(
    value: &[u8],
    same: Option<i32>,
    offsets: &mut Vec<i32>,
    bytes: &mut Vec<u8>,
) -> Result<i32, SchemaError> {
    if let Some(entry) = same {
        let entry = entry as usize;
        if bytes[offsets[entry] as usize..offsets[entry + 1] as usize] == *value {
            return Ok(entry as i32);
        }
    }
    bytes.extend_from_slice(value);
    offsets.push(offset(bytes.len())?);
    Ok(offsets.len() as i32 - 2)
}

/// Which of the three lists to rebuild.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    Names,
    Values,
    Types,
}

impl Part {
    /// In the order of the row schema's columns; `part as usize` is the index.
    pub const ALL: [Part; 3] = [Part::Names, Part::Values, Part::Types];

    /// The list's column suffix: `names`, `values` or `types`.
    pub fn name(self) -> &'static str {
        match self {
            Part::Names => "names",
            Part::Values => "values",
            Part::Types => "types",
        }
    }

    /// The list column's type, as the row schema has it.
    pub fn data_type(self) -> DataType {
        DataType::List(Arc::new(Field::new_list_field(self.item_type(), true)))
    }

    fn item_type(self) -> DataType {
        match self {
            Part::Names | Part::Values => DataType::Utf8,
            Part::Types => DataType::UInt8,
        }
    }
}

/// Reads packed sets one length or byte at a time, failing on a value cut short.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn length(&mut self) -> Option<usize> {
        let mut length = 0usize;
        for shift in (0..35).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            length |= usize::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(length);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
}

/// The lists of `parts` rebuilt from packed sets (a null set is an empty list), in the order
/// asked for.
pub fn unpack(packed: &BinaryArray, parts: &[Part]) -> Result<Vec<ArrayRef>, SchemaError> {
    let want = |part| parts.contains(&part);
    let (want_names, want_values, want_types) =
        (want(Part::Names), want(Part::Values), want(Part::Types));
    let total = {
        let offsets = packed.value_offsets();
        (offsets[offsets.len() - 1] - offsets[0]) as usize
    };
    let mut list_offsets: Vec<i32> = Vec::with_capacity(packed.len() + 1);
    list_offsets.push(0);
    let (mut name_offsets, mut value_offsets) = (vec![0i32], vec![0i32]);
    let (mut name_bytes, mut value_bytes, mut types) = (
        Vec::with_capacity(if want_names { total / 2 } else { 0 }),
        Vec::with_capacity(if want_values { total } else { 0 }),
        Vec::new(),
    );
    let mut n_items = 0usize;
    let bad = |row: usize| SchemaError(format!("row {row}: a packed attribute set is cut short"));
    for row in 0..packed.len() {
        if packed.is_valid(row) {
            let mut cursor = Cursor {
                bytes: packed.value(row),
                at: 0,
            };
            while cursor.at < cursor.bytes.len() {
                let n = cursor.length().ok_or_else(|| bad(row))?;
                let name = cursor.take(n).ok_or_else(|| bad(row))?;
                let code = *cursor
                    .take(1)
                    .ok_or_else(|| bad(row))?
                    .first()
                    .expect("one byte");
                let n = cursor.length().ok_or_else(|| bad(row))?;
                let value = cursor.take(n).ok_or_else(|| bad(row))?;
                if want_names {
                    name_bytes.extend_from_slice(name);
                    name_offsets.push(offset(name_bytes.len())?);
                }
                if want_values {
                    value_bytes.extend_from_slice(value);
                    value_offsets.push(offset(value_bytes.len())?);
                }
                if want_types {
                    types.push(code);
                }
                n_items += 1;
            }
        }
        list_offsets.push(offset(n_items)?);
    }
    let list_offsets = OffsetBuffer::new(ScalarBuffer::from(list_offsets));
    let strings = |offsets: Vec<i32>, bytes: Vec<u8>| {
        StringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            bytes.into(),
            None,
        )
        .map_err(|error| SchemaError(format!("a packed attribute set: {error}")))
    };
    let mut names = Some((name_offsets, name_bytes));
    let mut values = Some((value_offsets, value_bytes));
    let mut types = Some(types);
    parts
        .iter()
        .map(|&part| {
            let items: ArrayRef = match part {
                Part::Names => {
                    let (offsets, bytes) = names.take().unwrap_or_default();
                    Arc::new(strings(offsets, bytes)?)
                }
                Part::Values => {
                    let (offsets, bytes) = values.take().unwrap_or_default();
                    Arc::new(strings(offsets, bytes)?)
                }
                Part::Types => Arc::new(UInt8Array::from(types.take().unwrap_or_default())),
            };
            let field = Arc::new(Field::new_list_field(part.item_type(), true));
            ListArray::try_new(field, list_offsets.clone(), items, None)
                .map(|list| Arc::new(list) as ArrayRef)
                .map_err(|error| SchemaError(format!("a packed attribute set: {error}")))
        })
        .collect()
}

fn offset(n: usize) -> Result<i32, SchemaError> {
    i32::try_from(n).map_err(|_| SchemaError("attribute sets too large for one batch".into()))
}

/// Texts packed as one value a row, as files hold the place of each end of a span: each
/// text's length (LEB128) and bytes, one of each column in turn; a null text packs as empty, and
/// a row of nothing but empty texts is null.
/// The spans of a file come from few places, so the packed column's dictionary holds each once
/// and a span costs the writer one index, where thirteen text columns cost it thirteen.
pub fn pack_texts(columns: &[&StringArray]) -> BinaryArray {
    let n_rows = columns.first().map_or(0, |column| column.len());
    let n_bytes: usize = columns
        .iter()
        .map(|column| column.value_data().len() + column.len())
        .sum();
    let mut builder = BinaryBuilder::with_capacity(n_rows, n_bytes);
    fn text(column: &StringArray, row: usize) -> &str {
        if column.is_valid(row) {
            column.value(row)
        } else {
            ""
        }
    }
    for row in 0..n_rows {
        if columns.iter().all(|column| text(column, row).is_empty()) {
            builder.append_null();
            continue;
        }
        for column in columns {
            let text = text(column, row);
            push_length(&mut builder, text.len());
            builder.bytes(text.as_bytes());
        }
        builder.append_value([]);
    }
    builder.finish()
}

/// The texts of values [`pack_texts`] packed, `n` a value: all `n` columns, or only the one at
/// `only`. A null value, or an empty one, holds `n` empty texts.
pub fn unpack_texts(
    packed: &BinaryArray,
    n: usize,
    only: Option<usize>,
) -> Result<Vec<StringArray>, SchemaError> {
    let wanted = |index: usize| only.is_none_or(|only| only == index);
    let n_columns = if only.is_some() { 1 } else { n };
    let mut offsets: Vec<Vec<i32>> = (0..n_columns)
        .map(|_| {
            let mut offsets = Vec::with_capacity(packed.len() + 1);
            offsets.push(0);
            offsets
        })
        .collect();
    let mut bytes: Vec<Vec<u8>> = vec![Vec::new(); n_columns];
    let bad = |row: usize| SchemaError(format!("row {row}: a packed place is cut short"));
    for row in 0..packed.len() {
        let mut cursor = Cursor {
            bytes: if packed.is_valid(row) {
                packed.value(row)
            } else {
                &[]
            },
            at: 0,
        };
        let mut column = 0;
        for index in 0..n {
            let text = if cursor.bytes.is_empty() {
                &[][..]
            } else {
                let length = cursor.length().ok_or_else(|| bad(row))?;
                cursor.take(length).ok_or_else(|| bad(row))?
            };
            if wanted(index) {
                bytes[column].extend_from_slice(text);
                offsets[column].push(offset(bytes[column].len())?);
                column += 1;
            }
        }
        if cursor.at != cursor.bytes.len() {
            return Err(SchemaError(format!(
                "row {row}: a packed place holds more than {n} texts"
            )));
        }
    }
    offsets
        .into_iter()
        .zip(bytes)
        .map(|(offsets, bytes)| {
            StringArray::try_new(
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                bytes.into(),
                None,
            )
            .map_err(|error| SchemaError(format!("a packed place: {error}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ListBuilder, StringBuilder, UInt8Builder};

    fn lists(rows: &[&[(&str, u8, &str)]]) -> [ListArray; 3] {
        let mut names = ListBuilder::new(StringBuilder::new());
        let mut values = ListBuilder::new(StringBuilder::new());
        let mut types = ListBuilder::new(UInt8Builder::new());
        for row in rows {
            for (name, code, value) in row.iter() {
                names.values().append_value(name);
                types.values().append_value(*code);
                values.values().append_value(value);
            }
            names.append(true);
            values.append(true);
            types.append(true);
        }
        [names.finish(), values.finish(), types.finish()]
    }

    /// The three lists of `rows` and their sets packed.
    fn packed(rows: &[&[(&str, u8, &str)]]) -> ([ListArray; 3], BinaryArray) {
        let [names, values, types] = lists(rows);
        let packed = pack(Lists {
            names: &names,
            values: &values,
            types: &types,
        })
        .unwrap();
        ([names, values, types], packed)
    }

    #[test]
    fn sets_round_trip_and_an_empty_set_is_null() {
        let long = "v".repeat(300);
        let rows: [&[(&str, u8, &str)]; 3] = [
            &[("http.route", 0, "/cart"), ("http.status_code", 2, "200")],
            &[],
            &[("", 0, ""), ("db.statement", 0, &long)],
        ];
        let ([names, values, types], packed) = packed(&rows);
        assert_eq!(packed.len(), 3);
        assert!(packed.is_null(1));
        let back = unpack(&packed, &Part::ALL).unwrap();
        assert_eq!(back[0].as_ref(), &names as &dyn Array);
        assert_eq!(back[1].as_ref(), &values as &dyn Array);
        assert_eq!(back[2].as_ref(), &types as &dyn Array);
        // One list alone, as SQL asks for it.
        let only_values = unpack(&packed, &[Part::Values]).unwrap();
        assert_eq!(only_values[0].as_ref(), &values as &dyn Array);
    }

    #[test]
    fn a_value_cut_short_is_an_error_not_a_panic() {
        let (_, packed) = packed(&[&[("key", 0, "value")]]);
        let whole = packed.value(0);
        for cut in 1..whole.len() {
            let short = BinaryArray::from_vec(vec![&whole[..cut]]);
            let error = unpack(&short, &Part::ALL).unwrap_err();
            assert!(error.0.contains("cut short"), "{}", error.0);
            // A flush's split fails as unpacking does.
            let error = split(&short).unwrap_err();
            assert!(error.0.contains("cut short"), "{}", error.0);
            let error = split_shared(&short).unwrap_err();
            assert!(error.0.contains("cut short"), "{}", error.0);
        }
        let invalid_utf8 = BinaryArray::from_vec(vec![&[1, 0xff, 0, 0][..]]);
        assert!(unpack(&invalid_utf8, &Part::ALL).is_err());
    }

    #[test]
    fn texts_round_trip_one_value_a_row_and_a_bad_value_is_an_error() {
        let pods = StringArray::from(vec![Some("web-1"), None, Some(""), Some("é")]);
        let zones = StringArray::from(vec![Some("eu-1a"), None, Some(""), Some("")]);
        let packed = pack_texts(&[&pods, &zones]);
        assert_eq!(packed.len(), 4);
        assert_eq!(packed.value(0), b"\x05web-1\x05eu-1a");
        // Nothing known packs as null; null and empty texts read as empty.
        assert!(packed.is_null(1) && packed.is_null(2));
        let texts = unpack_texts(&packed, 2, None).unwrap();
        let expected = [
            StringArray::from(vec!["web-1", "", "", "é"]),
            StringArray::from(vec!["eu-1a", "", "", ""]),
        ];
        assert_eq!(texts, expected);
        assert_eq!(
            unpack_texts(&packed, 2, Some(1)).unwrap(),
            [expected[1].clone()]
        );
        let whole = packed.value(0);
        for cut in 1..whole.len() {
            let short = BinaryArray::from_vec(vec![&whole[..cut]]);
            let error = unpack_texts(&short, 2, None).unwrap_err();
            assert!(error.0.contains("cut short"), "{cut}: {}", error.0);
        }
        let error = unpack_texts(&packed, 1, None).unwrap_err();
        assert!(error.0.contains("more than 1"), "{}", error.0);
        let invalid_utf8 = BinaryArray::from_vec(vec![&[1, 0xff, 0][..]]);
        assert!(unpack_texts(&invalid_utf8, 2, None).is_err());
    }

    #[test]
    fn a_split_set_is_its_key_set_and_its_values_list() {
        let rows: [&[(&str, u8, &str)]; 4] = [
            &[("http.route", 0, "/cart"), ("http.status_code", 2, "200")],
            &[],
            &[("http.route", 0, "/pay"), ("http.status_code", 2, "500")],
            &[("", 0, ""), ("db.statement", 0, &"v".repeat(300))],
        ];
        let ([names, values, types], packed) = packed(&rows);
        let (keys, split_values) = split(&packed).unwrap();
        assert_eq!(keys, pack_keys(&names, &types).unwrap());
        assert_eq!(split_values.as_ref(), &values as &dyn Array);
        // Spans with the same keys and other values share one key set.
        assert_eq!(keys.value(0), keys.value(2));
        assert!(keys.is_null(1));
        let back = unpack(&keys, &[Part::Names, Part::Types]).unwrap();
        assert_eq!(back[0].as_ref(), &names as &dyn Array);
        assert_eq!(back[1].as_ref(), &types as &dyn Array);
    }

    #[test]
    fn a_set_split_for_a_file_shares_the_keys_and_values_rows_repeat() {
        let rows: [&[(&str, u8, &str)]; 6] = [
            &[("http.method", 0, "GET"), ("http.status_code", 2, "200")],
            &[("http.method", 0, "GET"), ("http.status_code", 2, "500")],
            &[],
            &[("http.method", 0, "GET"), ("http.status_code", 2, "500")],
            &[
                ("db.system", 0, "GET"),
                ("db.statement", 0, "500"),
                ("x", 0, ""),
            ],
            &[("http.method", 0, "POST"), ("http.status_code", 2, "500")],
        ];
        let (_, packed) = packed(&rows);
        let (plain_keys, plain_values) = split(&packed).unwrap();
        let (keys, values) = split_shared(&packed).unwrap();
        // Read as plain columns, the same as `split` makes.
        let keys_back = arrow::compute::cast(&keys, &DataType::Binary).unwrap();
        assert_eq!(keys_back.as_binary::<i32>(), &plain_keys);
        let values_back = arrow::compute::cast(&values, plain_values.data_type()).unwrap();
        assert_eq!(values_back.as_ref(), plain_values.as_ref());
        // Three runs of keys (the empty set is null, and does not end a run). Entries for GET,
        // 200 and 500; the fifth row's first two items hold the text of the items at their
        // places in the row before, though under other keys, and share their entries; then
        // its empty value and the sixth row's POST.
        let keys = keys.as_dictionary::<Int32Type>();
        assert_eq!(keys.values().len(), 3);
        assert!(keys.is_null(2));
        let items = values
            .as_list::<i32>()
            .values()
            .as_dictionary::<Int32Type>()
            .clone();
        let entries = items.values().as_string::<i32>();
        let entries: Vec<&str> = entries.iter().map(Option::unwrap).collect();
        assert_eq!(entries, ["GET", "200", "500", "", "POST"]);
    }

    #[test]
    fn lists_that_disagree_in_length_are_refused() {
        let [names, _, types] = lists(&[&[("a", 0, "1")]]);
        let [_, values, more_types] = lists(&[&[("a", 0, "1"), ("b", 0, "2")]]);
        assert!(pack(Lists {
            names: &names,
            values: &values,
            types: &types,
        })
        .is_err());
        assert!(pack_keys(&names, &more_types).is_err());
    }
}
