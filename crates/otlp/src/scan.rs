//! Validating OTLP/protobuf trace payloads without decoding them: a protobuf wire-format walker
//! over the full `ExportTraceServiceRequest` schema.
//!
//! The agent forwards the bytes it received and the server does the one full decode, so the
//! agent must never accept a payload that `prost` would refuse to decode (it would answer 200 and
//! the data would then be lost). [`scan_request`] therefore accepts exactly what
//! `<ExportTraceServiceRequest as prost::Message>::decode` accepts: varints of at most 10 bytes
//! that fit in 64 bits, keys that fit in 32 bits with a non-zero field number and a wire type of
//! 0 to 5, the expected wire type for every known field, lengths and fixed-width values inside
//! the enclosing message, UTF-8 in every `string` field (including the `EntityRef` key lists),
//! unknown fields of any wire type skipped (groups too, as prost skips them, with matching end
//! tags), and prost's recursion limit of 100 for nested messages and groups. It allocates
//! nothing unless the payload is invalid or has rejected spans.
//!
//! On the way it counts spans and judges their ids: a span is rejected (OTLP partial success)
//! when its `trace_id` is not 16 bytes or is all zero, its `span_id` is not 8 bytes or is all
//! zero, or its `parent_span_id` is neither 8 bytes nor all zero (empty for a root). A missing
//! trace or span id is empty and so rejected; when an id field repeats, the last one wins, as in
//! prost. These are the spans the server's mapping (`map::map_span`) cannot store, so every span
//! the agent accepts becomes a row. [`without_rejected_spans`] cuts the rejected spans out of
//! the original bytes.
//!
//! Field numbers follow the prost structs of `opentelemetry-proto` 0.33 (OTLP 1.9), including
//! `Span.flags` (16), `Link.flags` (6), `Resource.entity_refs` (3, `EntityRef` messages),
//! `KeyValue.key_strindex` (3) and `AnyValue.string_value_strindex` (8).

use std::str;

/// prost's `RECURSION_LIMIT`: how deep messages (and groups in unknown fields) may nest.
pub(crate) const RECURSION_LIMIT: u32 = 100;

// Wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
const I32: u8 = 5;

/// A payload that prost would fail to decode. The message says what went wrong and where: the
/// byte offset in the payload and the message or field (e.g. `Span.name`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct ScanError {
    pub message: String,
}

/// What [`scan_request`] found in a valid payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Spans accepted.
    pub n_spans: usize,
    /// Spans rejected because of a bad `trace_id`, `span_id` or `parent_span_id`.
    pub n_rejected: usize,
    /// For OTLP partial success when `n_rejected > 0`, e.g. `"3 spans rejected: trace_id must be
    /// 16 bytes (got 5); span_id must not be all zero"` (the first case of each kind of problem).
    pub rejected_message: Option<String>,
}

/// Walks the payload; Err if prost would fail to decode it.
pub fn scan_request(payload: &[u8]) -> Result<Scan, ScanError> {
    let mut tally = Tally::default();
    walk_request(Cur::new(payload, 0, RECURSION_LIMIT), &mut tally).map_err(|f| f.to_error())?;
    Ok(tally.into_scan())
}

/// Returns the payload without the rejected spans: copies byte ranges, dropping the bad Span
/// fields and rewriting the length prefixes of the enclosing ScopeSpans and ResourceSpans
/// fields. Only called when scan_request reported n_rejected > 0 (the rare path; allocation is
/// fine).
///
/// Everything else is kept byte for byte, including unknown fields and a `ScopeSpans` left with
/// no spans. Err if prost would fail to decode the payload.
pub fn without_rejected_spans(payload: &[u8]) -> Result<Vec<u8>, ScanError> {
    let scan = scan_request(payload)?;
    if scan.n_rejected == 0 {
        return Ok(payload.to_vec());
    }
    let mut out = Vec::with_capacity(payload.len());
    filter(
        Cur::new(payload, 0, RECURSION_LIMIT),
        Level::Request,
        &mut out,
    )
    .map_err(|f| f.to_error())?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a payload is invalid.
#[derive(Debug, Clone, Copy)]
enum Why {
    VarintTruncated,
    VarintOverflow,
    KeyTooLarge,
    TagZero,
    InvalidWireType(u8),
    WrongWireType { got: u8, want: u8 },
    Underflow { need: u64, have: usize },
    Utf8,
    RecursionLimit,
    UnexpectedEndGroup,
}

/// Boxed so that the `Result`s of the walk stay small; only the error path allocates.
pub(crate) type Fail = Box<Failure>;

#[derive(Debug)]
pub(crate) struct Failure {
    /// Byte offset in the payload.
    at: usize,
    why: Why,
    /// Message (for key problems) or `Message.field`.
    loc: &'static str,
}

fn wire_type_name(wt: u8) -> &'static str {
    match wt {
        VARINT => "varint",
        I64 => "64-bit",
        LEN => "length-delimited",
        SGROUP => "start-group",
        EGROUP => "end-group",
        I32 => "32-bit",
        _ => "invalid",
    }
}

impl Failure {
    pub(crate) fn to_error(&self) -> ScanError {
        let what = match self.why {
            Why::VarintTruncated => "truncated varint".to_string(),
            Why::VarintOverflow => "varint longer than 10 bytes or over 64 bits".to_string(),
            Why::KeyTooLarge => "field key over 32 bits".to_string(),
            Why::TagZero => "field number 0".to_string(),
            Why::InvalidWireType(wt) => format!("invalid wire type {wt}"),
            Why::WrongWireType { got, want } => format!(
                "{} wire type where {} is expected",
                wire_type_name(got),
                wire_type_name(want)
            ),
            Why::Underflow { need, have } => {
                format!("field needs {need} bytes but the enclosing message has {have} left")
            }
            Why::Utf8 => "string field is not valid UTF-8".to_string(),
            Why::RecursionLimit => {
                format!("nested deeper than the recursion limit of {RECURSION_LIMIT}")
            }
            Why::UnexpectedEndGroup => "unexpected end-group tag".to_string(),
        };
        ScanError {
            message: format!(
                "invalid protobuf at byte {}: {what} ({})",
                self.at, self.loc
            ),
        }
    }
}

#[cold]
#[inline(never)]
fn fail(at: usize, why: Why, loc: &'static str) -> Fail {
    Box::new(Failure { at, why, loc })
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Reads a varint at `p`: the value and the position after it. Same rules as prost: at most 10
/// bytes, and a 10th byte of 0 or 1 (the value must fit in 64 bits); non-minimal encodings are
/// fine.
#[inline(always)]
fn read_varint(m: &[u8], p: usize) -> Result<(u64, usize), Why> {
    let Some(&b0) = m.get(p) else {
        return Err(Why::VarintTruncated);
    };
    if b0 < 0x80 {
        return Ok((u64::from(b0), p + 1));
    }
    match m.get(p + 1) {
        Some(&b1) if b1 < 0x80 => Ok((u64::from(b0 & 0x7f) | u64::from(b1) << 7, p + 2)),
        _ => read_varint_long(m, p),
    }
}

#[inline(never)]
fn read_varint_long(m: &[u8], p: usize) -> Result<(u64, usize), Why> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&b) = m.get(p + i) else {
            return Err(Why::VarintTruncated);
        };
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            if i == 9 && b > 1 {
                return Err(Why::VarintOverflow);
            }
            return Ok((value, p + i + 1));
        }
    }
    Err(Why::VarintOverflow)
}

/// Checks UTF-8 like `str::from_utf8`, with a fast path for ASCII; Err has the offset of the
/// first invalid byte.
#[inline]
fn check_utf8(b: &[u8]) -> Result<(), usize> {
    let mut high = 0u64;
    let mut chunks = b.chunks_exact(8);
    for chunk in &mut chunks {
        high |= u64::from_le_bytes(chunk.try_into().unwrap());
    }
    for &byte in chunks.remainder() {
        high |= u64::from(byte);
    }
    if high & 0x8080_8080_8080_8080 == 0 {
        return Ok(());
    }
    str::from_utf8(b).map(drop).map_err(|e| e.valid_up_to())
}

fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A cursor over the body of one message.
#[derive(Clone, Copy)]
pub(crate) struct Cur<'a> {
    /// The message body.
    m: &'a [u8],
    /// Offset of `m` in the payload, for error messages.
    base: usize,
    p: usize,
    /// Start of the current field's key.
    f: usize,
    /// prost's recursion budget for this message's fields (the `DecodeContext` they get).
    ctx: u32,
}

impl<'a> Cur<'a> {
    #[inline(always)]
    pub(crate) fn new(m: &'a [u8], base: usize, ctx: u32) -> Self {
        Cur {
            m,
            base,
            p: 0,
            f: 0,
            ctx,
        }
    }

