//! TraceQL: the subset Tempo search accepts.
//!
//! A query is one spanset filter, `{ <conditions> }`, where conditions are comparisons joined by
//! `&&` and `||` (`&&` binds tighter) and grouped with parentheses. `{}` and an empty query
//! match every span. Pipelines, structural operators, several spansets, `select(...)` and
//! aggregates are rejected with a [`ParseError`].
//!
//! A comparison is `<field> <op> <value>`:
//!
//! - fields: the intrinsics `name`, `status`, `kind`, `duration` and `statusMessage` (also
//!   spelled `span:name`, ...), span attributes `span.<name>`, resource attributes
//!   `resource.<name>` and unscoped attributes `.<name>` (the span attribute when the span has
//!   it, else the resource attribute). `resource.service.name` and `.service.name` are the
//!   span's service. Attribute names may be quoted: `span."http.route"`.
//! - where each end of the call ran: DeepFlow's place columns, `span.<column>` or `.<column>`
//!   (`.pod_1`, `span.pod_group_0`, `.auto_service_1`, ...: `_0` is the client end, `_1` the
//!   server end). These names are the columns, not attributes of the same name; an unknown
//!   place is a missing value. Where the span itself ran is also in its resource attributes
//!   (`resource.k8s.pod.name`, ...).
//! - operators: `=`, `!=`, `>`, `>=`, `<`, `<=`, and the full-match regular expression
//!   operators `=~` and `!~`.
//! - values: strings (`"..."` with `\"`, `\\`, `\n`, `\t`, `\r` escapes, or raw `` `...` ``),
//!   integers, floats, `true`/`false`, durations (`250ns`, `10us`, `10µs`, `100ms`, `1.5s`,
//!   `2m`, `1h`, `1h30m`), the status words `error`, `ok`, `unset` and the kind words
//!   `server`, `client`, `producer`, `consumer`, `internal`, `unspecified`.
//!
//! Attribute comparisons are typed: strings compare with strings, numbers with numbers (an int
//! against a float compares exactly), bools with bools under `=` and `!=`. A string attribute
//! takes part in a numeric comparison when its text is a number exactly as that number prints
//! (`"503"`, `"-2"`, `"1.5"`; not `"0503"`, `"+2"`, `"1.0"` or `"1e3"`). A comparison of
//! mismatched types does not match, and neither does any comparison on a missing attribute,
//! `!=` included.

use std::cmp::Ordering;
use std::fmt;

use regex::{Regex, RegexBuilder};
use spanflow_model::{AttrValue, SpanKind, SpanRow};
use spanflow_store::{AttributeFilter, PlaceFilter, SpanQuery};

use crate::json::place_of;

/// The longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// The deepest parenthesis nesting accepted.
pub const MAX_NESTING: usize = 64;

/// The most memory one regular expression may compile to, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Integer literals of at most this magnitude print the same as every float equal to them,
/// so an equality on them can be pushed down as text.
const EXACT_FLOAT_INT: u64 = 1 << 53;

/// Why a query was rejected, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong, for a person to read.
    pub message: String,
    /// Where, as a 0-based offset in characters from the start of the query.
    pub position: usize,
}

