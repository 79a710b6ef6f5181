//! `decompress::decompress` for gzip and zstd under a small cap: the output never exceeds the
//! cap, and the capped result agrees with an uncapped read of the same stream.

#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use spanflow_otlp::decompress::{decompress, DecompressError, Encoding};

/// How far the uncapped reference read goes; far past any cap the target uses.
const REFERENCE_LIMIT: u64 = 1 << 20;

/// Reads `reader` to its end (or `REFERENCE_LIMIT`): the bytes read, and whether it ended
/// cleanly.
fn read_all(reader: impl Read) -> (Vec<u8>, bool) {
    let mut output = Vec::new();
    let ok = reader
        .take(REFERENCE_LIMIT)
        .read_to_end(&mut output)
        .is_ok();
    (output, ok)
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the encoding, the second the cap (0 to 4080 bytes).
    let [selector, cap, body @ ..] = data else {
        return;
    };
    let encoding = if selector & 1 == 0 {
        Encoding::Gzip
    } else {
        Encoding::Zstd
    };
    let max_bytes = usize::from(*cap) * 16;
    let result = decompress(bytes::Bytes::copy_from_slice(body), encoding, max_bytes);
    if let Ok(output) = &result {
        assert!(
            output.len() <= max_bytes,
            "{} bytes over a cap of {max_bytes}",
            output.len()
        );
    }

    let (reference, reference_ok) = match encoding {
        Encoding::Gzip => read_all(flate2::read::MultiGzDecoder::new(body)),
        Encoding::Zstd => match zstd::stream::read::Decoder::new(body) {
            Ok(decoder) => read_all(decoder),
            Err(_) => (Vec::new(), false),
        },
        Encoding::Identity => unreachable!(),
    };
    match (&result, reference_ok) {
        // A stream that ends cleanly within the cap is returned whole; past it, refused.
        (_, true) if reference.len() <= max_bytes => {
            assert_eq!(result.as_deref(), Ok(&reference[..]))
        }
        (_, true) => assert_eq!(result, Err(DecompressError::TooLarge { max_bytes })),
        // A corrupt stream is never returned as if it were whole.
        (Ok(output), false) => panic!(
            "{} bytes returned from a stream the reference could not read",
            output.len()
        ),
        (Err(_), false) => {}
    }
});
