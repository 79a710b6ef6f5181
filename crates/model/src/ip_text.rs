//! An address as the text the stores keep.

use std::io::Write as _;
use std::net::IpAddr;

/// The longest text of an address: an IPv6 address ending in an IPv4 one.
const MAX_LEN: usize = 45;

/// An address written as text, on the stack: dotted decimal for IPv4, written without the
/// formatting machinery (every span has two addresses, on every store's write path), and
/// `Display`'s form for IPv6.
#[derive(Clone, Copy)]
pub struct IpText {
    text: [u8; MAX_LEN],
    len: u8,
}

impl IpText {
    pub fn new(ip: IpAddr) -> IpText {
        let mut text = [0u8; MAX_LEN];
        let mut n = 0;
        match ip {
            IpAddr::V4(ip) => {
                for (i, octet) in ip.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[n] = b'.';
                        n += 1;
                    }
                    if octet >= 100 {
                        text[n] = b'0' + octet / 100;
                        n += 1;
                    }
                    if octet >= 10 {
                        text[n] = b'0' + octet / 10 % 10;
                        n += 1;
                    }
                    text[n] = b'0' + octet % 10;
                    n += 1;
                }
            }
            IpAddr::V6(ip) => {
                let mut cursor = std::io::Cursor::new(&mut text[..]);
                write!(cursor, "{ip}").expect("an IPv6 address fits in 45 bytes");
                n = cursor.position() as usize;
            }
        }
        IpText { text, len: n as u8 }
    }

    pub fn as_str(&self) -> &str {
        let text = &self.text[..self.len as usize];
        debug_assert!(text.is_ascii());
        // SAFETY: `new` writes only ASCII digits, dots, colons and hexadecimal letters.
        unsafe { std::str::from_utf8_unchecked(text) }
    }
}

impl std::fmt::Debug for IpText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        for text in [
            "0.0.0.0",
            "10.0.1.9",
            "192.168.100.255",
            "255.255.255.255",
            "::",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.1.2.3",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), ip.to_string(), "{text}");
        }
    }

    #[test]
    fn every_octet_is_written_as_display_writes_it() {
        for octet in 0..=255u8 {
            let ip = IpAddr::from([octet, 0, octet, 7]);
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }
}