impl ParseError {
    fn new(position: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            message: message.into(),
            position,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.position + 1, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A parsed spanset filter `{ ... }`.
#[derive(Clone, Debug)]
pub struct Query {
    /// `None` matches every span.
    expr: Option<Expr>,
}

/// Parses a TraceQL spanset filter. Empty or whitespace-only text is `{}`.
pub fn parse(text: &str) -> Result<Query, ParseError> {
    if text.len() > MAX_QUERY_BYTES {
        let position = text
            .char_indices()
            .take_while(|(offset, _)| *offset < MAX_QUERY_BYTES)
            .count();
        return Err(ParseError::new(
            position,
            format!(
                "query is too long: {} bytes, the limit is {MAX_QUERY_BYTES}",
                text.len()
            ),
        ));
    }
    Parser::new(text).query().map(|expr| Query { expr })
}

impl Query {
    /// Whether a span satisfies the filter.
    pub fn matches(&self, row: &SpanRow) -> bool {
        self.expr.as_ref().is_none_or(|expr| expr.matches(row))
    }

    /// Conditions every matching span must satisfy, as a [`SpanQuery`] the store can push down
    /// (a superset filter: every span `matches` accepts also matches the returned query).
    ///
    /// Only conditions joined by `&&` at the top level are taken; anything under `||` is left
    /// to [`Query::matches`]. `limit` is left at its default.
    pub fn pushdown(&self) -> SpanQuery {
        let mut query = SpanQuery::default();
        if let Some(expr) = &self.expr {
            expr.push_into(&mut query);
        }
        query
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// A boolean combination of conditions.
#[derive(Clone, Debug)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Condition(Condition),
}

impl Expr {
    fn matches(&self, row: &SpanRow) -> bool {
        match self {
            Expr::And(terms) => terms.iter().all(|term| term.matches(row)),
            Expr::Or(terms) => terms.iter().any(|term| term.matches(row)),
            Expr::Condition(condition) => condition.matches(row),
        }
    }

    /// Adds the conditions that hold for every match to `query`; `||` branches add nothing.
    fn push_into(&self, query: &mut SpanQuery) {
        match self {
            Expr::And(terms) => terms.iter().for_each(|term| term.push_into(query)),
            Expr::Or(_) => {}
            Expr::Condition(condition) => condition.push_into(query),
        }
    }
}

/// One type-checked comparison.
#[derive(Clone, Debug)]
enum Condition {
    /// The span name.
    Name(TextTest),
    StatusMessage(TextTest),
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    Status {
        equal: bool,
        code: u8,
    },
    Kind {
        equal: bool,
        kind: SpanKind,
    },
    /// The span duration against a duration in nanoseconds.
    Duration {
        op: CmpOp,
        nanos: i128,
    },
    Attribute {
        source: Source,
        test: ValueTest,
    },
}

/// Where an attribute's value comes from.
#[derive(Clone, Debug)]
enum Source {
    /// The span's service (`resource.service.name`, `.service.name`).
    Service,
    Span(String),
    Resource(String),
    /// The span attribute when the span has it, else the resource attribute.
    Unscoped(String),
    /// A place column of one end of the call: `pod` and 1 for `pod_1`.
    Place {
        column: &'static str,
        side: u8,
    },
}

impl Condition {
    fn matches(&self, row: &SpanRow) -> bool {
        match self {
            Condition::Name(test) => test.matches(&row.endpoint),
            Condition::StatusMessage(test) => test.matches(&row.status_message),
            Condition::Status { equal, code } => (row.status_code == *code) == *equal,
            Condition::Kind { equal, kind } => (row.span_kind == *kind) == *equal,
            Condition::Duration { op, nanos } => {
                let span_nanos = i128::from(row.response_duration) * 1000;
                op.holds(Some(span_nanos.cmp(nanos)))
            }
            Condition::Attribute { source, test } => match source {
                Source::Service => test.matches_str(&row.app_service),
                Source::Span(key) => row.attribute(key).is_some_and(|value| test.matches(value)),
                Source::Resource(key) => row
                    .resource_attribute(key)
                    .is_some_and(|value| test.matches(value)),
                Source::Unscoped(key) => row
                    .attribute(key)
                    .or_else(|| row.resource_attribute(key))
                    .is_some_and(|value| test.matches(value)),
                Source::Place { column, side } => place_of(row, *side)
                    .text(column)
                    .filter(|text| !text.is_empty())
                    .is_some_and(|text| test.matches_str(text)),
            },
        }
    }

    fn push_into(&self, query: &mut SpanQuery) {
        match self {
            Condition::Name(TextTest::Compare(CmpOp::Eq, name)) => {
                query.operation.get_or_insert_with(|| name.clone());
            }
            Condition::Duration { op, nanos } => push_duration(query, *op, *nanos),
            Condition::Attribute {
                source: Source::Service,
                test: ValueTest::Text(TextTest::Compare(CmpOp::Eq, service)),
            } => {
                query.service.get_or_insert_with(|| service.clone());
            }
            Condition::Attribute {
                source: Source::Span(key) | Source::Resource(key) | Source::Unscoped(key),
                test,
            } => {
                if let Some(value) = test.pushable_text() {
                    let filter = AttributeFilter {
                        key: key.clone(),
                        value,
                    };
                    if !query.attributes.contains(&filter) {
                        query.attributes.push(filter);
                    }
                }
            }
            Condition::Attribute {
                source: Source::Place { column, side },
                test,
            } => {
                let filter = test
                    .pushable_text()
                    .and_then(|value| PlaceFilter::new(&format!("{column}_{side}"), value));
                if let Some(filter) = filter {
                    if !query.places.contains(&filter) {
                        query.places.push(filter);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Narrows the query's duration bounds (µs) so they keep every span whose duration in
/// nanoseconds satisfies `op nanos`.
fn push_duration(query: &mut SpanQuery, op: CmpOp, nanos: i128) {
    let (min, max) = match op {
        CmpOp::Ge => (Some(ceil_micros(nanos)), None),
        CmpOp::Gt => (Some(ceil_micros(nanos + 1)), None),
        CmpOp::Le => (None, Some(floor_micros(nanos))),
        CmpOp::Lt => (None, Some(floor_micros(nanos - 1))),
        CmpOp::Eq => (Some(ceil_micros(nanos)), Some(floor_micros(nanos))),
        CmpOp::Ne => (None, None),
    };
    if let Some(min) = min.filter(|min| *min > 0) {
        let min = u64::try_from(min).unwrap_or(u64::MAX);
        query.min_duration_us = Some(query.min_duration_us.map_or(min, |old| old.max(min)));
    }
    // A negative upper bound matches nothing; leaving it out keeps the superset.
    if let Some(max) = max.and_then(|max| u64::try_from(max).ok()) {
        query.max_duration_us = Some(query.max_duration_us.map_or(max, |old| old.min(max)));
    }
}

/// The fewest whole microseconds at least `nanos` long.
fn ceil_micros(nanos: i128) -> i128 {
    nanos.div_euclid(1000) + i128::from(nanos.rem_euclid(1000) != 0)
}

/// The most whole microseconds at most `nanos` long.
fn floor_micros(nanos: i128) -> i128 {
    nanos.div_euclid(1000)
}

/// A comparison operator other than the regular expression ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    /// Whether `left op right` holds given how left orders against right; unordered values
    /// (NaN) are only unequal.
    fn holds(self, ordering: Option<Ordering>) -> bool {
        let Some(ordering) = ordering else {
            return self == CmpOp::Ne;
        };
        match self {
            CmpOp::Eq => ordering == Ordering::Equal,
            CmpOp::Ne => ordering != Ordering::Equal,
            CmpOp::Gt => ordering == Ordering::Greater,
            CmpOp::Ge => ordering != Ordering::Less,
            CmpOp::Lt => ordering == Ordering::Less,
            CmpOp::Le => ordering != Ordering::Greater,
        }
    }

    fn is_equality(self) -> bool {
        matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

/// A test on a string.
#[derive(Clone, Debug)]
enum TextTest {
    /// Lexicographic comparison with a literal.
    Compare(CmpOp, String),
    /// Full match of an anchored regular expression, negated for `!~`.
    Regex { negated: bool, regex: Regex },
}

impl TextTest {
    fn matches(&self, text: &str) -> bool {
        match self {
            TextTest::Compare(op, literal) => op.holds(Some(text.cmp(literal.as_str()))),
            TextTest::Regex { negated, regex } => regex.is_match(text) != *negated,
        }
    }
}

/// A test on an attribute value, typed by the literal it compares with.
#[derive(Clone, Debug)]
enum ValueTest {
    Text(TextTest),
    Int(CmpOp, i64),
    Float(CmpOp, f64),
    Bool { equal: bool, value: bool },
}

impl ValueTest {
    fn matches(&self, value: &AttrValue) -> bool {
        match value {
            AttrValue::String(text) => self.matches_str(text),
            AttrValue::Bool(actual) => match self {
                ValueTest::Bool { equal, value } => (actual == value) == *equal,
                _ => false,
            },
            AttrValue::Int(actual) => self.matches_number(Number::Int(*actual)),
            AttrValue::Double(actual) => self.matches_number(Number::Float(*actual)),
            _ => false,
        }
    }

    fn matches_str(&self, text: &str) -> bool {
        match self {
            ValueTest::Text(test) => test.matches(text),
            ValueTest::Int(..) | ValueTest::Float(..) => {
                canonical_number(text).is_some_and(|number| self.matches_number(number))
            }
            ValueTest::Bool { .. } => false,
        }
    }

    fn matches_number(&self, number: Number) -> bool {
        match self {
            ValueTest::Int(op, literal) => op.holds(number.compare(Number::Int(*literal))),
            ValueTest::Float(op, literal) => op.holds(number.compare(Number::Float(*literal))),
            ValueTest::Text(_) | ValueTest::Bool { .. } => false,
        }
    }

    /// The text form (as [`AttrValue::to_text`] prints it) every value passing this test has,
    /// when there is exactly one.
    fn pushable_text(&self) -> Option<String> {
        match self {
            ValueTest::Text(TextTest::Compare(CmpOp::Eq, text)) => Some(text.clone()),
            // Zero is left out because a float -0.0 equals it but prints `-0`.
            ValueTest::Int(CmpOp::Eq, value)
                if *value != 0 && value.unsigned_abs() < EXACT_FLOAT_INT =>
            {
                Some(value.to_string())
            }
            ValueTest::Bool { equal: true, value } => Some(value.to_string()),
            _ => None,
        }
    }
}

/// A numeric attribute value or literal.
#[derive(Clone, Copy, Debug)]
enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    /// Exact comparison, ints against floats included; `None` when a NaN is involved.
    fn compare(self, other: Number) -> Option<Ordering> {
        match (self, other) {
            (Number::Int(left), Number::Int(right)) => Some(left.cmp(&right)),
            (Number::Float(left), Number::Float(right)) => left.partial_cmp(&right),
            (Number::Int(left), Number::Float(right)) => compare_int_float(left, right),
            (Number::Float(left), Number::Int(right)) => {
                compare_int_float(right, left).map(Ordering::reverse)
            }
        }
    }
}

/// Compares an integer with a float without rounding either.
fn compare_int_float(int: i64, float: f64) -> Option<Ordering> {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if float.is_nan() {
        return None;
    }
    if float >= TWO_POW_63 {
        return Some(Ordering::Less);
    }
    if float < -TWO_POW_63 {
        return Some(Ordering::Greater);
    }
    let whole = float.trunc();
    // In range and integral, so the cast is exact.
    match int.cmp(&(whole as i64)) {
        Ordering::Equal => 0.0_f64.partial_cmp(&(float - whole)),
        unequal => Some(unequal),
    }
}

/// A string's numeric value when the string is that number exactly as it prints.
fn canonical_number(text: &str) -> Option<Number> {
    if let Ok(int) = text.parse::<i64>() {
        return (int.to_string() == text).then_some(Number::Int(int));
    }
    let float = text.parse::<f64>().ok()?;
    (float.is_finite() && float.to_string() == text).then_some(Number::Float(float))
}

// ---------------------------------------------------------------------------------------------
// Lexing
// ---------------------------------------------------------------------------------------------

/// A comparison operator as written.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Operator {
    Cmp(CmpOp),
    Regex,
    NotRegex,
}

#[derive(Clone, Debug, PartialEq)]
enum TokenKind {
    LBrace,
    RBrace,
    LParen,
    RParen,
    And,
    Or,
    Op(Operator),
    Bang,
    Pipe,
    /// `>>`, `<<` or `~`, only meaningful between spansets.
    Structural(&'static str),
    /// A field name or a bare word value.
    Word(String),
    Str(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i128),
    Other(char),
    End,
}

impl TokenKind {
    fn describe(&self) -> String {
        match self {
            TokenKind::LBrace => "`{`".into(),
            TokenKind::RBrace => "`}`".into(),
            TokenKind::LParen => "`(`".into(),
            TokenKind::RParen => "`)`".into(),
            TokenKind::And => "`&&`".into(),
            TokenKind::Or => "`||`".into(),
            TokenKind::Op(_) => "an operator".into(),
            TokenKind::Bang => "`!`".into(),
            TokenKind::Pipe => "`|`".into(),
            TokenKind::Structural(symbol) => format!("`{symbol}`"),
            TokenKind::Word(word) => format!("`{word}`"),
            TokenKind::Str(_) => "a string".into(),
            TokenKind::Int(_) | TokenKind::Float(_) => "a number".into(),
            TokenKind::Duration(_) => "a duration".into(),
            TokenKind::Other(symbol) => format!("`{symbol}`"),
            TokenKind::End => "the end of the query".into(),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    /// Offset in characters.
    position: usize,
}

/// Characters allowed in field names after the first.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':')
}

/// Characters a field name or bare word can start with.
fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '.'
}

/// A duration unit's length in nanoseconds.
fn unit_nanos(unit: &str) -> Option<u128> {
    match unit {
        "ns" => Some(1),
        "us" | "µs" | "μs" => Some(1_000),
        "ms" => Some(1_000_000),
        "s" => Some(1_000_000_000),
        "m" => Some(60_000_000_000),
        "h" => Some(3_600_000_000_000),
        _ => None,
    }
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

impl Lexer {
    fn new(text: &str) -> Lexer {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
        }
    }

    fn peek_char(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn char_after(&self) -> Option<char> {
        self.chars.get(self.pos + 1).copied()
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek_char().is_some_and(&keep) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        self.take_while(char::is_whitespace);
        let position = self.pos;
        let kind = match self.peek_char() {
            None => TokenKind::End,
            Some(c) if c.is_ascii_digit() => self.number(position)?,
            Some('-') if self.char_after().is_some_and(|c| c.is_ascii_digit()) => {
                self.number(position)?
            }
            Some('"' | '`') => TokenKind::Str(self.quoted()?),
            Some(c) if is_word_start(c) => self.word()?,
            Some(c) => self.symbol(c),
        };
        Ok(Token { kind, position })
    }

    /// Punctuation and operators.
    fn symbol(&mut self, c: char) -> TokenKind {
        let next = self.char_after();
        let (kind, length) = match (c, next) {
            ('{', _) => (TokenKind::LBrace, 1),
            ('}', _) => (TokenKind::RBrace, 1),
            ('(', _) => (TokenKind::LParen, 1),
            (')', _) => (TokenKind::RParen, 1),
            ('&', Some('&')) => (TokenKind::And, 2),
            ('|', Some('|')) => (TokenKind::Or, 2),
            ('|', _) => (TokenKind::Pipe, 1),
            ('=', Some('~')) => (TokenKind::Op(Operator::Regex), 2),
            ('=', _) => (TokenKind::Op(Operator::Cmp(CmpOp::Eq)), 1),
            ('!', Some('=')) => (TokenKind::Op(Operator::Cmp(CmpOp::Ne)), 2),
            ('!', Some('~')) => (TokenKind::Op(Operator::NotRegex), 2),
            ('!', _) => (TokenKind::Bang, 1),
            ('>', Some('=')) => (TokenKind::Op(Operator::Cmp(CmpOp::Ge)), 2),
            ('>', Some('>')) => (TokenKind::Structural(">>"), 2),
            ('>', _) => (TokenKind::Op(Operator::Cmp(CmpOp::Gt)), 1),
            ('<', Some('=')) => (TokenKind::Op(Operator::Cmp(CmpOp::Le)), 2),
            ('<', Some('<')) => (TokenKind::Structural("<<"), 2),
            ('<', _) => (TokenKind::Op(Operator::Cmp(CmpOp::Lt)), 1),
            ('~', _) => (TokenKind::Structural("~"), 1),
            (other, _) => (TokenKind::Other(other), 1),
        };
        self.pos += length;
        kind
    }

    /// A string in double quotes (with escapes) or backticks (raw). Unknown escapes are kept
    /// as written, so `"\d+"` reaches a regular expression as `\d+`.
    fn quoted(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let quote = self.chars[start];
        self.pos += 1;
        let unterminated = || ParseError::new(start, "unterminated string: missing closing quote");
        let mut text = String::new();
        loop {
            let c = self.peek_char().ok_or_else(unterminated)?;
            self.pos += 1;
            if c == quote {
                return Ok(text);
            }
            if c != '\\' || quote == '`' {
                text.push(c);
                continue;
            }
            let escaped = self.peek_char().ok_or_else(unterminated)?;
            self.pos += 1;
            match escaped {
                '"' | '\\' => text.push(escaped),
                'n' => text.push('\n'),
                't' => text.push('\t'),
                'r' => text.push('\r'),
                other => {
                    text.push('\\');
                    text.push(other);
                }
            }
        }
    }

    /// A field name or bare word; `span."quoted name"` is read as one word.
    fn word(&mut self) -> Result<TokenKind, ParseError> {
        let mut word = self.take_while(is_word_char);
        if word.ends_with('.') && matches!(self.peek_char(), Some('"' | '`')) {
            word.push_str(&self.quoted()?);
        }
        Ok(TokenKind::Word(word))
    }

    /// Digits and, when a digit follows the dot, a fraction.
    fn digits_and_fraction(&mut self) -> (String, Option<String>) {
        let whole = self.take_while(|c| c.is_ascii_digit());
        if self.peek_char() == Some('.') && self.char_after().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            let fraction = self.take_while(|c| c.is_ascii_digit());
            return (whole, Some(fraction));
        }
        (whole, None)
    }

    /// An integer, a float or a duration (`1h30m`, `1.5s`), optionally negative.
    fn number(&mut self, start: usize) -> Result<TokenKind, ParseError> {
        let negative = self.peek_char() == Some('-');
        if negative {
            self.pos += 1;
        }
        let (whole, fraction) = self.digits_and_fraction();
        if !self.peek_char().is_some_and(char::is_alphabetic) {
            self.reject_word_tail(start)?;
            return plain_number(negative, &whole, fraction.as_deref(), start);
        }
        let nanos = self.duration_nanos(start, whole, fraction)?;
        self.reject_word_tail(start)?;
        Ok(TokenKind::Duration(if negative { -nanos } else { nanos }))
    }

    /// The rest of a duration whose first number has been read.
    fn duration_nanos(
        &mut self,
        start: usize,
        mut whole: String,
        mut fraction: Option<String>,
    ) -> Result<i128, ParseError> {
        let out_of_range = || ParseError::new(start, "duration out of range");
        let mut total: u128 = 0;
        loop {
            let unit_start = self.pos;
            let unit = self.take_while(char::is_alphabetic);
            let scale = unit_nanos(&unit).ok_or_else(|| {
                ParseError::new(
                    unit_start,
                    format!("unknown duration unit `{unit}`; use ns, us, µs, ms, s, m or h"),
                )
            })?;
            let part =
                component_nanos(&whole, fraction.as_deref(), scale).ok_or_else(out_of_range)?;
            total = total.checked_add(part).ok_or_else(out_of_range)?;
            if !self.peek_char().is_some_and(|c| c.is_ascii_digit()) {
                break;
            }
            (whole, fraction) = self.digits_and_fraction();
            if !self.peek_char().is_some_and(char::is_alphabetic) {
                return Err(ParseError::new(self.pos, "a duration unit is needed here"));
            }
        }
        i128::try_from(total)
            .ok()
            .filter(|nanos| *nanos <= i128::from(i64::MAX))
            .ok_or_else(out_of_range)
    }

    fn reject_word_tail(&self, start: usize) -> Result<(), ParseError> {
        match self.peek_char() {
            Some(c) if is_word_char(c) => Err(ParseError::new(
                start,
                format!(
                    "malformed number: `{}` is not expected after `{}`",
                    c,
                    self.chars[start..self.pos].iter().collect::<String>()
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// One `<number><unit>` part of a duration in nanoseconds, sub-nanosecond parts dropped.
fn component_nanos(whole: &str, fraction: Option<&str>, scale: u128) -> Option<u128> {
    let whole_nanos = whole.parse::<u128>().ok()?.checked_mul(scale)?;
    let Some(fraction) = fraction else {
        return Some(whole_nanos);
    };
    // More than 18 fractional digits are below a nanosecond for every unit.
    let digits = &fraction[..fraction.len().min(18)];
    let numerator = digits.parse::<u128>().ok()?;
    let denominator = 10_u128.checked_pow(u32::try_from(digits.len()).ok()?)?;
    whole_nanos.checked_add(numerator * scale / denominator)
}

/// An integer or float literal.
fn plain_number(
    negative: bool,
    whole: &str,
    fraction: Option<&str>,
    start: usize,
) -> Result<TokenKind, ParseError> {
    let sign = if negative { "-" } else { "" };
    match fraction {
        None => format!("{sign}{whole}")
            .parse::<i64>()
            .map(TokenKind::Int)
            .map_err(|_| ParseError::new(start, "integer out of range")),
        Some(fraction) => format!("{sign}{whole}.{fraction}")
            .parse::<f64>()
            .ok()
            .filter(|value| value.is_finite())
            .map(TokenKind::Float)
            .ok_or_else(|| ParseError::new(start, "number out of range")),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// What a comparison's left side names.
#[derive(Clone, Debug)]
enum Field {
    Name,
    Status,
    Kind,
    Duration,
    StatusMessage,
    Attribute(Source),
}

/// A comparison's right side.
#[derive(Clone, Debug)]
enum Literal {
    Text(String),
    Int(i64),
    Float(f64),
    Duration(i128),
    Bool(bool),
    Status(u8),
    Kind(SpanKind),
}

const SUPPORTED_FIELDS: &str =
    "use name, status, kind, duration, statusMessage, span.<attribute>, resource.<attribute>, \
     .<attribute> or a place column such as .pod_1";

struct Parser {
    lexer: Lexer,
    peeked: Option<Token>,
    depth: usize,
}

impl Parser {
    fn new(text: &str) -> Parser {
        Parser {
            lexer: Lexer::new(text),
            peeked: None,
            depth: 0,
        }
    }

    fn peek(&mut self) -> Result<&Token, ParseError> {
        let token = match self.peeked.take() {
            Some(token) => token,
            None => self.lexer.next_token()?,
        };
        Ok(self.peeked.insert(token))
    }

    fn next(&mut self) -> Result<Token, ParseError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next_token(),
        }
    }

    /// Consumes the next token when it is `kind`.
    fn eat(&mut self, kind: &TokenKind) -> Result<bool, ParseError> {
        if &self.peek()?.kind == kind {
            self.next()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The whole query: nothing, `{}` or `{ expression }`, and nothing after.
    fn query(&mut self) -> Result<Option<Expr>, ParseError> {
        let first = self.next()?;
        match first.kind {
            TokenKind::End => return Ok(None),
            TokenKind::LBrace => {}
            other => {
                return Err(ParseError::new(
                    first.position,
                    format!(
                        "expected `{{` to start a spanset filter, found {}",
                        other.describe()
                    ),
                ))
            }
        }
        let expr = if self.eat(&TokenKind::RBrace)? {
            None
        } else {
            let expr = self.or_expr()?;
            self.expect_closing(TokenKind::RBrace, "`}`")?;
            Some(expr)
        };
        self.expect_end()?;
        Ok(expr)
    }

    fn expect_closing(&mut self, closing: TokenKind, name: &str) -> Result<(), ParseError> {
        let token = self.next()?;
        if token.kind == closing {
            return Ok(());
        }
        let message = match token.kind {
            TokenKind::End => format!("missing closing {name}"),
            other => format!("expected `&&`, `||` or {name}, found {}", other.describe()),
        };
        Err(ParseError::new(token.position, message))
    }

    /// Rejects anything after the spanset filter, naming the unsupported feature.
    fn expect_end(&mut self) -> Result<(), ParseError> {
        const TRAILING: &str =
            "unexpected text after the closing `}`; only a single spanset filter `{ ... }` is supported";
        let token = match self.next() {
            Ok(token) => token,
            Err(error) => return Err(ParseError::new(error.position, TRAILING)),
        };
        let message = match &token.kind {
            TokenKind::End => return Ok(()),
            TokenKind::Pipe => "pipelines (`| count()`, `| select(...)`, `| by(...)`, ...) are \
                                not supported; only a single spanset filter `{ ... }` is"
                .to_string(),
            TokenKind::Structural(_)
            | TokenKind::Op(_)
            | TokenKind::Bang
            | TokenKind::Other('&') => "structural operators (`>>`, `>`, `<<`, `<`, `~`, ...) are \
                                        not supported; only a single spanset filter `{ ... }` is"
                .to_string(),
            TokenKind::And | TokenKind::Or => "combining spansets with `&&` or `||` is not \
                                               supported; put every condition inside one `{ ... }`"
                .to_string(),
            TokenKind::LBrace => "only one spanset filter `{ ... }` is supported".to_string(),
            TokenKind::Word(word) => format!(
                "`{word}` is not supported: pipelines, `select(...)` and aggregates are not \
                 supported; only a single spanset filter `{{ ... }}` is"
            ),
            _ => TRAILING.to_string(),
        };
        Err(ParseError::new(token.position, message))
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.and_expr()?];
        while self.eat(&TokenKind::Or)? {
            terms.push(self.and_expr()?);
        }
        Ok(collapse(terms, Expr::Or))
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut terms = vec![self.primary()?];
        while self.eat(&TokenKind::And)? {
            terms.push(self.primary()?);
        }
        Ok(collapse(terms, Expr::And))
    }

    /// A parenthesized expression or a comparison.
    fn primary(&mut self) -> Result<Expr, ParseError> {
        let token = self.next()?;
        match token.kind {
            TokenKind::LParen => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(ParseError::new(
                        token.position,
                        format!("parentheses nest deeper than {MAX_NESTING} levels"),
                    ));
                }
                let expr = self.or_expr()?;
                self.expect_closing(TokenKind::RParen, "`)`")?;
                self.depth -= 1;
                Ok(expr)
            }
            TokenKind::Word(word) => self.comparison(word, token.position),
            TokenKind::Bang => Err(ParseError::new(
                token.position,
                "`!` is not supported; use `!=` or `!~`",
            )),
            other => Err(ParseError::new(
                token.position,
                format!(
                    "expected a condition such as `span.http.route = \"/\"`, found {}",
                    other.describe()
                ),
            )),
        }
    }

    /// `<field> <op> <value>`, the field already read.
    fn comparison(&mut self, word: String, position: usize) -> Result<Expr, ParseError> {
        let field = parse_field(&word, position)?;
        let op_token = self.next()?;
        let operator = match op_token.kind {
            TokenKind::Op(operator) => operator,
            other => {
                return Err(ParseError::new(
                    op_token.position,
                    format!(
                        "expected a comparison operator (=, !=, >, >=, <, <=, =~, !~) after \
                         `{word}`, found {}",
                        other.describe()
                    ),
                ))
            }
        };
        let value_token = self.next()?;
        let literal = parse_literal(value_token.kind, value_token.position)?;
        let spans = Positions {
            op: op_token.position,
            value: value_token.position,
        };
        build_condition(&word, field, operator, literal, spans).map(Expr::Condition)
    }
}

/// One term as itself, several joined by `join`.
fn collapse(mut terms: Vec<Expr>, join: fn(Vec<Expr>) -> Expr) -> Expr {
    if terms.len() == 1 {
        if let Some(only) = terms.pop() {
            return only;
        }
    }
    join(terms)
}

/// The field a word names.
fn parse_field(word: &str, position: usize) -> Result<Field, ParseError> {
    let field = match word {
        "name" | "span:name" => Field::Name,
        "status" | "span:status" => Field::Status,
        "kind" | "span:kind" => Field::Kind,
        "duration" | "span:duration" => Field::Duration,
        "statusMessage" | "span:statusMessage" => Field::StatusMessage,
        _ => return parse_attribute(word, position).map(Field::Attribute),
    };
    Ok(field)
}

/// An attribute field, or an error naming what is unsupported or unknown.
fn parse_attribute(word: &str, position: usize) -> Result<Source, ParseError> {
    let scoped = [
        ("span.", Source::Span as fn(String) -> Source),
        ("resource.", Source::Resource),
        (".", Source::Unscoped),
    ];
    for (prefix, source) in scoped {
        let Some(key) = word.strip_prefix(prefix) else {
            continue;
        };
        if key.is_empty() {
            return Err(ParseError::new(
                position,
                format!("attribute name missing after `{prefix}`"),
            ));
        }
        if key == "service.name" && prefix != "span." {
            return Ok(Source::Service);
        }
        if prefix != "resource." {
            if let Some(place) = PlaceFilter::new(key, "") {
                return Ok(Source::Place {
                    column: place.name(),
                    side: place.side(),
                });
            }
        }
        return Ok(source(key.to_string()));
    }
    Err(ParseError::new(position, unknown_field_message(word)))
}

fn unknown_field_message(word: &str) -> String {
    const UNSUPPORTED_PREFIXES: [&str; 9] = [
        "trace:",
        "span:",
        "event:",
        "link:",
        "instrumentation:",
        "event.",
        "link.",
        "instrumentation.",
        "parent.",
    ];
    const UNSUPPORTED_NAMES: [&str; 8] = [
        "rootServiceName",
        "rootName",
        "traceDuration",
        "parent",
        "childCount",
        "nestedSetLeft",
        "nestedSetRight",
        "nestedSetParent",
    ];
    if UNSUPPORTED_PREFIXES
        .iter()
        .any(|prefix| word.starts_with(prefix))
        || UNSUPPORTED_NAMES.contains(&word)
    {
        return format!("`{word}` is not supported; {SUPPORTED_FIELDS}");
    }
    format!("unknown field `{word}`; {SUPPORTED_FIELDS}")
}

/// The value a token stands for on a comparison's right side.
fn parse_literal(kind: TokenKind, position: usize) -> Result<Literal, ParseError> {
    let literal = match kind {
        TokenKind::Str(text) => Literal::Text(text),
        TokenKind::Int(value) => Literal::Int(value),
        TokenKind::Float(value) => Literal::Float(value),
        TokenKind::Duration(nanos) => Literal::Duration(nanos),
        TokenKind::Word(word) => return word_literal(&word, position),
        other => {
            return Err(ParseError::new(
                position,
                format!("expected a value, found {}", other.describe()),
            ))
        }
    };
    Ok(literal)
}

fn word_literal(word: &str, position: usize) -> Result<Literal, ParseError> {
    let literal = match word {
        "true" => Literal::Bool(true),
        "false" => Literal::Bool(false),
        "error" => Literal::Status(2),
        "ok" => Literal::Status(1),
        "unset" => Literal::Status(0),
        "server" => Literal::Kind(SpanKind::Server),
        "client" => Literal::Kind(SpanKind::Client),
        "producer" => Literal::Kind(SpanKind::Producer),
        "consumer" => Literal::Kind(SpanKind::Consumer),
        "internal" => Literal::Kind(SpanKind::Internal),
        "unspecified" => Literal::Kind(SpanKind::Unspecified),
        "nil" => return Err(ParseError::new(position, "`nil` is not supported")),
        _ => {
            return Err(ParseError::new(
                position,
                format!(
                    "unexpected `{word}`: strings must be quoted; values are strings, numbers, \
                     durations, true/false, status words (error, ok, unset) and kind words \
                     (server, client, producer, consumer, internal, unspecified)"
                ),
            ))
        }
    };
    Ok(literal)
}

/// Where a comparison's parts start, for error messages.
#[derive(Clone, Copy)]
struct Positions {
    op: usize,
    value: usize,
}

/// Type-checks a comparison.
fn build_condition(
    word: &str,
    field: Field,
    operator: Operator,
    literal: Literal,
    at: Positions,
) -> Result<Condition, ParseError> {
    match field {
        Field::Name => string_test(word, operator, literal, at).map(Condition::Name),
        Field::StatusMessage => {
            string_test(word, operator, literal, at).map(Condition::StatusMessage)
        }
        Field::Status => {
            let equal = equality(word, operator, at.op, "error, ok or unset")?;
            match literal {
                Literal::Status(code) => Ok(Condition::Status { equal, code }),
                _ => Err(ParseError::new(
                    at.value,
                    format!("`{word}` compares with error, ok or unset"),
                )),
            }
        }
        Field::Kind => {
            let kinds = "server, client, producer, consumer, internal or unspecified";
            let equal = equality(word, operator, at.op, kinds)?;
            match literal {
                Literal::Kind(kind) => Ok(Condition::Kind { equal, kind }),
                _ => Err(ParseError::new(
                    at.value,
                    format!("`{word}` compares with {kinds}"),
                )),
            }
        }
        Field::Duration => duration_condition(word, operator, literal, at),
        Field::Attribute(source) => {
            value_test(operator, literal, at).map(|test| Condition::Attribute { source, test })
        }
    }
}

/// `=` as `true` and `!=` as `false`; other operators are an error for `word`.
fn equality(
    word: &str,
    operator: Operator,
    position: usize,
    values: &str,
) -> Result<bool, ParseError> {
    match operator {
        Operator::Cmp(CmpOp::Eq) => Ok(true),
        Operator::Cmp(CmpOp::Ne) => Ok(false),
        _ => Err(ParseError::new(
            position,
            format!("`{word}` only supports `=` and `!=` (with {values})"),
        )),
    }
}

fn duration_condition(
    word: &str,
    operator: Operator,
    literal: Literal,
    at: Positions,
) -> Result<Condition, ParseError> {
    let Operator::Cmp(op) = operator else {
        return Err(ParseError::new(
            at.op,
            format!("`{word}` cannot be matched with a regular expression"),
        ));
    };
    match literal {
        Literal::Duration(nanos) => Ok(Condition::Duration { op, nanos }),
        Literal::Int(_) | Literal::Float(_) => Err(ParseError::new(
            at.value,
            format!("`{word}` needs a duration with a unit, such as 100ms or 1.5s"),
        )),
        _ => Err(ParseError::new(
            at.value,
            format!("`{word}` compares with a duration, such as 100ms or 1.5s"),
        )),
    }
}

/// A test on a string intrinsic; only string literals are allowed.
fn string_test(
    word: &str,
    operator: Operator,
    literal: Literal,
    at: Positions,
) -> Result<TextTest, ParseError> {
    match literal {
        Literal::Text(text) => text_test(operator, text, at.value),
        _ => Err(ParseError::new(
            at.value,
            format!("`{word}` is a string; compare it with a quoted string"),
        )),
    }
}

fn text_test(operator: Operator, text: String, position: usize) -> Result<TextTest, ParseError> {
    match operator {
        Operator::Cmp(op) => Ok(TextTest::Compare(op, text)),
        Operator::Regex | Operator::NotRegex => Ok(TextTest::Regex {
            negated: operator == Operator::NotRegex,
            regex: compile_regex(&text, position)?,
        }),
    }
}

/// A test on an attribute, typed by its literal.
fn value_test(
    operator: Operator,
    literal: Literal,
    at: Positions,
) -> Result<ValueTest, ParseError> {
    let regex_only_strings = || {
        ParseError::new(
            at.op,
            "regular expressions (`=~`, `!~`) only match strings; quote the value",
        )
    };
    match literal {
        Literal::Text(text) => text_test(operator, text, at.value).map(ValueTest::Text),
        Literal::Int(value) => match operator {
            Operator::Cmp(op) => Ok(ValueTest::Int(op, value)),
            _ => Err(regex_only_strings()),
        },
        Literal::Float(value) => match operator {
            Operator::Cmp(op) => Ok(ValueTest::Float(op, value)),
            _ => Err(regex_only_strings()),
        },
        Literal::Bool(value) => match operator {
            Operator::Cmp(op) if op.is_equality() => Ok(ValueTest::Bool {
                equal: op == CmpOp::Eq,
                value,
            }),
            Operator::Cmp(_) => Err(ParseError::new(
                at.op,
                "booleans only compare with `=` and `!=`",
            )),
            _ => Err(regex_only_strings()),
        },
        Literal::Duration(_) => Err(ParseError::new(
            at.value,
            "a duration only compares with `duration`",
        )),
        Literal::Status(_) => Err(ParseError::new(
            at.value,
            "status words (error, ok, unset) only compare with `status`; quote the value to \
             compare a string",
        )),
        Literal::Kind(_) => Err(ParseError::new(
            at.value,
            "kind words (server, client, ...) only compare with `kind`; quote the value to \
             compare a string",
        )),
    }
}

/// Compiles a pattern to match whole strings, as Tempo does, within the size limit.
fn compile_regex(pattern: &str, position: usize) -> Result<Regex, ParseError> {
    // The pattern is checked alone first so that it cannot close the anchoring group.
    build_regex(pattern).map_err(|error| regex_error(error, position))?;
    build_regex(&format!("^(?:{pattern})$")).map_err(|error| regex_error(error, position))
}

fn build_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

fn regex_error(error: regex::Error, position: usize) -> ParseError {
    let message = match error {
        regex::Error::CompiledTooBig(limit) => {
            format!("regular expression is too large: it compiles to more than {limit} bytes")
        }
        regex::Error::Syntax(text) => {
            let reason = text
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .unwrap_or_default();
            let reason = reason.trim().trim_start_matches("error: ");
            format!("invalid regular expression: {reason}")
        }
        other => format!("invalid regular expression: {other}"),
    };
    ParseError::new(position, message)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use spanflow_model::{Attribute, Place};

    use super::*;

    fn span(service: &str, name: &str, attributes: Vec<Attribute>) -> SpanRow {
        SpanRow {
            app_service: service.to_string(),
            endpoint: name.to_string(),
            attributes,
            ..Default::default()
        }
    }

    fn with_resource(mut row: SpanRow, attributes: Vec<Attribute>) -> SpanRow {
        row.resource_attributes = Arc::from(attributes);
        row
    }

    fn with_duration(mut row: SpanRow, micros: u64) -> SpanRow {
        row.response_duration = micros;
        row
    }

    fn int(key: &str, value: i64) -> Attribute {
        Attribute::new(key, AttrValue::Int(value))
    }

    fn float(key: &str, value: f64) -> Attribute {
        Attribute::new(key, AttrValue::Double(value))
    }

    fn text(key: &str, value: &str) -> Attribute {
        Attribute::new(key, AttrValue::String(value.to_string()))
    }

    fn boolean(key: &str, value: bool) -> Attribute {
        Attribute::new(key, AttrValue::Bool(value))
    }

    fn query(text: &str) -> Query {
        match parse(text) {
            Ok(query) => query,
            Err(error) => panic!("{text:?} should parse: {error}"),
        }
    }

    fn matches(text: &str, row: &SpanRow) -> bool {
        query(text).matches(row)
    }

    fn parse_error(text: &str) -> ParseError {
        match parse(text) {
            Ok(query) => panic!("{text:?} should not parse, got {query:?}"),
            Err(error) => error,
        }
    }

    fn assert_rejected(text: &str, word: &str) {
        let error = parse_error(text);
        assert!(
            error.message.contains(word),
            "{text:?}: expected {word:?} in {error}"
        );
    }

    const EXAMPLE: &str = r#"{ resource.service.name = "checkout" && span.http.response.status_code >= 500 && duration > 100ms }"#;

    fn checkout(status_code: i64, micros: u64) -> SpanRow {
        with_duration(
            span(
                "checkout",
                "POST /pay",
                vec![int("http.response.status_code", status_code)],
            ),
            micros,
        )
    }

    #[test]
    fn example_matches_and_does_not() {
        let example = query(EXAMPLE);
        assert!(example.matches(&checkout(503, 150_000)));
        assert!(example.matches(&checkout(500, 100_001)));
        assert!(!example.matches(&checkout(503, 100_000)), "not longer");
        assert!(!example.matches(&checkout(404, 150_000)), "not an error");
        let mut other_service = checkout(503, 150_000);
        other_service.app_service = "cart".into();
        assert!(!example.matches(&other_service));
        let missing = with_duration(span("checkout", "POST /pay", vec![]), 150_000);
        assert!(!example.matches(&missing));
    }

    #[test]
    fn example_pushdown() {
        let pushed = query(EXAMPLE).pushdown();
        assert_eq!(pushed.service.as_deref(), Some("checkout"));
        assert_eq!(pushed.min_duration_us, Some(100_001));
        assert_eq!(pushed.max_duration_us, None);
        assert!(pushed.attributes.is_empty(), "`>=` is not an equality");
        assert_eq!(pushed.limit, SpanQuery::default().limit);
    }

    #[test]
    fn empty_queries_match_everything() {
        let row = checkout(200, 5);
        for text in ["", "   \n\t", "{}", "{ }", " {\n} "] {
            let parsed = query(text);
            assert!(parsed.matches(&row), "{text:?}");
            assert_eq!(parsed.pushdown(), SpanQuery::default(), "{text:?}");
        }
    }

    #[test]
    fn or_and_precedence_and_parentheses() {
        let a = span("a", "x", vec![int("n", 1)]);
        let b = span("b", "y", vec![int("n", 2)]);
        let c = span("c", "y", vec![int("n", 3)]);
        let either = r#"{ resource.service.name = "a" || resource.service.name = "b" }"#;
        assert!(matches(either, &a));
        assert!(matches(either, &b));
        assert!(!matches(either, &c));

        // `&&` binds tighter: a || (b && n = 3), and b has n = 2.
        let precedence =
            r#"{ resource.service.name = "a" || resource.service.name = "b" && span.n = 3 }"#;
        assert!(matches(precedence, &a));
        assert!(!matches(precedence, &b));

        let grouped =
            r#"{ (resource.service.name = "a" || resource.service.name = "b") && span.n = 2 }"#;
        assert!(!matches(grouped, &a));
        assert!(matches(grouped, &b));

        let nested = r#"{ ((name = "y") && ((span.n = 3) || (span.n = 1))) }"#;
        assert!(!matches(nested, &a));
        assert!(!matches(nested, &b));
        assert!(matches(nested, &c));
    }

    #[test]
    fn status_intrinsic() {
        let mut row = span("s", "x", vec![]);
        row.status_code = 2;
        assert!(matches("{ status = error }", &row));
        assert!(matches("{ span:status = error }", &row));
        assert!(!matches("{ status = ok }", &row));
        assert!(matches("{ status != ok }", &row));
        row.status_code = 0;
        assert!(matches("{ status = unset }", &row));
        row.status_code = 1;
        assert!(matches("{ status = ok }", &row));
    }

    #[test]
    fn kind_intrinsic() {
        let mut row = span("s", "x", vec![]);
        row.span_kind = SpanKind::Server;
        assert!(matches("{ kind = server }", &row));
        assert!(matches("{ span:kind = server }", &row));
        assert!(!matches("{ kind = client }", &row));
        assert!(matches("{ kind != client }", &row));
        row.span_kind = SpanKind::Unspecified;
        assert!(matches("{ kind = unspecified }", &row));
        for word in ["client", "producer", "consumer", "internal"] {
            assert!(!matches(&format!("{{ kind = {word} }}"), &row));
        }
    }

    #[test]
    fn name_and_status_message() {
        let mut row = span("s", "GET /users", vec![]);
        row.status_message = "deadline exceeded".into();
        assert!(matches(r#"{ name =~ "GET .*" }"#, &row));
        assert!(matches(r#"{ span:name =~ "GET .*" }"#, &row));
        assert!(!matches(r#"{ name =~ "GET" }"#, &row), "full match only");
        assert!(!matches(r#"{ name =~ "users" }"#, &row), "full match only");
        assert!(matches(r#"{ name !~ "POST .*" }"#, &row));
        assert!(matches(r#"{ name = "GET /users" }"#, &row));
        assert!(matches(r#"{ name > "GET" && name < "GET /v" }"#, &row));
        assert!(matches(r#"{ statusMessage =~ "deadline.*" }"#, &row));
        assert!(matches(r#"{ span:statusMessage != "" }"#, &row));
        // An alternation stays inside the anchors.
        assert!(!matches(r#"{ name =~ "POST|GET" }"#, &row));
        assert!(matches(r#"{ name =~ `GET /\w+` }"#, &row));
        assert!(
            matches(r#"{ name =~ "GET /\w+" }"#, &row),
            "unknown escapes kept"
        );
    }

    #[test]
    fn durations() {
        let row = with_duration(span("s", "x", vec![]), 1_500_000);
        for (text, expected) in [
            ("{ duration = 1.5s }", true),
            ("{ duration = 1500ms }", true),
            ("{ duration = 1500000us }", true),
            ("{ duration = 1500000µs }", true),
            ("{ duration = 1500000μs }", true),
            ("{ duration = 1500000000ns }", true),
            ("{ duration < 2m }", true),
            ("{ duration < 1h }", true),
            ("{ duration > 1h30m }", false),
            ("{ duration >= 1s500ms }", true),
            ("{ duration > 1s500ms }", false),
            ("{ duration <= 1.5s }", true),
            ("{ duration < 1.5s }", false),
            ("{ duration > -5ms }", true),
            ("{ span:duration != 1s }", true),
        ] {
            assert_eq!(matches(text, &row), expected, "{text}");
        }
    }

    #[test]
    fn attribute_scopes_and_unscoped_lookup() {
        let row = with_resource(
            span(
                "checkout",
                "x",
                vec![text("region", "span-side"), text("http.route", "/pay")],
            ),
            vec![
                text("region", "resource-side"),
                text("k8s.pod.name", "checkout-1"),
                text("service.name", "ignored"),
            ],
        );
        assert!(matches(r#"{ span.region = "span-side" }"#, &row));
        assert!(matches(r#"{ resource.region = "resource-side" }"#, &row));
        assert!(matches(r#"{ .region = "span-side" }"#, &row), "span first");
        assert!(!matches(r#"{ .region = "resource-side" }"#, &row));
        assert!(
            matches(r#"{ .k8s.pod.name = "checkout-1" }"#, &row),
            "resource next"
        );
        assert!(matches(
            r#"{ resource."k8s.pod.name" = "checkout-1" }"#,
            &row
        ));
        assert!(matches(r#"{ span."http.route" = "/pay" }"#, &row));
        assert!(matches(r#"{ ."http.route" = "/pay" }"#, &row));
        assert!(!matches(r#"{ span.k8s.pod.name = "checkout-1" }"#, &row));
        // The service is the row's service, whatever the resource attribute says.
        assert!(matches(r#"{ resource.service.name = "checkout" }"#, &row));
        assert!(matches(r#"{ .service.name = "checkout" }"#, &row));
        assert!(!matches(r#"{ resource.service.name = "ignored" }"#, &row));
        let bare = span("cart", "x", vec![]);
        assert!(matches(r#"{ .service.name = "cart" }"#, &bare));
        assert!(matches(r#"{ resource.service.name =~ "ca.*" }"#, &bare));
    }

    #[test]
    fn place_columns_of_either_end() {
        let mut row = with_resource(
            span("cart", "GET /stock", vec![text("pod_1", "an attribute")]),
            vec![text("pod_1", "a resource attribute")],
        );
        row.place_0 = Arc::new(Place {
            pod: "web-7d9f".into(),
            pod_group: "web".into(),
            ..Place::default()
        });
        row.place_1 = Arc::new(Place {
            pod: "db-0".into(),
            pod_ns: "data".into(),
            ..Place::default()
        });
        for (text, expected) in [
            (r#"{ .pod_1 = "db-0" }"#, true),
            (r#"{ span.pod_1 = "db-0" }"#, true),
            (r#"{ span."pod_1" = "db-0" }"#, true),
            (r#"{ .pod_0 = "db-0" }"#, false),
            (r#"{ .pod_group_0 = "web" && .pod_ns_1 = "data" }"#, true),
            (r#"{ .pod_0 =~ "web-.*" }"#, true),
            (r#"{ .pod_1 != "web-7d9f" }"#, true),
            // The columns, not attributes of the same name.
            (r#"{ .pod_1 = "an attribute" }"#, false),
            (r#"{ resource.pod_1 = "a resource attribute" }"#, true),
            // Unknown is missing: no comparison matches it, `!=` included.
            (r#"{ .pod_ns_0 != "data" }"#, false),
            (r#"{ .pod_group_1 = "" }"#, false),
            // Not place columns: attributes as ever.
            (r#"{ .pod_2 = "db-0" }"#, false),
        ] {
            assert_eq!(matches(text, &row), expected, "{text}");
        }

        let pushed = query(r#"{ .pod_1 = "db-0" && span.pod_group_0 =~ "w.*" }"#).pushdown();
        assert_eq!(
            pushed.places,
            vec![PlaceFilter::new("pod_1", "db-0").unwrap()]
        );
        assert!(pushed.attributes.is_empty());
        assert!(query(r#"{ .pod_1 = "a" || .pod_1 = "b" }"#)
            .pushdown()
            .places
            .is_empty());
    }

    #[test]
    fn odd_attribute_names() {
        let row = span(
            "s",
            "x",
            vec![text("a-b/c:d_e.f", "1"), text("with space", "y")],
        );
        assert!(matches(r#"{ span.a-b/c:d_e.f = "1" }"#, &row));
        assert!(matches(r#"{ span."with space" = "y" }"#, &row));
        assert!(matches(r#"{ span.`with space` = "y" }"#, &row));
    }

    #[test]
    fn missing_attributes_match_nothing() {
        let row = span("s", "x", vec![text("present", "v")]);
        assert!(!matches(r#"{ span.absent != "v" }"#, &row));
        assert!(!matches(r#"{ .absent != 3 }"#, &row));
        assert!(!matches(r#"{ resource.absent != true }"#, &row));
        assert!(!matches(r#"{ span.absent !~ "v" }"#, &row));
        assert!(matches(r#"{ span.present != "w" }"#, &row));
        assert!(matches(
            r#"{ span.absent != "v" || span.present = "v" }"#,
            &row
        ));
    }

    #[test]
    fn int_and_float_compare_numerically() {
        let row = span(
            "s",
            "x",
            vec![int("code", 503), float("ratio", 2.5), float("five", 5.0)],
        );
        assert!(matches("{ span.code >= 500.5 }", &row));
        assert!(matches("{ span.code < 503.1 }", &row));
        assert!(!matches("{ span.code = 503.5 }", &row));
        assert!(matches("{ span.code = 503.0 }", &row));
        assert!(matches("{ span.ratio > 2 }", &row));
        assert!(matches("{ span.ratio < 3 }", &row));
        assert!(!matches("{ span.ratio = 2 }", &row));
        assert!(matches("{ span.five = 5 }", &row));
        assert!(matches("{ span.ratio = 2.5 }", &row));
        assert!(matches("{ span.code > -1 }", &row));
        // Exact at the edge of float precision: 2^53 + 1 has no float of its own.
        let big = span("s", "x", vec![float("big", 9_007_199_254_740_992.0)]);
        assert!(!matches("{ span.big = 9007199254740993 }", &big));
        assert!(matches("{ span.big < 9007199254740993 }", &big));
        assert!(matches("{ span.big = 9007199254740992 }", &big));
    }

    #[test]
    fn strings_bools_and_types() {
        let row = span(
            "s",
            "x",
            vec![
                text("numeric", "503"),
                text("word", "abc"),
                text("padded", "0503"),
                int("code", 503),
                boolean("flag", true),
            ],
        );
        assert!(matches("{ span.numeric >= 500 }", &row));
        assert!(matches("{ span.numeric = 503 }", &row));
        assert!(matches("{ span.numeric < 503.5 }", &row));
        assert!(!matches("{ span.word > 1 }", &row));
        assert!(!matches("{ span.word != 1 }", &row));
        assert!(
            !matches("{ span.padded = 503 }", &row),
            "not as the number prints"
        );
        assert!(matches(
            r#"{ span.word > "abb" && span.word < "abd" }"#,
            &row
        ));
        assert!(
            !matches(r#"{ span.code = "503" }"#, &row),
            "ints are not strings"
        );
        assert!(!matches(r#"{ span.code =~ "5.*" }"#, &row));
        assert!(matches("{ span.flag = true }", &row));
        assert!(matches("{ span.flag != false }", &row));
        assert!(!matches("{ span.flag = false }", &row));
        assert!(!matches("{ span.code = true }", &row));
        assert!(!matches(r#"{ span.flag = "true" }"#, &row));
    }

    #[test]
    fn string_escapes() {
        let row = span("s", "say \"hi\" \\ now", vec![]);
        assert!(matches(r#"{ name = "say \"hi\" \\ now" }"#, &row));
        assert!(matches(r#"{ name = `say "hi" \ now` }"#, &row));
    }

    #[test]
    fn whitespace_is_optional() {
        let row = checkout(503, 150_000);
        assert!(matches(
            r#"{resource.service.name="checkout"&&span.http.response.status_code>=500&&duration>100ms}"#,
            &row
        ));
        assert!(matches("{span.http.response.status_code!=-1}", &row));
    }

    #[test]
    fn display_is_one_based() {
        let error = parse_error("{ bogus = 1 }");
        assert_eq!(error.position, 2);
        assert!(error.to_string().starts_with("at column 3: "), "{error}");
        assert!(error.message.contains("bogus"));
    }

    #[test]
    fn rejects_what_follows_the_spanset() {
        assert_rejected(r#"{ name = "x" } | count() > 2"#, "pipelines");
        assert_rejected(r#"{ name = "x" } | select(span.foo)"#, "pipelines");
        assert_rejected(r#"{ name = "x" } >> { name = "y" }"#, "structural");
        assert_rejected(r#"{ name = "x" } > { name = "y" }"#, "structural");
        assert_rejected(r#"{ name = "x" } ~ { name = "y" }"#, "structural");
        assert_rejected(r#"{ name = "x" } !>> { name = "y" }"#, "structural");
        assert_rejected(r#"{ name = "x" } && { name = "y" }"#, "combining spansets");
        assert_rejected(r#"{ name = "x" } { name = "y" }"#, "only one spanset");
        assert_rejected(r#"{ name = "x" } select(span.a)"#, "not supported");
        assert_rejected(r#"{ } "unterminated"#, "only a single spanset");
        assert_rejected(r#"count() > 2"#, "expected `{`");
        assert_rejected(r#"name = "x""#, "expected `{`");
    }

    #[test]
    fn rejects_malformed_filters() {
        assert_rejected(r#"{ name = "x" "#, "missing closing `}`");
        assert_rejected(r#"{ (name = "x" }"#, "`)`");
        assert_rejected(r#"{ name = "x }"#, "unterminated string");
        assert_rejected(r#"{ name }"#, "comparison operator");
        assert_rejected(r#"{ name = }"#, "expected a value");
        assert_rejected(r#"{ span.a = 1 span.b = 2 }"#, "`&&`, `||`");
        assert_rejected(r#"{ && name = "x" }"#, "expected a condition");
        assert_rejected(r#"{ !(name = "x") }"#, "`!` is not supported");
        assert_rejected(r#"{ span. = "x" }"#, "attribute name missing");
        assert_rejected(r#"{ bogus = "x" }"#, "unknown field");
        assert_rejected(r#"{ span.a = bogus }"#, "quoted");
        assert_rejected(r#"{ span.a = nil }"#, "nil");
        assert_rejected(r#"{ span.a = 99999999999999999999 }"#, "out of range");
        assert_rejected(r#"{ span.a = 1.2.3 }"#, "malformed number");
        assert_rejected(r#"{ span.a = 5 + 1 }"#, "`&&`, `||`");
    }

    #[test]
    fn rejects_unsupported_fields() {
        for field in [
            "trace:rootService",
            "rootServiceName",
            "trace:rootName",
            "rootName",
            "trace:duration",
            "traceDuration",
            "span:id",
            "event:name",
            "event.exception.message",
            "link.foo",
            "instrumentation.name",
            "parent.span.foo",
        ] {
            assert_rejected(&format!(r#"{{ {field} = "x" }}"#), "not supported");
        }
    }

    #[test]
    fn rejects_type_mismatches() {
        assert_rejected("{ duration > 100 }", "unit");
        assert_rejected("{ duration > 1.5 }", "unit");
        assert_rejected(r#"{ duration > "100ms" }"#, "duration");
        assert_rejected(r#"{ duration =~ "1.*" }"#, "regular expression");
        assert_rejected("{ duration > 5d }", "unknown duration unit");
        assert_rejected("{ duration > 1h30 }", "unit is needed");
        assert_rejected(r#"{ status = "error" }"#, "error, ok or unset");
        assert_rejected("{ status = server }", "error, ok or unset");
        assert_rejected("{ status > error }", "only supports `=` and `!=`");
        assert_rejected("{ status =~ error }", "only supports `=` and `!=`");
        assert_rejected("{ kind = error }", "server, client");
        assert_rejected("{ kind > server }", "only supports `=` and `!=`");
        assert_rejected("{ kind = 2 }", "server, client");
        assert_rejected("{ name = 5 }", "quoted string");
        assert_rejected("{ statusMessage = true }", "quoted string");
        assert_rejected("{ span.a =~ 5 }", "only match strings");
        assert_rejected("{ span.a !~ true }", "only match strings");
        assert_rejected("{ span.a > true }", "booleans");
        assert_rejected("{ span.a = 100ms }", "duration");
        assert_rejected("{ span.a = error }", "status");
        assert_rejected("{ span.a = server }", "kind");
    }

    #[test]
    fn rejects_bad_regular_expressions() {
        assert_rejected(r#"{ name =~ "(" }"#, "invalid regular expression");
        // Balanced alone is required, so the pattern cannot escape the anchors.
        assert_rejected(r#"{ name =~ "a)|(b" }"#, "invalid regular expression");
        let error = parse_error(r#"{ name =~ "a{1000}{1000}" }"#);
        assert!(error.message.contains("too large"), "{error}");
        assert_eq!(error.position, 10);
    }

    #[test]
    fn hostile_inputs_are_rejected_without_overflow() {
        let deep = format!("{{ {}name = \"x\"{} }}", "(".repeat(8000), ")".repeat(8000));
        assert_rejected(&deep, "nest deeper");
        let limit = format!("{{ {}name = \"x\"{} }}", "(".repeat(64), ")".repeat(64));
        assert!(parse(&limit).is_ok());
        let over = format!("{{ {}name = \"x\"{} }}", "(".repeat(65), ")".repeat(65));
        assert_rejected(&over, "nest deeper than 64");
        let unclosed = format!("{{ {}", "(".repeat(16_000));
        assert_rejected(&unclosed, "nest deeper");

        let huge = format!("{{ name = \"{}\" }}", "a".repeat(1 << 20));
        assert_rejected(&huge, "too long");
        let long_chain = vec![r#"span.a = "b""#; 2000].join(" && ");
        assert_rejected(&format!("{{ {long_chain} }}"), "too long");
        let just_under = vec![r#"span.a = 1"#; 1000].join(" || ");
        assert!(parse(&format!("{{ {just_under} }}")).is_ok());

        assert_rejected(r#"{ name =~ "((a{50}){50}){50}" }"#, "too large");
        assert_rejected(r#"{ duration > 99999999999999999999h }"#, "out of range");
        assert_rejected(r#"{ duration > 300000000h }"#, "out of range");
        assert_rejected("{ name = \"\u{0}\" } \u{0}", "only a single spanset");
    }

    #[test]
    fn pushdown_mapping() {
        let pushed = query(
            r#"{ .service.name = "cart" && name = "GET /" && span.http.route = "/x"
                 && resource.k8s.ns = "prod" && .retries = 3 && span.ok = true
                 && span.ratio = 0.5 && span.zero = 0 && span.no != "y" && span.never = false }"#,
        )
        .pushdown();
        assert_eq!(pushed.service.as_deref(), Some("cart"));
        assert_eq!(pushed.operation.as_deref(), Some("GET /"));
        let filters: Vec<(&str, &str)> = pushed
            .attributes
            .iter()
            .map(|filter| (filter.key.as_str(), filter.value.as_str()))
            .collect();
        assert_eq!(
            filters,
            vec![
                ("http.route", "/x"),
                ("k8s.ns", "prod"),
                ("retries", "3"),
                ("ok", "true"),
                ("never", "false"),
            ]
        );

        let service_only = query(r#"{ resource.service.name = "a" }"#).pushdown();
        assert_eq!(service_only.service.as_deref(), Some("a"));
        assert!(service_only.attributes.is_empty());

        let ored = query(r#"{ name = "a" || name = "b" }"#).pushdown();
        assert_eq!(ored, SpanQuery::default());
        let mixed = query(r#"{ (name = "a" || name = "b") && span.x = "y" }"#).pushdown();
        assert_eq!(mixed.operation, None);
        assert_eq!(mixed.attributes.len(), 1);

        let first_kept =
            query(r#"{ name = "a" && name = "b" && span.k = "1" && span.k = "2" }"#).pushdown();
        assert_eq!(first_kept.operation.as_deref(), Some("a"));
        assert_eq!(first_kept.attributes.len(), 2);
    }

    #[test]
    fn pushdown_durations() {
        let bounds = |text: &str| {
            let pushed = query(text).pushdown();
            (pushed.min_duration_us, pushed.max_duration_us)
        };
        assert_eq!(bounds("{ duration > 100ms }"), (Some(100_001), None));
        assert_eq!(bounds("{ duration >= 100ms }"), (Some(100_000), None));
        assert_eq!(bounds("{ duration > 1500ns }"), (Some(2), None));
        assert_eq!(bounds("{ duration >= 1500ns }"), (Some(2), None));
        assert_eq!(bounds("{ duration > 999ns }"), (Some(1), None));
        assert_eq!(bounds("{ duration > 0ns }"), (Some(1), None));
        assert_eq!(bounds("{ duration >= 0ns }"), (None, None));
        assert_eq!(bounds("{ duration < 100ms }"), (None, Some(99_999)));
        assert_eq!(bounds("{ duration <= 100ms }"), (None, Some(100_000)));
        assert_eq!(bounds("{ duration <= 1500ns }"), (None, Some(1)));
        assert_eq!(bounds("{ duration < 1500ns }"), (None, Some(1)));
        assert_eq!(bounds("{ duration < 1us }"), (None, Some(0)));
        assert_eq!(bounds("{ duration < 0ns }"), (None, None));
        assert_eq!(bounds("{ duration = 2ms }"), (Some(2_000), Some(2_000)));
        assert_eq!(bounds("{ duration != 2ms }"), (None, None));
        assert_eq!(
            bounds("{ duration > 1ms && duration > 5ms && duration < 1s && duration <= 2s }"),
            (Some(5_001), Some(999_999))
        );
    }

    /// Every row `matches` accepts is accepted by the pushed-down query too.
    #[test]
    fn pushdown_is_a_superset() {
        let queries = [
            EXAMPLE,
            r#"{ .service.name = "checkout" && name = "POST /pay" }"#,
            r#"{ span.n = 5 && .flag = true && resource.zone = "a" }"#,
            r#"{ span.n = 0 }"#,
            r#"{ span.n = 5.0 }"#,
            r#"{ span.n = 100000000000000000 }"#,
            r#"{ .n = 5 || resource.service.name = "x" }"#,
            r#"{ .zone = "a" && (span.n > 1 || name = "x") }"#,
            r#"{ span.n != 5 && span.flag != true }"#,
        ];
        let durations = [
            "0ns", "1ns", "999ns", "1us", "1001ns", "1500ns", "2us", "100ms",
        ];
        let mut all: Vec<String> = queries.iter().map(|text| text.to_string()).collect();
        for duration in durations {
            for op in ["=", "!=", ">", ">=", "<", "<="] {
                all.push(format!("{{ duration {op} {duration} }}"));
                all.push(format!("{{ duration {op} {duration} && span.n = 5 }}"));
            }
        }

        let mut rows = vec![
            checkout(503, 150_000),
            checkout(500, 100_001),
            checkout(503, 100_000),
            span("x", "x", vec![]),
            with_resource(
                span("checkout", "POST /pay", vec![]),
                vec![text("zone", "a")],
            ),
        ];
        let values = [
            AttrValue::Int(5),
            AttrValue::Int(0),
            AttrValue::Int(100_000_000_000_000_000),
            AttrValue::Double(5.0),
            AttrValue::Double(-0.0),
            AttrValue::Double(1e17),
            AttrValue::String("5".into()),
            AttrValue::String("-0".into()),
            AttrValue::String("05".into()),
            AttrValue::String("5.0".into()),
            AttrValue::Bool(true),
        ];
        for value in values {
            for micros in [0, 1, 2, 3, 100_000, 100_001] {
                let attributes = vec![Attribute::new("n", value.clone()), boolean("flag", true)];
                let row = with_resource(
                    span("checkout", "POST /pay", attributes),
                    vec![text("zone", "a"), Attribute::new("n", value.clone())],
                );
                rows.push(with_duration(row, micros));
            }
        }

        let mut accepted = 0;
        for text in &all {
            let parsed = query(text);
            let pushed = parsed.pushdown();
            for row in &rows {
                if parsed.matches(row) {
                    accepted += 1;
                    assert!(
                        pushed.matches(row),
                        "{text}: pushdown {pushed:?} rejects a matching row {row:?}"
                    );
                }
            }
        }
        assert!(
            accepted > 100,
            "only {accepted} matches; the check is too weak"
        );
    }
}
