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
        Encoding::Gzip => {
            // The trailer's ISIZE: the (last member's) size, modulo 4 GiB.
            let size = body
                .len()
                .checked_sub(4)
                .map(|at| u32::from_le_bytes(body[at..].try_into().expect("four bytes")) as u64);
            let room = capacity(size, body.len(), max_bytes);
            if size == Some(room as u64) && room > 0 {
                if let Some(output) = gunzip_whole(&body, room) {
                    return Ok(output.into());
                }
            }
            read_capped(
                flate2::bufread::MultiGzDecoder::new(&body[..]),
                max_bytes,
                room,
                "gzip",
            )
        }
        Encoding::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(&body[..]).map_err(|error| {
                DecompressError::Corrupt {
                    encoding: "zstd",
                    reason: error.to_string(),
                }
            })?;
            let size = zstd::zstd_safe::get_frame_content_size(&body)
                .ok()
                .flatten();
            read_capped(
                decoder,
                max_bytes,
                capacity(size, body.len(), max_bytes),
                "zstd",
            )
        }
    }
}

/// A body of one gzip member, decompressed by libdeflate in one call (about twice as fast as a
/// streaming inflate) into exactly the `size` bytes its trailer states. `None` unless the
/// member is the whole body and holds exactly that: a body of several members, a trailer that
/// lies, or corrupt data go through the streaming decoder, which keeps to the cap and says what
/// is wrong.
fn gunzip_whole(body: &[u8], size: usize) -> Option<Vec<u8>> {
    thread_local! {
        static DECOMPRESSOR: Option<Decompressor> = Decompressor::new();
    }
    // Not zeroed first: libdeflate writes it, and only what it wrote is kept.
    let mut output = Vec::<u8>::with_capacity(size);
    let (mut consumed, mut written) = (0usize, 0usize);
    let result = DECOMPRESSOR.with(|decompressor| {
        let decompressor = decompressor.as_ref()?;
        // SAFETY: the pointers and lengths are those of `body` and of `output`'s allocation
        // (`size` bytes), which outlive the call; libdeflate writes no more than that length;
        // the decompressor is this thread's alone, and libdeflate keeps no pointer past the
        // call.
        Some(unsafe {
            libdeflate_sys::libdeflate_gzip_decompress_ex(
                decompressor.0.as_ptr(),
                body.as_ptr().cast(),
                body.len(),
                output.as_mut_ptr().cast(),
                size,
                &mut consumed,
                &mut written,
            )
        })
    })?;
    let whole = result == libdeflate_sys::libdeflate_result_LIBDEFLATE_SUCCESS
        && consumed == body.len()
        && written == size;
    if !whole {
        return None;
    }
    // SAFETY: libdeflate wrote `written` bytes, which is `size`, the vector's capacity, from
    // its start.
    unsafe { output.set_len(size) };
    Some(output)
}

/// A libdeflate decompressor (its tables, about 32 KB), freed on drop.
struct Decompressor(std::ptr::NonNull<libdeflate_sys::libdeflate_decompressor>);

impl Decompressor {
    fn new() -> Option<Decompressor> {
        // SAFETY: allocates a decompressor or returns null, which `NonNull::new` turns away.
        std::ptr::NonNull::new(unsafe { libdeflate_sys::libdeflate_alloc_decompressor() })
            .map(Decompressor)
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: allocated by `libdeflate_alloc_decompressor` and freed once, here.
        unsafe { libdeflate_sys::libdeflate_free_decompressor(self.0.as_ptr()) }
    }
}

/// Deflate and zstd expand at most about a thousand times.
const MAX_EXPANSION: usize = 1032;

/// The room to decompress into: the size the body says it has (which it may lie about; past
/// the cap or what it could expand to, the output grows as it comes), so that the output is
/// not copied through doublings.
fn capacity(size: Option<u64>, compressed: usize, max_bytes: usize) -> usize {
    let size = usize::try_from(size.unwrap_or(0)).unwrap_or(usize::MAX);
    size.min(compressed.saturating_mul(MAX_EXPANSION))
        .min(max_bytes)
}

fn read_capped(
    reader: impl Read,
    max_bytes: usize,
    capacity: usize,
    encoding: &'static str,
) -> Result<bytes::Bytes, DecompressError> {
    let mut output = Vec::with_capacity(capacity);
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
    fn the_room_taken_is_the_size_the_body_says_within_what_it_could_be() {
        assert_eq!(capacity(Some(5_000), 100, 1 << 20), 5_000);
        // A claim past what 100 bytes expand to, or past the cap, or none.
        assert_eq!(capacity(Some(u64::MAX), 100, 1 << 20), 100 * MAX_EXPANSION);
        assert_eq!(capacity(Some(1 << 30), 1 << 20, 1 << 20), 1 << 20);
        assert_eq!(capacity(None, 100, 1 << 20), 0);
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
    fn a_gzip_body_of_several_members_is_all_of_them_and_a_cut_one_is_corrupt() {
        let mut body = gzip(b"first member, ");
        body.extend(gzip(b"second member"));
        let output = decompress(body.clone().into(), Encoding::Gzip, 1000).unwrap();
        assert_eq!(&output[..], b"first member, second member");
        body.truncate(body.len() - 3);
        assert!(matches!(
            decompress(body.into(), Encoding::Gzip, 1000),
            Err(DecompressError::Corrupt {
                encoding: "gzip",
                ..
            })
        ));
    }

    #[test]
    fn one_member_is_read_whole_and_nothing_else_is_taken_for_it() {
        let data: Vec<u8> = (0..5000u32).flat_map(|n| (n % 251).to_le_bytes()).collect();
        let body = gzip(&data);
        assert_eq!(gunzip_whole(&body, data.len()).as_deref(), Some(&data[..]));
        // Two members alike: the last trailer matches the first member too, but the first
        // member is not the whole body, so both come out.
        let twice = [body.clone(), body.clone()].concat();
        assert_eq!(gunzip_whole(&twice, data.len()), None);
        let output = decompress(twice.into(), Encoding::Gzip, 1 << 20).unwrap();
        assert_eq!(output.len(), 2 * data.len());
        assert_eq!(&output[data.len()..], &data[..]);
        // A trailer that says less or more than the member holds is corrupt, not cut short
        // or padded.
        for lie in [data.len() as u32 - 1, data.len() as u32 + 1] {
            let mut lying = body.clone();
            let at = lying.len() - 4;
            lying[at..].copy_from_slice(&lie.to_le_bytes());
            assert_eq!(gunzip_whole(&lying, lie as usize), None);
            assert!(matches!(
                decompress(lying.into(), Encoding::Gzip, 1 << 20),
                Err(DecompressError::Corrupt { .. })
            ));
        }
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