    #[inline(always)]
    pub(crate) fn more(&self) -> bool {
        self.p < self.m.len()
    }

    #[inline(always)]
    pub(crate) fn varint(&mut self, loc: &'static str) -> Result<u64, Fail> {
        match read_varint(self.m, self.p) {
            Ok((value, p)) => {
                self.p = p;
                Ok(value)
            }
            Err(why) => Err(fail(self.base + self.p, why, loc)),
        }
    }

    /// Reads a field key (prost's `decode_key`): the field number and the wire type.
    #[inline(always)]
    pub(crate) fn key(&mut self, msg: &'static str) -> Result<(u32, u8), Fail> {
        self.f = self.p;
        let key = self.varint(msg)?;
        let wt = (key & 7) as u8;
        let tag = (key >> 3) as u32;
        if key > u64::from(u32::MAX) || wt > I32 || tag == 0 {
            let why = if key > u64::from(u32::MAX) {
                Why::KeyTooLarge
            } else if wt > I32 {
                Why::InvalidWireType(wt)
            } else {
                Why::TagZero
            };
            return Err(fail(self.base + self.f, why, msg));
        }
        Ok((tag, wt))
    }

    #[inline(always)]
    pub(crate) fn want(&self, wt: u8, want: u8, loc: &'static str) -> Result<(), Fail> {
        if wt == want {
            Ok(())
        } else {
            Err(fail(
                self.base + self.f,
                Why::WrongWireType { got: wt, want },
                loc,
            ))
        }
    }

    #[inline(always)]
    pub(crate) fn advance(&mut self, n: u64, loc: &'static str) -> Result<usize, Fail> {
        let have = self.m.len() - self.p;
        if n > have as u64 {
            return Err(fail(
                self.base + self.p,
                Why::Underflow { need: n, have },
                loc,
            ));
        }
        let start = self.p;
        self.p += n as usize;
        Ok(start)
    }

    /// A varint scalar (integers, bools, enums).
    #[inline(always)]
    pub(crate) fn int(&mut self, wt: u8, loc: &'static str) -> Result<(), Fail> {
        self.int_value(wt, loc).map(drop)
    }

    /// A varint scalar's value; prost casts it to the field's type (`as i32`, `as u32`, `!= 0`).
    #[inline(always)]
    pub(crate) fn int_value(&mut self, wt: u8, loc: &'static str) -> Result<u64, Fail> {
        self.want(wt, VARINT, loc)?;
        self.varint(loc)
    }

    #[inline(always)]
    pub(crate) fn fixed32(&mut self, wt: u8, loc: &'static str) -> Result<(), Fail> {
        self.fixed32_value(wt, loc).map(drop)
    }

    #[inline(always)]
    pub(crate) fn fixed32_value(&mut self, wt: u8, loc: &'static str) -> Result<u32, Fail> {
        self.want(wt, I32, loc)?;
        let start = self.advance(4, loc)?;
        Ok(u32::from_le_bytes(
            self.m[start..start + 4].try_into().expect("4 bytes"),
        ))
    }

    #[inline(always)]
    pub(crate) fn fixed64(&mut self, wt: u8, loc: &'static str) -> Result<(), Fail> {
        self.fixed64_value(wt, loc).map(drop)
    }

    #[inline(always)]
    pub(crate) fn fixed64_value(&mut self, wt: u8, loc: &'static str) -> Result<u64, Fail> {
        self.want(wt, I64, loc)?;
        let start = self.advance(8, loc)?;
        Ok(u64::from_le_bytes(
            self.m[start..start + 8].try_into().expect("8 bytes"),
        ))
    }

    /// A length-delimited value, without checking the wire type: its bytes and their offset.
    #[inline(always)]
    pub(crate) fn delimited(&mut self, loc: &'static str) -> Result<(&'a [u8], usize), Fail> {
        let len = self.varint(loc)?;
        let start = self.advance(len, loc)?;
        Ok((&self.m[start..self.p], self.base + start))
    }

