//! OTLP/protobuf as the agent walks it and the server decodes it: `scan::scan_request` must
//! accept exactly what prost decodes and count the same spans, `without_rejected_spans` must cut
//! exactly the spans with bad ids, the server's mapping straight from the bytes must accept the
//! same and read them as prost does, and what the agent forwards must become one row per span
//! it accepted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use spanflow_fuzz::{
    all_spans, check_forwarded, check_rows, has_good_ids, sender, without_bad_spans,
};
use spanflow_otlp::map::map_request;
use spanflow_otlp::wire::map_payload_into;
use spanflow_otlp::{scan, ExportTraceServiceRequest};

fuzz_target!(|data: &[u8]| {
    let scanned = scan::scan_request(data);
    let decoded = ExportTraceServiceRequest::decode(data);
    let mut wired_rows = Vec::new();
    let wired = map_payload_into(data, &sender(), &mut wired_rows);
    assert_eq!(
        wired.is_ok(),
        decoded.is_ok(),
        "the server's mapping and prost disagree: {:?}",
        wired.as_ref().err()
    );
    let (scan, request) = match (scanned, decoded) {
        (Ok(scan), Ok(request)) => (scan, request),
        (Err(error), Err(_)) => {
            assert!(
                error.message.starts_with("invalid protobuf at byte "),
                "{error}"
            );
            assert_eq!(scan::without_rejected_spans(data), Err(error));
            return;
        }
        (Ok(scan), Err(error)) => panic!("scan accepts ({scan:?}) what prost refuses: {error}"),
        (Err(error), Ok(_)) => panic!("scan refuses what prost decodes: {error}"),
    };

    let n_total = all_spans(&request).count();
    let n_bad = all_spans(&request)
        .filter(|span| !has_good_ids(span))
        .count();
    assert_eq!((scan.n_spans, scan.n_rejected), (n_total - n_bad, n_bad));
    assert_eq!(scan.rejected_message.is_some(), n_bad > 0);

    // The server's full path on the request as received, and on prost's encoding of what it
    // decoded (every repeated message merged, the last of each repeated scalar, no unknown
    // fields): both must read the same rows.
    let mapped = map_request(request.clone(), &sender());
    check_rows(&request, &mapped);
    let wired = wired.expect("checked above");
    // As text: a NaN double is not equal to itself.
    assert_eq!(format!("{wired_rows:?}"), format!("{:?}", mapped.rows));
    assert_eq!(
        (wired.n_rejected, &wired.message),
        (mapped.n_rejected, &mapped.rejected_message)
    );

    // What the agent forwards: the bytes as received, or without the rejected spans.
    let forwarded = scan::without_rejected_spans(data)
        .unwrap_or_else(|error| panic!("scan accepted but the cut failed: {error}"));
    if n_bad == 0 {
        assert_eq!(forwarded, data, "nothing to cut, yet the bytes changed");
    }
    let forwarded_request = ExportTraceServiceRequest::decode(&forwarded[..])
        .unwrap_or_else(|error| panic!("the cut payload does not decode: {error}"));
    // Encodings, not structs: a NaN double is not equal to itself.
    assert_eq!(
        forwarded_request.encode_to_vec(),
        without_bad_spans(request).encode_to_vec(),
        "the cut removed something other than the rejected spans"
    );
    check_forwarded(&forwarded, n_total - n_bad);
});
