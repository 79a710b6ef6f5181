//! Query-string values every API shares: durations, times, limits, and the errors they make.

use std::time::{SystemTime, UNIX_EPOCH};

/// A parameter the caller got wrong, with what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct BadParam(pub String);

impl std::fmt::Display for BadParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The first non-empty value of the query parameter `name`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    param_any(params, &[name])
}

/// The first non-empty value of any of `names` (a parameter spelled more than one way).
pub fn param_any<'a>(params: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, value)| names.contains(&key.as_str()) && !value.is_empty())
        .map(|(_, value)| value.as_str())
}

/// Now, µs since the epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_micros() as i64)
        .unwrap_or_default()
}

/// A duration as Go (and so Jaeger and Tempo) writes it: a sequence of decimal numbers each
/// with a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), as in `1.5s` or `1h30m`; in
/// nanoseconds. A bare number is refused, since its unit would be a guess.
pub fn parse_go_duration_ns(text: &str) -> Result<u64, BadParam> {
    let bad = |why: &str| {
        BadParam(format!(
            "invalid duration {text:?}: {why} (want a number with a unit, as in 250ms, 1.5s or 1h30m)"
        ))
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("it is empty"));
    }
    if rest == "0" {
        return Ok(0);
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(bad("a unit must follow a number"));
        }
        let number: f64 = rest[..number_len]
            .parse()
            .map_err(|_| bad("it has a malformed number"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(bad("a number has no unit")),
            _ => return Err(bad("it has an unknown unit")),
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(bad("it is too long"));
    }
    Ok(total.round() as u64)
}

/// A Go duration in whole µs, rounded up so that a bound of `1500ns` still admits a 2 µs span.
pub fn parse_go_duration_us(text: &str) -> Result<u64, BadParam> {
    Ok(parse_go_duration_ns(text)?.div_ceil(1_000))
}

/// A point in time: RFC 3339 (`2026-11-24T10:00:00Z`) or an integer in the given unit since
/// the epoch; in µs since the epoch.
pub fn parse_time_us(text: &str, integer_unit_us: i64, name: &str) -> Result<i64, BadParam> {
    let text = text.trim();
    if let Ok(integer) = text.parse::<i64>() {
        return integer
            .checked_mul(integer_unit_us)
            .ok_or_else(|| BadParam(format!("{name}={text} is out of range")));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_micros())
        .map_err(|_| {
            BadParam(format!(
                "invalid {name} {text:?}: want an RFC 3339 time (2026-11-24T10:00:00Z) or an integer"
            ))
        })
}

/// A positive count no larger than `max`; `default` when absent.
pub fn parse_limit(
    text: Option<&str>,
    default: usize,
    max: usize,
    name: &str,
) -> Result<usize, BadParam> {
    let Some(text) = text else {
        return Ok(default);
    };
    let limit: usize = text
        .trim()
        .parse()
        .map_err(|_| BadParam(format!("invalid {name} {text:?}: want a whole number")))?;
    if limit > max {
        return Err(BadParam(format!(
            "{name}={limit} is more than the {max} allowed"
        )));
    }
    Ok(if limit == 0 { default } else { limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration_ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_go_duration_ns("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration_ns("250ms"), Ok(250_000_000));
        assert_eq!(parse_go_duration_ns("10µs"), Ok(10_000));
        assert_eq!(parse_go_duration_ns("10us"), Ok(10_000));
        assert_eq!(parse_go_duration_ns("0"), Ok(0));
        assert_eq!(parse_go_duration_us("1500ns"), Ok(2));
        for bad in ["", "12", "ms", "1.2.3s", "5y", "1e400h", "-1s"] {
            assert!(parse_go_duration_ns(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time_us("2026-11-24T10:00:00Z", 1, "start"),
            Ok(1_795_514_400_000_000)
        );
        assert_eq!(
            parse_time_us("2026-11-24T11:00:00.5+01:00", 1, "start"),
            Ok(1_795_514_400_500_000)
        );
        assert_eq!(
            parse_time_us("1700000000", 1_000_000, "start"),
            Ok(1_700_000_000_000_000)
        );
        assert!(parse_time_us("yesterday", 1, "start")
            .unwrap_err()
            .0
            .contains("RFC 3339"));
        assert!(parse_time_us(&i64::MAX.to_string(), 1_000, "end").is_err());
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None, 20, 100, "limit"), Ok(20));
        assert_eq!(parse_limit(Some("0"), 20, 100, "limit"), Ok(20));
        assert_eq!(parse_limit(Some("7"), 20, 100, "limit"), Ok(7));
        assert!(parse_limit(Some("101"), 20, 100, "limit").is_err());
        assert!(parse_limit(Some("-1"), 20, 100, "limit").is_err());
    }
}