    #[inline(always)]
    pub(crate) fn bytes(&mut self, wt: u8, loc: &'static str) -> Result<&'a [u8], Fail> {
        self.want(wt, LEN, loc)?;
        self.delimited(loc).map(|(b, _)| b)
    }

    #[inline(always)]
    pub(crate) fn string(&mut self, wt: u8, loc: &'static str) -> Result<(), Fail> {
        self.str(wt, loc).map(drop)
    }

    /// A string field's text.
    #[inline(always)]
    pub(crate) fn str(&mut self, wt: u8, loc: &'static str) -> Result<&'a str, Fail> {
        self.want(wt, LEN, loc)?;
        let (b, at) = self.delimited(loc)?;
        match check_utf8(b) {
            // SAFETY: `check_utf8` found the bytes valid UTF-8.
            Ok(()) => Ok(unsafe { str::from_utf8_unchecked(b) }),
            Err(valid_up_to) => Err(fail(at + valid_up_to, Why::Utf8, loc)),
        }
    }

    /// A nested message (prost's `message::merge`): a cursor over its body.
    #[inline(always)]
    pub(crate) fn message(&mut self, wt: u8, loc: &'static str) -> Result<Cur<'a>, Fail> {
        self.want(wt, LEN, loc)?;
        if self.ctx == 0 {
            return Err(fail(self.base + self.f, Why::RecursionLimit, loc));
        }
        let (b, at) = self.delimited(loc)?;
        Ok(Cur::new(b, at, self.ctx - 1))
    }

    /// Skips an unknown field (prost's `skip_field`).
    pub(crate) fn skip(&mut self, wt: u8, tag: u32, msg: &'static str) -> Result<(), Fail> {
        self.skip_in(wt, tag, self.ctx, msg)
    }

    fn skip_in(&mut self, wt: u8, tag: u32, ctx: u32, msg: &'static str) -> Result<(), Fail> {
        if ctx == 0 {
            return Err(fail(self.base + self.f, Why::RecursionLimit, msg));
        }
        match wt {
            VARINT => self.varint(msg).map(drop),
            I64 => self.advance(8, msg).map(drop),
            LEN => self.delimited(msg).map(drop),
            I32 => self.advance(4, msg).map(drop),
            SGROUP => loop {
                let (inner_tag, inner_wt) = self.key(msg)?;
                if inner_wt == EGROUP {
                    if inner_tag != tag {
                        return Err(fail(self.base + self.f, Why::UnexpectedEndGroup, msg));
                    }
                    return Ok(());
                }
                self.skip_in(inner_wt, inner_tag, ctx - 1, msg)?;
            },
            _ => Err(fail(self.base + self.f, Why::UnexpectedEndGroup, msg)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Span ids

#[derive(Debug, Clone, Copy)]
enum IdProblem {
    Length(usize),
    Zero,
}

#[inline]
fn trace_id_ok(id: &[u8]) -> bool {
    <[u8; 16]>::try_from(id).is_ok_and(|b| u128::from_ne_bytes(b) != 0)
}

#[inline]
fn span_id_ok(id: &[u8]) -> bool {
    <[u8; 8]>::try_from(id).is_ok_and(|b| u64::from_ne_bytes(b) != 0)
}

/// A parent id the mapping takes: 8 bytes, or all zero (empty included) for a root.
#[inline]
fn parent_span_id_ok(id: &[u8]) -> bool {
    id.len() == 8 || id.iter().all(|&b| b == 0)
}

#[inline]
fn ids_ok(trace_id: &[u8], span_id: &[u8], parent_span_id: &[u8]) -> bool {
    trace_id_ok(trace_id) && span_id_ok(span_id) && parent_span_id_ok(parent_span_id)
}

fn id_problem(id: &[u8], want: usize) -> Option<IdProblem> {
    if id.len() != want {
        Some(IdProblem::Length(id.len()))
    } else if id.iter().all(|&b| b == 0) {
        Some(IdProblem::Zero)
    } else {
        None
    }
}

/// Span counts and the first problem of each kind.
#[derive(Default)]
struct Tally {
    ok: usize,
    bad: usize,
    trace_len: Option<usize>,
    trace_zero: bool,
    span_len: Option<usize>,
    span_zero: bool,
    parent_len: Option<usize>,
}

impl Tally {
    #[inline]
    fn judge(&mut self, trace_id: &[u8], span_id: &[u8], parent_span_id: &[u8]) {
        if ids_ok(trace_id, span_id, parent_span_id) {
            self.ok += 1;
        } else {
            self.reject(trace_id, span_id, parent_span_id);
        }
    }

    #[cold]
    #[inline(never)]
    fn reject(&mut self, trace_id: &[u8], span_id: &[u8], parent_span_id: &[u8]) {
        self.bad += 1;
        match id_problem(trace_id, 16) {
            Some(IdProblem::Length(n)) => {
                self.trace_len.get_or_insert(n);
            }
            Some(IdProblem::Zero) => self.trace_zero = true,
            None => {}
        }
        match id_problem(span_id, 8) {
            Some(IdProblem::Length(n)) => {
                self.span_len.get_or_insert(n);
            }
            Some(IdProblem::Zero) => self.span_zero = true,
            None => {}
        }
        if !parent_span_id_ok(parent_span_id) {
            self.parent_len.get_or_insert(parent_span_id.len());
        }
    }

    fn into_scan(self) -> Scan {
        let rejected_message = (self.bad > 0).then(|| {
            let mut reasons = Vec::new();
            if let Some(n) = self.trace_len {
                reasons.push(format!("trace_id must be 16 bytes (got {n})"));
            }
            if self.trace_zero {
                reasons.push("trace_id must not be all zero".to_string());
            }
            if let Some(n) = self.span_len {
                reasons.push(format!("span_id must be 8 bytes (got {n})"));
            }
            if self.span_zero {
                reasons.push("span_id must not be all zero".to_string());
            }
            if let Some(n) = self.parent_len {
                reasons.push(format!("parent_span_id must be 8 bytes or empty (got {n})"));
            }
            let spans = if self.bad == 1 { "span" } else { "spans" };
            format!("{} {spans} rejected: {}", self.bad, reasons.join("; "))
        });
        Scan {
            n_spans: self.ok,
            n_rejected: self.bad,
            rejected_message,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The schema walk: one function per message type.

fn walk_request(mut c: Cur<'_>, t: &mut Tally) -> Result<(), Fail> {
    const M: &str = "ExportTraceServiceRequest";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => walk_resource_spans(
                c.message(wt, "ExportTraceServiceRequest.resource_spans")?,
                t,
            )?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

fn walk_resource_spans(mut c: Cur<'_>, t: &mut Tally) -> Result<(), Fail> {
    const M: &str = "ResourceSpans";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => walk_resource(c.message(wt, "ResourceSpans.resource")?)?,
            2 => walk_scope_spans(c.message(wt, "ResourceSpans.scope_spans")?, t)?,
            3 => c.string(wt, "ResourceSpans.schema_url")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

fn walk_resource(mut c: Cur<'_>) -> Result<(), Fail> {
    const M: &str = "Resource";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => walk_key_value(c.message(wt, "Resource.attributes")?)?,
            2 => c.int(wt, "Resource.dropped_attributes_count")?,
            3 => walk_entity_ref(c.message(wt, "Resource.entity_refs")?)?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

pub(crate) fn walk_entity_ref(mut c: Cur<'_>) -> Result<(), Fail> {
    const M: &str = "EntityRef";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => c.string(wt, "EntityRef.schema_url")?,
            2 => c.string(wt, "EntityRef.type")?,
            3 => c.string(wt, "EntityRef.id_keys")?,
            4 => c.string(wt, "EntityRef.description_keys")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

fn walk_scope_spans(mut c: Cur<'_>, t: &mut Tally) -> Result<(), Fail> {
    const M: &str = "ScopeSpans";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => walk_scope(c.message(wt, "ScopeSpans.scope")?)?,
            2 => walk_span(c.message(wt, "ScopeSpans.spans")?, t)?,
            3 => c.string(wt, "ScopeSpans.schema_url")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

fn walk_scope(mut c: Cur<'_>) -> Result<(), Fail> {
    const M: &str = "InstrumentationScope";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => c.string(wt, "InstrumentationScope.name")?,
            2 => c.string(wt, "InstrumentationScope.version")?,
            3 => walk_key_value(c.message(wt, "InstrumentationScope.attributes")?)?,
            4 => c.int(wt, "InstrumentationScope.dropped_attributes_count")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

fn walk_span(mut c: Cur<'_>, t: &mut Tally) -> Result<(), Fail> {
    const M: &str = "Span";
    let mut trace_id: &[u8] = &[];
    let mut span_id: &[u8] = &[];
    let mut parent_span_id: &[u8] = &[];
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => trace_id = c.bytes(wt, "Span.trace_id")?,
            2 => span_id = c.bytes(wt, "Span.span_id")?,
            3 => c.string(wt, "Span.trace_state")?,
            4 => parent_span_id = c.bytes(wt, "Span.parent_span_id")?,
            5 => c.string(wt, "Span.name")?,
            6 => c.int(wt, "Span.kind")?,
            7 => c.fixed64(wt, "Span.start_time_unix_nano")?,
            8 => c.fixed64(wt, "Span.end_time_unix_nano")?,
            9 => walk_key_value(c.message(wt, "Span.attributes")?)?,
            10 => c.int(wt, "Span.dropped_attributes_count")?,
            11 => walk_event(c.message(wt, "Span.events")?)?,
            12 => c.int(wt, "Span.dropped_events_count")?,
            13 => walk_link(c.message(wt, "Span.links")?)?,
            14 => c.int(wt, "Span.dropped_links_count")?,
            15 => walk_status(c.message(wt, "Span.status")?)?,
            16 => c.fixed32(wt, "Span.flags")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    t.judge(trace_id, span_id, parent_span_id);
    Ok(())
}

fn walk_event(mut c: Cur<'_>) -> Result<(), Fail> {
    const M: &str = "Span.Event";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => c.fixed64(wt, "Span.Event.time_unix_nano")?,
            2 => c.string(wt, "Span.Event.name")?,
            3 => walk_key_value(c.message(wt, "Span.Event.attributes")?)?,
            4 => c.int(wt, "Span.Event.dropped_attributes_count")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

fn walk_link(mut c: Cur<'_>) -> Result<(), Fail> {
    const M: &str = "Span.Link";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => c.bytes(wt, "Span.Link.trace_id").map(drop)?,
            2 => c.bytes(wt, "Span.Link.span_id").map(drop)?,
            3 => c.string(wt, "Span.Link.trace_state")?,
            4 => walk_key_value(c.message(wt, "Span.Link.attributes")?)?,
            5 => c.int(wt, "Span.Link.dropped_attributes_count")?,
            6 => c.fixed32(wt, "Span.Link.flags")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

fn walk_status(mut c: Cur<'_>) -> Result<(), Fail> {
    const M: &str = "Status";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            2 => c.string(wt, "Status.message")?,
            3 => c.int(wt, "Status.code")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

pub(crate) fn walk_key_value(mut c: Cur<'_>) -> Result<(), Fail> {
    const M: &str = "KeyValue";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => c.string(wt, "KeyValue.key")?,
            2 => walk_any_value(c.message(wt, "KeyValue.value")?)?,
            3 => c.int(wt, "KeyValue.key_strindex")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

#[inline]
fn walk_any_value(mut c: Cur<'_>) -> Result<(), Fail> {
    const M: &str = "AnyValue";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => c.string(wt, "AnyValue.string_value")?,
            2 => c.int(wt, "AnyValue.bool_value")?,
            3 => c.int(wt, "AnyValue.int_value")?,
            4 => c.fixed64(wt, "AnyValue.double_value")?,
            5 => walk_array_value(c.message(wt, "AnyValue.array_value")?)?,
            6 => walk_key_value_list(c.message(wt, "AnyValue.kvlist_value")?)?,
            7 => c.bytes(wt, "AnyValue.bytes_value").map(drop)?,
            8 => c.int(wt, "AnyValue.string_value_strindex")?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

fn walk_array_value(mut c: Cur<'_>) -> Result<(), Fail> {
    const M: &str = "ArrayValue";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => walk_any_value(c.message(wt, "ArrayValue.values")?)?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

fn walk_key_value_list(mut c: Cur<'_>) -> Result<(), Fail> {
    const M: &str = "KeyValueList";
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match tag {
            1 => walk_key_value(c.message(wt, "KeyValueList.values")?)?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Cutting rejected spans out (on a payload already validated by `scan_request`).

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Request,
    ResourceSpans,
    ScopeSpans,
}

/// Copies the fields of the message under `c` to `out`, recursing into ResourceSpans and
/// ScopeSpans and leaving out rejected spans. Returns whether anything was left out.
fn filter(mut c: Cur<'_>, level: Level, out: &mut Vec<u8>) -> Result<bool, Fail> {
    const M: &str = "filtered message";
    let mut changed = false;
    while c.more() {
        let start = c.p;
        let (tag, wt) = c.key(M)?;
        let key_end = c.p;
        let child = match (level, tag, wt) {
            (Level::Request, 1, LEN) => Some(Level::ResourceSpans),
            (Level::ResourceSpans, 2, LEN) => Some(Level::ScopeSpans),
            _ => None,
        };
        if let Some(child) = child {
            let sub = c.message(wt, M)?;
            let mut body = Vec::with_capacity(sub.m.len());
            if filter(sub, child, &mut body)? {
                changed = true;
                out.extend_from_slice(&c.m[start..key_end]);
                write_varint(body.len() as u64, out);
                out.extend_from_slice(&body);
                continue;
            }
        } else if (level, tag, wt) == (Level::ScopeSpans, 2, LEN) {
            if !span_ids_ok(c.message(wt, M)?)? {
                changed = true;
                continue;
            }
        } else {
            c.skip(wt, tag, M)?;
        }
        out.extend_from_slice(&c.m[start..c.p]);
    }
    Ok(changed)
}

/// Whether the span under `c` has good ids (the last field of each id wins).
fn span_ids_ok(mut c: Cur<'_>) -> Result<bool, Fail> {
    const M: &str = "Span";
    let mut trace_id: &[u8] = &[];
    let mut span_id: &[u8] = &[];
    let mut parent_span_id: &[u8] = &[];
    while c.more() {
        let (tag, wt) = c.key(M)?;
        match (tag, wt) {
            (1, LEN) => trace_id = c.bytes(wt, M)?,
            (2, LEN) => span_id = c.bytes(wt, M)?,
            (4, LEN) => parent_span_id = c.bytes(wt, M)?,
            _ => c.skip(wt, tag, M)?,
        }
    }
    Ok(ids_ok(trace_id, span_id, parent_span_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value::Value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue,
        KeyValueList,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
    use proptest::prelude::*;
    use prost::Message;

    const TRACE: [u8; 16] = [7; 16];
    const SPAN: [u8; 8] = [9; 8];

    fn decode(bytes: &[u8]) -> Result<ExportTraceServiceRequest, prost::DecodeError> {
        ExportTraceServiceRequest::decode(bytes)
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value: Some(AnyValue { value: Some(value) }),
            key_strindex: 0,
        }
    }

    fn str_kv(key: &str, value: &str) -> KeyValue {
        kv(key, Value::StringValue(value.to_string()))
    }

    fn span_with(trace_id: &[u8], span_id: &[u8], name: &str) -> Span {
        Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id.to_vec(),
            name: name.to_string(),
            ..Default::default()
        }
    }

    fn good_span(name: &str) -> Span {
        span_with(&TRACE, &SPAN, name)
    }

    /// A span with every field set, attributes nested three deep.
    fn full_span(name: &str) -> Span {
        let nested = Value::KvlistValue(KeyValueList {
            values: vec![
                str_kv("inner", "v"),
                kv(
                    "arr",
                    Value::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(Value::IntValue(-5)),
                            },
                            AnyValue {
                                value: Some(Value::DoubleValue(1.5)),
                            },
                            AnyValue {
                                value: Some(Value::BoolValue(true)),
                            },
                            AnyValue {
                                value: Some(Value::BytesValue(vec![1, 2, 3])),
                            },
                            AnyValue { value: None },
                        ],
                    }),
                ),
            ],
        });
        Span {
            trace_id: TRACE.to_vec(),
            span_id: SPAN.to_vec(),
            trace_state: "k=v".to_string(),
            parent_span_id: vec![3; 8],
            flags: 0x301,
            name: name.to_string(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_000_999,
            attributes: vec![
                str_kv("http.method", "GET"),
                kv("nested", nested),
                kv("strindex", Value::StringValueStrindex(4)),
                KeyValue {
                    key: String::new(),
                    value: None,
                    key_strindex: 2,
                },
            ],
            dropped_attributes_count: 1,
            events: vec![span::Event {
                time_unix_nano: 5,
                name: "ev".to_string(),
                attributes: vec![str_kv("e", "é")],
                dropped_attributes_count: 2,
            }],
            dropped_events_count: 3,
            links: vec![span::Link {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                trace_state: "ts".to_string(),
                attributes: vec![str_kv("l", "x")],
                dropped_attributes_count: 4,
                flags: 1,
            }],
            dropped_links_count: 5,
            status: Some(Status {
                message: "boom".to_string(),
                code: 2,
            }),
        }
    }

    fn scope(name: &str, spans: Vec<Span>) -> ScopeSpans {
        ScopeSpans {
            scope: Some(InstrumentationScope {
                name: name.to_string(),
                version: "1.0".to_string(),
                attributes: vec![str_kv("scope.attr", "s")],
                dropped_attributes_count: 1,
            }),
            spans,
            schema_url: "https://opentelemetry.io/schemas/1.26.0".to_string(),
        }
    }

    fn resource(service: &str, scopes: Vec<ScopeSpans>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: vec![str_kv("service.name", service)],
                dropped_attributes_count: 0,
                entity_refs: vec![EntityRef {
                    schema_url: String::new(),
                    r#type: "service".to_string(),
                    id_keys: vec!["service.name".to_string()],
                    description_keys: vec![],
                }],
            }),
            scope_spans: scopes,
            schema_url: String::new(),
        }
    }

    fn request(resources: Vec<ResourceSpans>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: resources,
        }
    }

    fn one_span(span: Span) -> Vec<u8> {
        request(vec![resource("svc", vec![scope("lib", vec![span])])]).encode_to_vec()
    }

    fn all_spans(req: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
        req.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
    }

    /// The rejection rule, written independently of the scanner.
    fn is_good(span: &Span) -> bool {
        span.trace_id.len() == 16
            && span.trace_id.iter().any(|&b| b != 0)
            && span.span_id.len() == 8
            && span.span_id.iter().any(|&b| b != 0)
            && (span.parent_span_id.len() == 8 || span.parent_span_id.iter().all(|&b| b == 0))
    }

    fn without_bad(mut req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
        for r in &mut req.resource_spans {
            for s in &mut r.scope_spans {
                s.spans.retain(is_good);
            }
        }
        req
    }

    /// Replaces the (unique) `marker` in `bytes` with invalid UTF-8 of the same length; returns
    /// the marker's offset.
    fn poison(bytes: &mut [u8], marker: &str) -> usize {
        let m = marker.as_bytes();
        let at = bytes.windows(m.len()).position(|w| w == m).unwrap();
        assert!(bytes[at + 1..].windows(m.len()).all(|w| w != m));
        bytes[at..at + m.len()].fill(0xff);
        at
    }

    // Raw wire-format builders for what prost structs cannot express.
    fn varint(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(value, &mut out);
        out
    }
    fn key(tag: u32, wt: u8) -> Vec<u8> {
        varint(u64::from(tag) << 3 | u64::from(wt))
    }
    fn ld(tag: u32, body: &[u8]) -> Vec<u8> {
        [key(tag, LEN), varint(body.len() as u64), body.to_vec()].concat()
    }
    /// A request with one span whose encoding is `span` (raw bytes).
    fn wrap_span(span: &[u8]) -> Vec<u8> {
        ld(1, &ld(2, &ld(2, span)))
    }

    /// Asserts that the scanner and prost agree on `bytes` and, if valid, on the spans; then
    /// checks `without_rejected_spans` against prost, and the server's mapping straight from the
    /// bytes ([`crate::wire`]) against the mapping of what prost decodes. Returns the scan.
    fn check(bytes: &[u8]) -> Result<Scan, ScanError> {
        let scanned = scan_request(bytes);
        let decoded = decode(bytes);
        assert_eq!(
            scanned.is_ok(),
            decoded.is_ok(),
            "scan: {scanned:?}, prost: {decoded:?}, bytes: {bytes:02x?}"
        );
        let sender = crate::map::Sender::default();
        let mut rows = Vec::new();
        let wired = crate::wire::map_payload_into(bytes, &sender, &mut rows);
        assert_eq!(
            wired.is_ok(),
            decoded.is_ok(),
            "wire: {:?}, prost: {decoded:?}, bytes: {bytes:02x?}",
            wired.as_ref().map(|rejected| rejected.n_rejected)
        );
        if let Ok(req) = &decoded {
            // prost's encoding of what it decoded has every repeated message merged, the last
            // of every repeated scalar, no unknown fields, and the fields in order: the wire
            // walk must read the original as that.
            let mapped = crate::map::map_request(req.clone(), &sender);
            let wired = wired.unwrap();
            // Compared as text: NaN doubles are not equal to themselves.
            assert_eq!(
                format!("{rows:?}"),
                format!("{:?}", mapped.rows),
                "{bytes:02x?}"
            );
            assert_eq!(
                (wired.n_rejected, &wired.message),
                (mapped.n_rejected, &mapped.rejected_message)
            );
        } else {
            assert!(rows.is_empty());
        }
        if let (Ok(scan), Ok(req)) = (&scanned, decoded) {
            let total = all_spans(&req).count();
            let bad = all_spans(&req).filter(|s| !is_good(s)).count();
            assert_eq!(
                (scan.n_spans, scan.n_rejected),
                (total - bad, bad),
                "{bytes:02x?}"
            );
            assert_eq!(scan.rejected_message.is_some(), bad > 0);
            let filtered = without_rejected_spans(bytes).unwrap();
            if bad == 0 {
                assert_eq!(filtered, bytes);
            }
            let refiltered = decode(&filtered).expect("filtered payload decodes");
            // Compare encodings, not structs: NaN doubles are not equal to themselves.
            assert_eq!(
                refiltered.encode_to_vec(),
                without_bad(req).encode_to_vec(),
                "{bytes:02x?}"
            );
            let rescan = scan_request(&filtered).unwrap();
            assert_eq!((rescan.n_spans, rescan.n_rejected), (total - bad, 0));
            // Every span the agent accepts, the server stores.
            let mapped = crate::map::map_request(refiltered, &crate::map::Sender::default());
            assert_eq!(
                (mapped.rows.len(), mapped.n_rejected),
                (total - bad, 0),
                "{:?}",
                mapped.rejected_message
            );
        } else if let Err(e) = &scanned {
            assert!(e.message.starts_with("invalid protobuf at byte "), "{e}");
            assert_eq!(without_rejected_spans(bytes).as_ref(), Err(e));
        }
        scanned
    }

    #[test]
    fn empty_request_is_accepted() {
        let expected = Scan {
            n_spans: 0,
            n_rejected: 0,
            rejected_message: None,
        };
        assert_eq!(check(&[]).unwrap(), expected);
        assert_eq!(check(&request(vec![]).encode_to_vec()).unwrap(), expected);
        // Resources and scopes without spans.
        let empty = request(vec![
            ResourceSpans::default(),
            resource("a", vec![]),
            resource("b", vec![ScopeSpans::default()]),
        ]);
        assert_eq!(check(&empty.encode_to_vec()).unwrap(), expected);
    }

    #[test]
    fn counts_spans_across_resources_and_scopes() {
        let req = request(vec![
            resource(
                "a",
                vec![
                    scope("x", vec![good_span("1"), good_span("2")]),
                    scope("y", vec![full_span("3")]),
                ],
            ),
            resource("b", vec![]),
            resource(
                "c",
                vec![scope(
                    "z",
                    vec![good_span("4"), good_span("5"), good_span("6")],
                )],
            ),
        ]);
        let scan = check(&req.encode_to_vec()).unwrap();
        assert_eq!(
            scan,
            Scan {
                n_spans: 6,
                n_rejected: 0,
                rejected_message: None
            }
        );
    }

    #[test]
    fn a_span_with_every_field_is_accepted() {
        let scan = check(&one_span(full_span("everything"))).unwrap();
        assert_eq!((scan.n_spans, scan.n_rejected), (1, 0));
    }

    #[test]
    fn each_rejection_reason() {
        let cases: &[(&[u8], &[u8], &str)] = &[
            (&[1; 5], &SPAN, "trace_id must be 16 bytes (got 5)"),
            (&[1; 17], &SPAN, "trace_id must be 16 bytes (got 17)"),
            (&[], &SPAN, "trace_id must be 16 bytes (got 0)"),
            (&[0; 16], &SPAN, "trace_id must not be all zero"),
            (&TRACE, &[1; 7], "span_id must be 8 bytes (got 7)"),
            (&TRACE, &[1; 16], "span_id must be 8 bytes (got 16)"),
            (&TRACE, &[], "span_id must be 8 bytes (got 0)"),
            (&TRACE, &[0; 8], "span_id must not be all zero"),
            (
                &[0; 16],
                &[0; 3],
                "trace_id must not be all zero; span_id must be 8 bytes (got 3)",
            ),
        ];
        for &(trace_id, span_id, reason) in cases {
            check_rejection(span_with(trace_id, span_id, "bad"), reason);
        }
    }

    /// A parent id the server's mapping would refuse makes the agent reject the span: else the
    /// client hears its span was accepted and the server drops it (found by the `otlp_protobuf`
    /// fuzz target).
    #[test]
    fn a_parent_span_id_of_the_wrong_length_is_rejected() {
        for n in [1, 4, 7, 9, 15, 16] {
            let mut span = good_span("bad parent");
            span.parent_span_id = vec![3; n];
            check_rejection(
                span,
                &format!("parent_span_id must be 8 bytes or empty (got {n})"),
            );
        }
        // All zero, of any length, is a root, as the mapping reads it.
        for parent_span_id in [vec![], vec![0; 3], vec![0; 8], vec![0; 16], vec![7; 8]] {
            let mut span = good_span("root or child");
            span.parent_span_id = parent_span_id;
            let scan = check(&one_span(span)).unwrap();
            assert_eq!((scan.n_spans, scan.n_rejected), (1, 0));
        }
    }

    /// The inputs the `otlp_protobuf` fuzz target found failing, kept as they were found.
    #[test]
    fn fuzz_regressions() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fuzz-regressions/otlp_protobuf"
        );
        let mut n_inputs = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let _ = check(&bytes);
            n_inputs += 1;
        }
        assert!(n_inputs > 0, "no inputs in {dir}");
    }

    /// Asserts that `bad` next to a good span is rejected for `reason` alone.
    fn check_rejection(bad: Span, reason: &str) {
        let req = request(vec![resource(
            "svc",
            vec![scope("lib", vec![good_span("a"), bad])],
        )]);
        let scan = check(&req.encode_to_vec()).unwrap();
        assert_eq!(
            scan,
            Scan {
                n_spans: 1,
                n_rejected: 1,
                rejected_message: Some(format!("1 span rejected: {reason}")),
            },
            "{reason}"
        );
    }

    #[test]
    fn missing_id_fields_are_rejected() {
        // No trace_id field at all (prost leaves it empty).
        let span = [ld(2, &SPAN), ld(5, b"n")].concat();
        let scan = check(&wrap_span(&span)).unwrap();
        assert_eq!((scan.n_spans, scan.n_rejected), (0, 1));
        assert_eq!(
            scan.rejected_message.as_deref(),
            Some("1 span rejected: trace_id must be 16 bytes (got 0)")
        );
        // An empty span message.
        let scan = check(&wrap_span(&[])).unwrap();
        assert_eq!(
            scan.rejected_message.as_deref(),
            Some("1 span rejected: trace_id must be 16 bytes (got 0); span_id must be 8 bytes (got 0)")
        );
    }

    #[test]
    fn the_last_id_field_wins() {
        let bad_then_good = [ld(1, &[1; 3]), ld(2, &SPAN), ld(1, &TRACE)].concat();
        let scan = check(&wrap_span(&bad_then_good)).unwrap();
        assert_eq!((scan.n_spans, scan.n_rejected), (1, 0));
        let good_then_bad = [ld(1, &TRACE), ld(2, &SPAN), ld(2, &[0; 8])].concat();
        let scan = check(&wrap_span(&good_then_bad)).unwrap();
        assert_eq!((scan.n_spans, scan.n_rejected), (0, 1));
    }

    #[test]
    fn rejected_message_gives_the_first_reason_of_each_kind() {
        let req = request(vec![
            resource(
                "a",
                vec![scope(
                    "x",
                    vec![
                        span_with(&[1; 5], &SPAN, "a"),
                        good_span("ok"),
                        span_with(&[1; 6], &SPAN, "b"),
                    ],
                )],
            ),
            resource("b", vec![scope("y", vec![span_with(&TRACE, &[0; 8], "c")])]),
        ]);
        let scan = check(&req.encode_to_vec()).unwrap();
        assert_eq!(
            scan,
            Scan {
                n_spans: 1,
                n_rejected: 3,
                rejected_message: Some(
                    "3 spans rejected: trace_id must be 16 bytes (got 5); span_id must not be all zero"
                        .to_string()
                ),
            }
        );
    }

    #[test]
    fn invalid_utf8_is_rejected_with_its_location() {
        let mut key = full_span("s");
        key.attributes.push(str_kv("@@KEY@@", "v"));
        let name = full_span("@@NAME@@");
        let mut nested = full_span("s");
        nested.attributes.push(kv(
            "outer",
            Value::KvlistValue(KeyValueList {
                values: vec![str_kv("@@NESTED@@", "v")],
            }),
        ));
        let mut entity = resource("svc", vec![scope("lib", vec![good_span("s")])]);
        entity.resource.as_mut().unwrap().entity_refs[0]
            .description_keys
            .push("@@ENTITY@@".to_string());
        let cases = [
            (one_span(key), "@@KEY@@", "KeyValue.key"),
            (one_span(name), "@@NAME@@", "Span.name"),
            (one_span(nested), "@@NESTED@@", "KeyValue.key"),
            (
                request(vec![entity]).encode_to_vec(),
                "@@ENTITY@@",
                "EntityRef.description_keys",
            ),
        ];
        for (mut bytes, marker, loc) in cases {
            assert!(check(&bytes).is_ok());
            let at = poison(&mut bytes, marker);
            let err = check(&bytes).unwrap_err();
            assert_eq!(
                err.message,
                format!("invalid protobuf at byte {at}: string field is not valid UTF-8 ({loc})")
            );
        }
        // Invalid UTF-8 in `bytes` fields is fine.
        let mut bytes = one_span(span_with(&TRACE, &SPAN, "n"));
        let at = bytes.windows(8).position(|w| w == SPAN).unwrap();
        bytes[at..at + 8].fill(0xff);
        assert_eq!(check(&bytes).unwrap().n_spans, 1);
    }

    #[test]
    fn every_truncation_of_a_valid_request_agrees_with_prost() {
        let bytes = request(vec![
            resource("a", vec![scope("x", vec![full_span("1"), good_span("2")])]),
            resource("b", vec![scope("y", vec![span_with(&[1; 3], &SPAN, "3")])]),
        ])
        .encode_to_vec();
        let mut rejected = 0;
        for len in 0..bytes.len() {
            rejected += usize::from(check(&bytes[..len]).is_err());
        }
        assert!(rejected > bytes.len() / 2);
        let err = scan_request(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(
            err.message.starts_with("invalid protobuf at byte "),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_skipped_at_every_level() {
        // One of each wire type, a nested group included, in field numbers no message uses.
        let unknown = [
            key(100, VARINT),
            varint(u64::MAX),
            key(101, I64),
            vec![0; 8],
            key(102, LEN),
            vec![2, 0xff, 0xfe],
            key(103, I32),
            vec![0; 4],
            key(104, SGROUP),
            key(1, VARINT),
            vec![1],
            key(105, SGROUP),
            ld(2, b"x"),
            key(105, EGROUP),
            key(104, EGROUP),
            key(536_870_911, VARINT),
            vec![0],
        ]
        .concat();
        let span = [full_span("s").encode_to_vec(), unknown.clone()].concat();
        let status = [ld(2, b"msg"), unknown.clone(), ld(1, b"reserved")].concat();
        let any = [ld(1, b"v"), unknown.clone()].concat();
        let kv = [ld(1, b"k"), ld(2, &any), unknown.clone()].concat();
        let span2 = [ld(1, &TRACE), ld(2, &SPAN), ld(15, &status), ld(9, &kv)].concat();
        let scope_spans = [ld(2, &span), unknown.clone(), ld(2, &span2)].concat();
        let resource = [ld(1, &unknown), ld(2, &scope_spans), unknown.clone()].concat();
        let bytes = [unknown.clone(), ld(1, &resource), unknown].concat();
        let scan = check(&bytes).unwrap();
        assert_eq!((scan.n_spans, scan.n_rejected), (2, 0));
    }

    #[test]
    fn wire_format_errors() {
        let span = [ld(1, &TRACE), ld(2, &SPAN)].concat();
        let ok = |extra: &[u8]| check(&wrap_span(&[&span, extra].concat())).is_ok();
        // Wrong wire types for known fields.
        assert!(!ok(&[key(5, VARINT), vec![1]].concat()));
        assert!(!ok(&[key(7, I32), vec![0; 4]].concat()));
        assert!(!ok(&[key(16, I64), vec![0; 8]].concat()));
        assert!(!ok(&[key(9, SGROUP), key(9, EGROUP)].concat()));
        assert!(!ok(&[key(6, LEN), vec![0]].concat()));
        assert!(ok(&[key(16, I32), vec![0; 4]].concat()));
        // Groups: skipped when unknown, like prost; a stray or mismatched end is an error.
        assert!(ok(&[key(50, SGROUP), key(50, EGROUP)].concat()));
        assert!(!ok(&key(50, EGROUP)));
        assert!(!ok(&[key(50, SGROUP), key(51, EGROUP)].concat()));
        assert!(!ok(&key(50, SGROUP)));
        // Keys.
        assert!(!ok(&[0x00, 0x00]));
        assert!(!ok(&key(50, 6)));
        assert!(!ok(&key(50, 7)));
        assert!(!ok(&[varint(1 << 32 | 50 << 3), vec![1]].concat()));
        // A non-minimal key for Span.dropped_attributes_count (10, varint).
        assert!(ok(&[0xd0, 0x80, 0x80, 0x00, 0x05]));
        // Varints: at most 10 bytes, the 10th at most 1.
        let long = |last: u8| [vec![0x50], vec![0xff; 9], vec![last]].concat();
        assert!(ok(&long(0x01)));
        assert!(!ok(&long(0x02)));
        assert!(!ok(&[vec![0x50], vec![0x80; 10], vec![0x00]].concat()));
        assert!(!ok(&[key(50, VARINT), vec![0x80]].concat()));
        // Lengths and fixed-width values.
        assert!(!ok(&[key(5, LEN), vec![5, b'a']].concat()));
        assert!(!ok(&[key(7, I64), vec![0; 7]].concat()));
        assert!(!ok(&[key(50, I32), vec![0; 3]].concat()));
        // Length prefixes that overrun the enclosing message but not the payload.
        let overrun = [ld(1, &[key(2, LEN), vec![3]].concat()), ld(9, b"xyz")].concat();
        assert!(check(&overrun).is_err());
        assert!(check(
            &[
                key(1, LEN),
                vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]
            ]
            .concat()
        )
        .is_err());
    }

    #[test]
    fn error_messages_say_what_and_where() {
        let bytes = wrap_span(&[ld(1, &TRACE), key(5, VARINT), vec![1]].concat());
        assert_eq!(
            scan_request(&bytes).unwrap_err().to_string(),
            "invalid protobuf at byte 24: varint wire type where length-delimited is expected (Span.name)"
        );
        let bytes = [ld(1, &[]), vec![0x0a, 0x05, 0x12]].concat();
        assert_eq!(
            scan_request(&bytes).unwrap_err().message,
            "invalid protobuf at byte 4: field needs 5 bytes but the enclosing message has 1 left \
             (ExportTraceServiceRequest.resource_spans)"
        );
        assert_eq!(
            scan_request(&[0x0f]).unwrap_err().message,
            "invalid protobuf at byte 0: invalid wire type 7 (ExportTraceServiceRequest)"
        );
    }

    /// AnyValue arrays nested `depth` deep inside a span attribute, `innermost` in the deepest
    /// AnyValue.
    fn nested_arrays(depth: usize, innermost: &[u8]) -> Vec<u8> {
        let mut any = innermost.to_vec();
        for _ in 0..depth {
            any = ld(5, &ld(1, &any));
        }
        let kv = [ld(1, b"k"), ld(2, &any)].concat();
        wrap_span(&[ld(1, &TRACE), ld(2, &SPAN), ld(9, &kv)].concat())
    }

    #[test]
    fn the_recursion_limit_matches_prost() {
        let group = |levels: usize| {
            let mut g = Vec::new();
            for i in 0..levels {
                g = [key(60 + i as u32, SGROUP), g, key(60 + i as u32, EGROUP)].concat();
            }
            g
        };
        // The deepest message allowed may hold scalars but no message and no unknown field.
        let innermost: [Vec<u8>; 11] = [
            vec![],
            ld(1, b"leaf"),
            [key(50, VARINT), vec![1]].concat(),
            group(1),
            group(4),
            ld(5, &[]),
            ld(5, &[key(50, VARINT), vec![1]].concat()),
            ld(6, &[]),
            ld(6, &ld(1, &[])),
            ld(6, &ld(1, &[ld(1, b"k"), key(3, VARINT), vec![1]].concat())),
            ld(6, &ld(1, &[key(50, I32), vec![0; 4]].concat())),
        ];
        for inner in &innermost {
            let (mut accepted, mut rejected) = (false, false);
            for depth in 40..52 {
                match check(&nested_arrays(depth, inner)) {
                    Ok(_) => accepted = true,
                    Err(e) => {
                        assert!(e.message.contains("recursion limit"), "{e}");
                        rejected = true;
                    }
                }
            }
            assert!(accepted && rejected);
        }
        // Deep kvlists too (three messages per level).
        let (mut accepted, mut rejected) = (false, false);
        for depth in 25..35 {
            let mut any = ld(1, b"leaf");
            for _ in 0..depth {
                any = ld(6, &ld(1, &[ld(1, b"k"), ld(2, &any)].concat()));
            }
            let kv = [ld(1, b"k"), ld(2, &any)].concat();
            match check(&wrap_span(&ld(9, &kv))) {
                Ok(_) => accepted = true,
                Err(_) => rejected = true,
            }
        }
        assert!(accepted && rejected);
        // Groups nested in an unknown field of the request.
        assert!(check(&group(99)).is_ok());
        assert!(check(&group(100)).is_ok());
        assert!(check(&group(101)).is_err());
    }

    #[test]
    fn without_rejected_spans_keeps_everything_else() {
        let mut big = full_span("big");
        big.attributes.push(str_kv("padding", &"p".repeat(300)));
        let req = request(vec![
            resource(
                "a",
                vec![
                    scope("x", vec![span_with(&[0; 16], &SPAN, "bad1"), big]),
                    // Dropping this span shortens the length prefixes of its ScopeSpans and
                    // ResourceSpans by a byte each.
                    scope("y", vec![span_with(&TRACE, &[1; 2], &"b".repeat(150))]),
                    scope("z", vec![good_span("kept")]),
                ],
            ),
            resource(
                "b",
                vec![scope("w", vec![good_span("kept2"), full_span("kept3")])],
            ),
        ]);
        let bytes = req.encode_to_vec();
        let scan = check(&bytes).unwrap();
        assert_eq!((scan.n_spans, scan.n_rejected), (4, 2));
        let out = decode(&without_rejected_spans(&bytes).unwrap()).unwrap();
        assert_eq!(out, without_bad(req.clone()));
        let scopes = &out.resource_spans[0].scope_spans;
        assert_eq!(scopes.len(), 3);
        assert!(scopes[1].spans.is_empty());
        assert_eq!(scopes[1].scope, req.resource_spans[0].scope_spans[1].scope);
        let names: Vec<_> = all_spans(&out).map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["big", "kept", "kept2", "kept3"]);
        assert_eq!(all_spans(&out).nth(3), Some(&full_span("kept3")));

        // Nothing rejected: the payload comes back as it was; invalid: an error.
        let good = one_span(full_span("s"));
        assert_eq!(without_rejected_spans(&good).unwrap(), good);
        assert!(without_rejected_spans(&good[..good.len() - 1]).is_err());
    }

    #[test]
    fn without_rejected_spans_keeps_unknown_fields_and_odd_encodings() {
        let unknown = [
            key(70, SGROUP),
            ld(1, b"x"),
            key(70, EGROUP),
            key(71, I32),
            vec![1; 4],
        ]
        .concat();
        let good = [ld(1, &TRACE), ld(2, &SPAN), unknown.clone()].concat();
        let bad = [ld(1, &TRACE), unknown.clone()].concat();
        let scope = [unknown.clone(), ld(2, &bad), ld(2, &good), ld(2, &bad)].concat();
        // A non-minimal key and length prefix on the ResourceSpans field.
        let resource = [ld(2, &scope), unknown.clone()].concat();
        let mut long_len = vec![0x8a, 0x00];
        long_len.extend([
            0x80 | (resource.len() as u8 & 0x7f),
            0x80 | (resource.len() >> 7) as u8,
            0x00,
        ]);
        let bytes = [unknown.clone(), long_len, resource, unknown.clone()].concat();
        let scan = check(&bytes).unwrap();
        assert_eq!((scan.n_spans, scan.n_rejected), (1, 2));
        let out = without_rejected_spans(&bytes).unwrap();
        let expected_resource = [
            ld(2, &[unknown.clone(), ld(2, &good)].concat()),
            unknown.clone(),
        ]
        .concat();
        assert_eq!(
            out,
            [
                unknown.clone(),
                vec![0x8a, 0x00],
                varint(expected_resource.len() as u64),
                expected_resource,
                unknown
            ]
            .concat()
        );
    }

    // ---------------------------------------------------------------------------------------
    // Property tests: the scanner agrees with prost on arbitrary and mutated payloads.

    fn config() -> ProptestConfig {
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(512);
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    fn arb_id() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => prop::collection::vec(any::<u8>(), 16),
            4 => prop::collection::vec(any::<u8>(), 8),
            1 => Just(vec![0; 16]),
            1 => Just(vec![0; 8]),
            1 => prop::collection::vec(any::<u8>(), 0..20),
        ]
    }

    fn arb_str() -> impl Strategy<Value = String> {
        prop_oneof![3 => "[a-z.]{0,10}", 1 => "\\PC{0,4}"]
    }

    fn arb_any_value() -> impl Strategy<Value = AnyValue> {
        let leaf = prop_oneof![
            Just(None),
            arb_str().prop_map(|s| Some(Value::StringValue(s))),
            any::<bool>().prop_map(|b| Some(Value::BoolValue(b))),
            any::<i64>().prop_map(|i| Some(Value::IntValue(i))),
            any::<f64>().prop_map(|d| Some(Value::DoubleValue(d))),
            prop::collection::vec(any::<u8>(), 0..6).prop_map(|b| Some(Value::BytesValue(b))),
            any::<i32>().prop_map(|i| Some(Value::StringValueStrindex(i))),
        ]
        .prop_map(|value| AnyValue { value });
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(|values| AnyValue {
                    value: Some(Value::ArrayValue(ArrayValue { values })),
                }),
                prop::collection::vec((arb_str(), inner), 0..3).prop_map(|kvs| AnyValue {
                    value: Some(Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, value)| KeyValue {
                                key,
                                value: Some(value),
                                key_strindex: 0,
                            })
                            .collect(),
                    })),
                }),
            ]
        })
    }

    fn arb_attrs() -> impl Strategy<Value = Vec<KeyValue>> {
        prop::collection::vec(
            (arb_str(), prop::option::of(arb_any_value()), 0..3i32).prop_map(
                |(key, value, key_strindex)| KeyValue {
                    key,
                    value,
                    key_strindex,
                },
            ),
            0..3,
        )
    }

    fn arb_span() -> impl Strategy<Value = Span> {
        let event = (any::<u64>(), arb_str(), arb_attrs(), 0..3u32).prop_map(
            |(time_unix_nano, name, attributes, dropped_attributes_count)| span::Event {
                time_unix_nano,
                name,
                attributes,
                dropped_attributes_count,
            },
        );
        let link = (arb_id(), arb_id(), arb_str(), arb_attrs(), any::<u32>()).prop_map(
            |(trace_id, span_id, trace_state, attributes, flags)| span::Link {
                trace_id,
                span_id,
                trace_state,
                attributes,
                dropped_attributes_count: 0,
                flags,
            },
        );
        let status = prop::option::of(
            (arb_str(), 0..3i32).prop_map(|(message, code)| Status { message, code }),
        );
        (
            (
                arb_id(),
                arb_id(),
                arb_str(),
                arb_id(),
                any::<u32>(),
                arb_str(),
            ),
            (0..6i32, any::<u64>(), any::<u64>(), arb_attrs(), 0..2u32),
            (
                prop::collection::vec(event, 0..2),
                prop::collection::vec(link, 0..2),
                status,
            ),
        )
            .prop_map(
                |(
                    (trace_id, span_id, trace_state, parent_span_id, flags, name),
                    (kind, start, end, attributes, dropped),
                    (events, links, status),
                )| Span {
                    trace_id,
                    span_id,
                    trace_state,
                    parent_span_id,
                    flags,
                    name,
                    kind,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes,
                    dropped_attributes_count: dropped,
                    events,
                    dropped_events_count: dropped,
                    links,
                    dropped_links_count: dropped,
                    status,
                },
            )
    }

    fn arb_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
        let scope_spans = (
            prop::option::of((arb_str(), arb_str(), arb_attrs()).prop_map(
                |(name, version, attributes)| InstrumentationScope {
                    name,
                    version,
                    attributes,
                    dropped_attributes_count: 0,
                },
            )),
            prop::collection::vec(arb_span(), 0..4),
            arb_str(),
        )
            .prop_map(|(scope, spans, schema_url)| ScopeSpans {
                scope,
                spans,
                schema_url,
            });
        let entity_ref = (arb_str(), arb_str(), prop::collection::vec(arb_str(), 0..2)).prop_map(
            |(schema_url, r#type, id_keys)| EntityRef {
                schema_url,
                r#type,
                description_keys: id_keys.clone(),
                id_keys,
            },
        );
        let resource_spans = (
            prop::option::of(
                (arb_attrs(), prop::collection::vec(entity_ref, 0..2)).prop_map(
                    |(attributes, entity_refs)| Resource {
                        attributes,
                        dropped_attributes_count: 0,
                        entity_refs,
                    },
                ),
            ),
            prop::collection::vec(scope_spans, 0..3),
            arb_str(),
        )
            .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans {
                resource,
                scope_spans,
                schema_url,
            });
        prop::collection::vec(resource_spans, 0..3).prop_map(request)
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(prop::sample::Index, u8),
        Set(prop::sample::Index, u8),
        Truncate(prop::sample::Index),
        Insert(prop::sample::Index, Vec<u8>),
        Remove(prop::sample::Index, usize),
    }

    fn arb_mutation() -> impl Strategy<Value = Mutation> {
        use prop::sample::Index;
        prop_oneof![
            (any::<Index>(), 0..8u8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
            (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
            any::<Index>().prop_map(Mutation::Truncate),
            (any::<Index>(), prop::collection::vec(any::<u8>(), 1..4))
                .prop_map(|(i, b)| Mutation::Insert(i, b)),
            (any::<Index>(), 1..4usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        ]
    }

    fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
        if bytes.is_empty() {
            if let Mutation::Insert(_, b) = mutation {
                bytes.extend_from_slice(b);
            }
            return;
        }
        let len = bytes.len();
        match mutation {
            Mutation::Flip(i, bit) => bytes[i.index(len)] ^= 1 << bit,
            Mutation::Set(i, b) => bytes[i.index(len)] = *b,
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
            Mutation::Insert(i, b) => {
                let at = i.index(bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let at = i.index(bytes.len());
                bytes.drain(at..(at + n).min(bytes.len()));
            }
        }
    }

    /// A wire-format tree, for payloads prost structs cannot produce (repeated singular fields,
    /// wrong wire types, unknown fields and groups, odd varints).
    #[derive(Debug, Clone)]
    enum Raw {
        Varint(u32, u64),
        I64(u32),
        I32(u32),
        Bytes(u32, Vec<u8>),
        Message(u32, Vec<Raw>),
        Group(u32, Vec<Raw>),
        EndGroup(u32),
        /// Anything, e.g. a key over 32 bits or a 10-byte varint.
        Verbatim(Vec<u8>),
    }

    fn encode_raw(fields: &[Raw], out: &mut Vec<u8>) {
        for field in fields {
            match field {
                Raw::Varint(tag, v) => out.extend([key(*tag, VARINT), varint(*v)].concat()),
                Raw::I64(tag) => out.extend([key(*tag, I64), vec![0x11; 8]].concat()),
                Raw::I32(tag) => out.extend([key(*tag, I32), vec![0x22; 4]].concat()),
                Raw::Bytes(tag, b) => out.extend(ld(*tag, b)),
                Raw::Message(tag, inner) => {
                    let mut body = Vec::new();
                    encode_raw(inner, &mut body);
                    out.extend(ld(*tag, &body));
                }
                Raw::Group(tag, inner) => {
                    out.extend(key(*tag, SGROUP));
                    encode_raw(inner, out);
                    out.extend(key(*tag, EGROUP));
                }
                Raw::EndGroup(tag) => out.extend(key(*tag, EGROUP)),
                Raw::Verbatim(b) => out.extend(b),
            }
        }
    }

    /// A field of any kind, nested up to a few levels, numbers mostly those the schema uses.
    fn arb_raw_field() -> BoxedStrategy<Raw> {
        let tag = prop_oneof![6 => 1..4u32, 3 => 1..17u32, 1 => 17..40u32];
        let bytes = prop_oneof![
            Just(vec![]),
            Just(TRACE.to_vec()),
            Just(SPAN.to_vec()),
            Just(vec![0; 16]),
            Just(vec![0xc3, 0xa9]),
            Just(vec![0xc3]),
            prop::collection::vec(any::<u8>(), 0..6),
        ];
        let odd = prop_oneof![
            // A key for field `tag` plus 2^32 (or more): too large for prost.
            (tag.clone(), 1..8u64).prop_map(|(t, hi)| [
                varint(hi << 32 | u64::from(t) << 3),
                vec![1]
            ]
            .concat()),
            // A 10-byte varint value: valid only if the last byte is 0 or 1.
            (tag.clone(), 0..4u8)
                .prop_map(|(t, last)| [key(t, VARINT), vec![0x80; 9], vec![last]].concat()),
            // A non-minimal key.
            (tag.clone(), 0..6u8).prop_map(|(t, wt)| {
                let mut k = key(t, wt);
                *k.last_mut().unwrap() |= 0x80;
                k.push(0);
                [k, vec![1]].concat()
            }),
        ];
        let leaf = prop_oneof![
            2 => (tag.clone(), prop_oneof![Just(0), Just(1), any::<u64>()])
                .prop_map(|(t, v)| Raw::Varint(t, v)),
            1 => tag.clone().prop_map(Raw::I64),
            1 => tag.clone().prop_map(Raw::I32),
            3 => (tag.clone(), bytes).prop_map(|(t, b)| Raw::Bytes(t, b)),
            1 => tag.clone().prop_map(Raw::EndGroup),
            1 => odd.prop_map(Raw::Verbatim),
        ];
        leaf.prop_recursive(5, 32, 4, move |inner| {
            prop_oneof![
                4 => (tag.clone(), prop::collection::vec(inner.clone(), 0..4))
                    .prop_map(|(t, f)| Raw::Message(t, f)),
                1 => (tag.clone(), prop::collection::vec(inner, 0..3))
                    .prop_map(|(t, f)| Raw::Group(t, f)),
            ]
        })
        .boxed()
    }

    /// Free-form trees.
    fn arb_raw() -> impl Strategy<Value = Vec<Raw>> {
        prop::collection::vec(arb_raw_field(), 0..4)
    }

    /// Trees that follow the request / ResourceSpans / ScopeSpans / Span nesting, with spans
    /// built from id fields (repeated at times) and arbitrary fields.
    fn arb_raw_request() -> impl Strategy<Value = Vec<Raw>> {
        let id = prop_oneof![
            Just(TRACE.to_vec()),
            Just(SPAN.to_vec()),
            Just(vec![0; 16]),
            Just(vec![0; 8]),
            prop::collection::vec(any::<u8>(), 0..18),
        ];
        let good_or = |good: &[u8]| prop_oneof![3 => Just(good.to_vec()), 1 => id.clone()];
        // Known span fields with the right wire types, and fields no message uses.
        let well_typed = prop_oneof![
            (1..3u32, id.clone()).prop_map(|(t, b)| Raw::Bytes(t, b)),
            Just(Raw::Bytes(5, b"name".to_vec())),
            Just(Raw::Varint(6, 2)),
            Just(Raw::I64(7)),
            Just(Raw::I32(16)),
            Just(Raw::Message(15, vec![Raw::Bytes(2, b"ok".to_vec())])),
            (17..30u32).prop_map(Raw::I32),
            // A 10-byte kind: valid only if the last byte is 0 or 1.
            (0..4u8).prop_map(|last| Raw::Verbatim(
                [key(6, VARINT), vec![0xff; 9], vec![last]].concat()
            )),
            (17..30u32, prop::collection::vec(arb_raw_field(), 0..3))
                .prop_map(|(t, f)| Raw::Group(t, f)),
        ];
        // Any span field with any wire type.
        let any_typed = (1..17u32, 0..4u8).prop_map(|(t, wt)| match wt {
            0 => Raw::Varint(t, 1),
            1 => Raw::I64(t),
            2 => Raw::Bytes(t, b"ab".to_vec()),
            _ => Raw::I32(t),
        });
        let span = (
            good_or(&TRACE),
            good_or(&SPAN),
            prop::collection::vec(
                prop_oneof![6 => well_typed, 1 => any_typed, 1 => arb_raw_field()],
                0..4,
            ),
        )
            .prop_map(|(trace_id, span_id, rest)| {
                let ids = [Raw::Bytes(1, trace_id), Raw::Bytes(2, span_id)];
                Raw::Message(2, ids.into_iter().chain(rest).collect())
            });
        let nested = |child: BoxedStrategy<Raw>, tag: u32| {
            prop::collection::vec(prop_oneof![4 => child, 1 => arb_raw_field()], 0..4)
                .prop_map(move |f| Raw::Message(tag, f))
                .boxed()
        };
        let scope_spans = nested(span.boxed(), 2);
        let resource_spans = nested(scope_spans, 1);
        prop::collection::vec(prop_oneof![4 => resource_spans, 1 => arb_raw_field()], 0..3)
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn utf8_check_agrees_with_std(
            bytes in prop::collection::vec(prop_oneof![8 => 0..0x80u8, 1 => any::<u8>()], 0..40),
        ) {
            let std = str::from_utf8(&bytes).map(drop).map_err(|e| e.valid_up_to());
            prop_assert_eq!(check_utf8(&bytes), std);
        }

        #[test]
        fn agrees_with_prost_on_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            check(&bytes).ok();
        }

        #[test]
        fn agrees_with_prost_on_mutated_requests(
            req in arb_request(),
            mutations in prop::collection::vec(arb_mutation(), 0..4),
        ) {
            let mut bytes = req.encode_to_vec();
            for m in &mutations {
                mutate(&mut bytes, m);
            }
            check(&bytes).ok();
        }

        #[test]
        fn agrees_with_prost_on_raw_trees(
            raw in prop_oneof![arb_raw(), arb_raw_request()],
            mutations in prop::collection::vec(arb_mutation(), 0..2),
        ) {
            let mut bytes = Vec::new();
            encode_raw(&raw, &mut bytes);
            for m in &mutations {
                mutate(&mut bytes, m);
            }
            check(&bytes).ok();
        }
    }
}
