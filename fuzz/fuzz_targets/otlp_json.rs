//! OTLP/JSON as the agent takes it: `json::decode_request`, then `validate::remove_invalid_spans`,
//! then the protobuf the agent forwards, which the server must decode and map to one row per
//! span the agent accepted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use spanflow_fuzz::{all_spans, check_forwarded, check_rows, has_good_ids, sender};
use spanflow_otlp::map::map_request;
use spanflow_otlp::{json, validate};

fuzz_target!(|data: &[u8]| {
    let Ok(mut request) = json::decode_request(data) else {
        return;
    };
    let n_total = all_spans(&request).count();
    let n_bad = all_spans(&request)
        .filter(|span| !has_good_ids(span))
        .count();

    // The server's mapping of the request as decoded, bad spans included.
    let mapped = map_request(request.clone(), &sender());
    check_rows(&request, &mapped);

    let validated = validate::remove_invalid_spans(&mut request);
    assert_eq!(
        (validated.n_spans, validated.n_rejected),
        (n_total - n_bad, n_bad)
    );
    assert_eq!(validated.rejected_message.is_some(), n_bad > 0);
    assert!(all_spans(&request).all(has_good_ids));

    let forwarded = request.encode_to_vec();
    check_forwarded(&forwarded, validated.n_spans);
});
