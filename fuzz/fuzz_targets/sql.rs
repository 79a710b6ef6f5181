//! `sql::prepare`, the check of SQL from outside, for both engines' dialects on any UTF-8.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spanflow_store::sql::{prepare, SqlDialect, MAX_SQL_BYTES};
use spanflow_store::ErrorKind;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    for dialect in [SqlDialect::DataFusion, SqlDialect::ClickHouse] {
        match prepare(sql, dialect) {
            Ok(prepared) => {
                assert!(sql.len() <= MAX_SQL_BYTES);
                assert!(!prepared.trim().is_empty());
            }
            // Whatever is wrong with the text is the caller's fault, never the store's.
            Err(error) => assert_eq!(error.kind, ErrorKind::BadRequest, "{error}"),
        }
    }
});
