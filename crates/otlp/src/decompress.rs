//! Request body decompression under a cap on the decompressed size, so that a small
//! compressed body (a decompression bomb) cannot grow past the limit in memory.

use std::io::Read;

/// A `Content-Encoding` spanflow accepts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    /// Parses a `Content-Encoding` header value; `None` for encodings spanflow does not speak.
    pub fn from_header(value: Option<&str>) -> Option<Encoding> {
        match value
            .map(|value| value.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("identity") | Some("none") => Some(Encoding::Identity),
            Some("gzip") | Some("x-gzip") => Some(Encoding::Gzip),
            Some("zstd") => Some(Encoding::Zstd),
            Some(_) => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecompressError {
    #[error("body is larger than {max_bytes} bytes after decompression")]
    TooLarge { max_bytes: usize },
    #[error("body is not valid {encoding}: {reason}")]
    Corrupt {
        encoding: &'static str,
        reason: String,
    },
}

/// Decompresses `body`, failing with `TooLarge` as soon as the output would exceed `max_bytes`.
pub fn decompress(
    body: bytes::Bytes,
    encoding: Encoding,
    max_bytes: usize,
) -> Result<bytes::Bytes, DecompressError> {
    match encoding {
        Encoding::Identity => {
            if body.len() > max_bytes {
                return Err(DecompressError::TooLarge { max_bytes });
            }
            Ok(body)
        }
        Encoding::Gzip => read_capped(
            flate2::read::MultiGzDecoder::new(&body[..]),
            max_bytes,
            "gzip",
        ),
        Encoding::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(&body[..]).map_err(|error| {
                DecompressError::Corrupt {
                    encoding: "zstd",
                    reason: error.to_string(),
                }
            })?;
            read_capped(decoder, max_bytes, "zstd")
        }
    }
}

fn read_capped(
    reader: impl Read,
    max_bytes: usize,
    encoding: &'static str,
) -> Result<bytes::Bytes, DecompressError> {
    let mut output = Vec::new();
    // One byte past the cap tells "exactly at the cap" from "over it".
    let limit = (max_bytes as u64).saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut output)
        .map_err(|error| DecompressError::Corrupt {
            encoding,
            reason: error.to_string(),
        })?;
    if output.len() > max_bytes {
        return Err(DecompressError::TooLarge { max_bytes });
    }
    Ok(output.into())
}

/// Compresses with gzip; for tests and clients.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        encoding: Encoding,
        compressed: Vec<u8>,
        max_bytes: usize,
    ) -> Result<usize, DecompressError> {
        decompress(compressed.into(), encoding, max_bytes).map(|output| output.len())
    }

    #[test]
    fn each_encoding_decompresses_within_the_cap() {
        let data = vec![7u8; 1000];
        assert_eq!(check(Encoding::Identity, data.clone(), 1000), Ok(1000));
        assert_eq!(check(Encoding::Gzip, gzip(&data), 1000), Ok(1000));
        assert_eq!(
            check(
                Encoding::Zstd,
                zstd::encode_all(&data[..], 1).unwrap(),
                1000
            ),
            Ok(1000)
        );
    }

    #[test]
    fn a_bomb_stops_at_the_cap() {
        let bomb = vec![0u8; 64 << 20];
        let compressed = gzip(&bomb);
        assert!(compressed.len() < 1 << 20);
        assert_eq!(
            check(Encoding::Gzip, compressed, 1 << 20),
            Err(DecompressError::TooLarge { max_bytes: 1 << 20 })
        );
        let compressed = zstd::encode_all(&bomb[..], 3).unwrap();
        assert_eq!(
            check(Encoding::Zstd, compressed, 1 << 20),
            Err(DecompressError::TooLarge { max_bytes: 1 << 20 })
        );
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        assert!(matches!(
            check(Encoding::Gzip, b"not gzip".to_vec(), 100),
            Err(DecompressError::Corrupt {
                encoding: "gzip",
                ..
            })
        ));
        assert!(matches!(
            check(Encoding::Zstd, b"not zstd".to_vec(), 100),
            Err(DecompressError::Corrupt {
                encoding: "zstd",
                ..
            })
        ));
    }

    #[test]
    fn header_values() {
        assert_eq!(Encoding::from_header(None), Some(Encoding::Identity));
        assert_eq!(Encoding::from_header(Some("GZIP")), Some(Encoding::Gzip));
        assert_eq!(Encoding::from_header(Some("zstd")), Some(Encoding::Zstd));
        assert_eq!(Encoding::from_header(Some("br")), None);
    }
}
