//! Identifier newtypes: trace and span ids as fixed-size bytes, agent ids as text.

use std::fmt;
use std::str::FromStr;

/// Why a byte or text form is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    /// The id has the wrong number of bytes (or hex digits / 2).
    Length { expected: usize, actual: usize },
    /// The text is not hexadecimal.
    NotHex,
    /// The id is all zero bytes, which OTLP defines as invalid.
    Zero,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdError::Length { expected, actual } => {
                write!(f, "expected {expected} bytes, got {actual}")
            }
            IdError::NotHex => f.write_str("not a hexadecimal string"),
            IdError::Zero => f.write_str("all-zero id"),
        }
    }
}

impl std::error::Error for IdError {}

macro_rules! byte_id {
    ($name:ident, $len:expr, $doc:expr) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            /// Builds the id from raw bytes; any length other than the id's is an error.
            /// All-zero ids are accepted here; callers that must reject them check `is_zero`.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
                let array: [u8; $len] = bytes.try_into().map_err(|_| IdError::Length {
                    expected: $len,
                    actual: bytes.len(),
                })?;
                Ok(Self(array))
            }

            pub fn is_zero(&self) -> bool {
                self.0.iter().all(|byte| *byte == 0)
            }

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hexadecimal, the form every spanflow API prints.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            /// Parses hexadecimal in either case.
            fn from_str(text: &str) -> Result<Self, IdError> {
                if text.len() != $len * 2 {
                    return Err(IdError::Length {
                        expected: $len,
                        actual: text.len() / 2,
                    });
                }
                let mut bytes = [0u8; $len];
                hex::decode_to_slice(text, &mut bytes).map_err(|_| IdError::NotHex)?;
                Ok(Self(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for byte in self.0 {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}

byte_id!(TraceId, 16, "A 16-byte OpenTelemetry trace id.");
byte_id!(SpanId, 8, "An 8-byte OpenTelemetry span id.");

/// The name an agent reports itself under (by default its host name).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct AgentId(pub String);

impl AgentId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_round_trips_through_hex_in_either_case() {
        let id: TraceId = "5B8EFFF798038103D269B633813FC60C".parse().unwrap();
        assert_eq!(id.to_hex(), "5b8efff798038103d269b633813fc60c");
        assert_eq!(id.to_string().parse::<TraceId>().unwrap(), id);
    }

    #[test]
    fn wrong_lengths_and_non_hex_are_errors() {
        assert_eq!(
            SpanId::from_bytes(&[1, 2, 3]),
            Err(IdError::Length {
                expected: 8,
                actual: 3
            })
        );
        assert_eq!("zz".repeat(8).parse::<SpanId>(), Err(IdError::NotHex));
        assert!(SpanId::from_bytes(&[0; 8]).unwrap().is_zero());
    }
}
