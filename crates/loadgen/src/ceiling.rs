//! The decode ceilings: how fast one core turns the corpus's requests into OTLP messages.
//!
//! A receiver that fully decodes what it is sent can never cost less than this per span, so
//! the benchmark reports these figures beside the figures of the system under test. Run it on
//! the core the system under test would have (`taskset -c 0 spanflow loadgen --ceilings`).

use std::io::Read;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Serialize;

use crate::corpus::Payload;

/// One way of decoding, timed.
#[derive(Clone, Debug, Serialize)]
pub struct Rate {
    /// Spans decoded per second on one core.
    pub spans_per_second: f64,
    /// CPU-seconds per million spans (microseconds per span).
    pub cpu_seconds_per_million_spans: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ceilings {
    /// Protobuf bytes to `ExportTraceServiceRequest` with prost.
    pub decode: Rate,
    /// Gunzip of the request as an SDK sends it, then the same decode.
    pub gunzip_decode: Rate,
    /// Gunzip alone.
    pub gunzip: Rate,
}

/// Times each way of decoding over `corpus`, round after round, for about `duration` each.
pub fn measure(corpus: &[Payload], duration: Duration) -> Ceilings {
    let mut scratch = Vec::new();
    Ceilings {
        decode: time(corpus, duration, |payload| {
            let request = ExportTraceServiceRequest::decode(payload.protobuf.as_ref())
                .expect("the corpus decodes");
            std::hint::black_box(request);
        }),
        gunzip_decode: time(corpus, duration, |payload| {
            gunzip(&payload.gzip, &mut scratch);
            let request =
                ExportTraceServiceRequest::decode(&scratch[..]).expect("the corpus decodes");
            std::hint::black_box(request);
        }),
        gunzip: time(corpus, duration, |payload| {
            gunzip(&payload.gzip, &mut scratch);
        }),
    }
}

fn gunzip(compressed: &[u8], out: &mut Vec<u8>) {
    out.clear();
    flate2::read::GzDecoder::new(compressed)
        .read_to_end(out)
        .expect("the corpus gunzips");
}

fn time(corpus: &[Payload], duration: Duration, mut decode: impl FnMut(&Payload)) -> Rate {
    // One warm-up round, then whole rounds until the time is up.
    corpus.iter().for_each(&mut decode);
    let started = Instant::now();
    let mut spans = 0usize;
    while started.elapsed() < duration || spans == 0 {
        for payload in corpus {
            decode(payload);
            spans += payload.n_spans;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Rate {
        spans_per_second: spans as f64 / seconds,
        cpu_seconds_per_million_spans: seconds / spans as f64 * 1e6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ceiling_is_a_rate_a_core_can_reach() {
        let corpus = crate::corpus::build(20, 100, 3);
        let ceilings = measure(&corpus, Duration::from_millis(50));
        for rate in [&ceilings.decode, &ceilings.gunzip_decode, &ceilings.gunzip] {
            // Between a span a second and a span a nanosecond, in debug builds as in release.
            assert!((1.0..1e9).contains(&rate.spans_per_second), "{ceilings:?}");
        }
    }
}
