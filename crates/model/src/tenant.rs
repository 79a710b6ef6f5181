//! Tenants: an organisation id in the `X-Org-Id` header (as DeepFlow's querier takes it) keeps
//! a tenant's spans apart from everyone else's, in their own store, from the agent's receivers
//! to the query API. No header is the default tenant.

/// The header, in the lower case HTTP/2 and gRPC metadata use.
pub const ORG_HEADER: &str = "x-org-id";

/// The longest org id.
pub const MAX_ORG_BYTES: usize = 64;

/// The org id a header value names: `None` for a blank value (the default tenant), an error
/// for anything but 1 to 64 ASCII letters, digits and underscores (an org id becomes a
/// directory and a database name).
pub fn parse_org(value: &[u8]) -> Result<Option<String>, String> {
    let value = value.trim_ascii();
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > MAX_ORG_BYTES
        || !value
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
    {
        return Err(format!(
            "{ORG_HEADER} must be 1 to {MAX_ORG_BYTES} ASCII letters, digits or underscores"
        ));
    }
    Ok(Some(String::from_utf8_lossy(value).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_ids_are_short_plain_names() {
        assert_eq!(parse_org(b" 0002 "), Ok(Some("0002".to_string())));
        assert_eq!(parse_org(b"acme_eu"), Ok(Some("acme_eu".to_string())));
        assert_eq!(parse_org(b""), Ok(None));
        for bad in [
            &b"../etc"[..],
            b"a b",
            b"acme-eu",
            &[b'a'; 65],
            "caf\u{e9}".as_bytes(),
        ] {
            assert!(parse_org(bad).is_err(), "{bad:?}");
        }
    }
}
