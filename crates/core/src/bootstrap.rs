//! Bootstrap server lists: split as librdkafka splits `bootstrap.servers`, and each
//! address checked, so that both backends connect to the same brokers and reject the
//! same mistakes before anything runs.

use std::net::Ipv6Addr;

use crate::ConfigError;

/// Splits bootstrap server lists into one `host:port` per element and checks each.
///
/// Each element may hold several addresses separated by commas, as librdkafka's
/// `bootstrap.servers` does; whitespace around an address is trimmed and empty entries
/// (`"a:1,,b:2"`, `" "`) are skipped. An address is `host:port`: the port a number from
/// 1 to 65535, the host a name or IPv4 address of ASCII letters, digits, `.`, `-` and
/// `_`, or an IPv6 address in brackets (`[::1]:9092`).
///
/// ```
/// use ktm_core::{parse_bootstrap_servers, ConfigError};
/// let servers = parse_bootstrap_servers(["host1:9092,host2:9092", " [::1]:9093 "])?;
/// assert_eq!(servers, ["host1:9092", "host2:9092", "[::1]:9093"]);
/// assert!(matches!(
///     parse_bootstrap_servers([" , "]),
///     Err(ConfigError::NoBootstrapServers)
/// ));
/// # Ok::<(), ConfigError>(())
/// ```
///
/// # Errors
/// [`ConfigError::NoBootstrapServers`] when no address is left, and
/// [`ConfigError::InvalidBootstrapAddress`] for the first address that is not
/// `host:port`.
pub fn parse_bootstrap_servers<S: AsRef<str>>(
    servers: impl IntoIterator<Item = S>,
) -> Result<Vec<String>, ConfigError> {
    let mut addresses = Vec::new();
    for element in servers {
        for address in element.as_ref().split(',').map(str::trim) {
            if address.is_empty() {
                continue;
            }
            check_address(address)?;
            addresses.push(address.to_owned());
        }
    }
    if addresses.is_empty() {
        return Err(ConfigError::NoBootstrapServers);
    }
    Ok(addresses)
}

/// One trimmed address: `host:port`, with an IPv6 host in brackets.
fn check_address(address: &str) -> Result<(), ConfigError> {
    let bad = |reason| ConfigError::InvalidBootstrapAddress {
        address: address.to_owned(),
        reason,
    };
    if address.contains("://") {
        return Err(bad(
            "a scheme (such as PLAINTEXT://) is not supported: give host:port",
        ));
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(|| bad("no ':port'"))?;
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    // `u16::from_str` takes a leading `+`, which no client would.
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("port is not a number from 1 to 65535"));
    }
    match port.parse::<u16>() {
        Ok(0) => return Err(bad("port 0")),
        Ok(_) => {}
        Err(_) => return Err(bad("port is not a number from 1 to 65535")),
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| bad("'[' without its ']'"))?;
        // A zone (`fe80::1%eth0`) is the operating system's business.
        let (ip, zone) = match inner.split_once('%') {
            Some((ip, zone)) => (ip, Some(zone)),
            None => (inner, None),
        };
        if ip.parse::<Ipv6Addr>().is_err() || zone.is_some_and(|z| !is_host_text(z)) {
            return Err(bad("not an IPv6 address between the brackets"));
        }
        return Ok(());
    }
    if host.contains(':') {
        return Err(bad("an IPv6 host goes in brackets, as [::1]:9092"));
    }
    if !is_host_text(host) {
        return Err(bad(
            "the host has characters other than ASCII letters, digits, '.', '-' and '_'",
        ));
    }
    Ok(())
}

/// Non-empty, and only what host names, IPv4 addresses and zone ids are made of.
fn is_host_text(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(address: &str) -> &'static str {
        match parse_bootstrap_servers([address]) {
            Err(ConfigError::InvalidBootstrapAddress { address: a, reason }) => {
                assert_eq!(a, address.trim());
                reason
            }
            other => panic!("{address:?}: {other:?}"),
        }
    }

    #[test]
    fn lists_are_split_trimmed_and_empty_entries_skipped() {
        let servers = parse_bootstrap_servers(["host1:9092,host2:9092", " host3:9092 "]).unwrap();
        assert_eq!(servers, ["host1:9092", "host2:9092", "host3:9092"]);
        let servers =
            parse_bootstrap_servers([",a:1,, b:2 ,", "", "  ", "\tc_d.e-f:65535\n"]).unwrap();
        assert_eq!(servers, ["a:1", "b:2", "c_d.e-f:65535"]);
        for nothing in [vec![], vec![""], vec![" , ,", ","]] {
            assert_eq!(
                parse_bootstrap_servers(nothing.iter()),
                Err(ConfigError::NoBootstrapServers),
                "{nothing:?}"
            );
        }
    }

    #[test]
    fn ipv6_addresses_go_in_brackets() {
        let servers =
            parse_bootstrap_servers(["[::1]:9092", "[2001:db8::7]:9093,[fe80::1%eth0]:1"]).unwrap();
        assert_eq!(
            servers,
            ["[::1]:9092", "[2001:db8::7]:9093", "[fe80::1%eth0]:1"]
        );
        assert_eq!(
            reason("::1:9092"),
            "an IPv6 host goes in brackets, as [::1]:9092"
        );
        for address in ["[]:9092", "[::g]:9092", "[localhost]:9092", "[::1%]:1"] {
            assert_eq!(
                reason(address),
                "not an IPv6 address between the brackets",
                "{address}"
            );
        }
        assert_eq!(reason("[::1:9092"), "'[' without its ']'");
    }

    #[test]
    fn bad_addresses_are_named_with_what_is_wrong() {
        for (address, why) in [
            ("localhost", "no ':port'"),
            (":9092", "empty host"),
            ("[]:", "port is not a number from 1 to 65535"),
            ("h:", "port is not a number from 1 to 65535"),
            ("h:0", "port 0"),
            ("h:65536", "port is not a number from 1 to 65535"),
            ("h:+9092", "port is not a number from 1 to 65535"),
            ("h:-1", "port is not a number from 1 to 65535"),
            ("h:90 92", "port is not a number from 1 to 65535"),
            ("h:9092/", "port is not a number from 1 to 65535"),
        ] {
            assert_eq!(reason(address), why, "{address}");
        }
        let odd_host = "the host has characters other than ASCII letters, digits, '.', '-' and '_'";
        for address in ["my host:9092", "caf\u{e9}:1", "h;:1"] {
            assert_eq!(reason(address), odd_host, "{address}");
        }
        assert_eq!(
            reason("PLAINTEXT://h:9092"),
            "a scheme (such as PLAINTEXT://) is not supported: give host:port"
        );
        // The first bad address of a list is the one named.
        assert_eq!(
            parse_bootstrap_servers(["a:1, b , c"]),
            Err(ConfigError::InvalidBootstrapAddress {
                address: "b".into(),
                reason: "no ':port'"
            })
        );
        for good in ["h:1", "h:65535", "10.0.0.1:9092", "broker-1.kafka.svc:9092"] {
            assert!(parse_bootstrap_servers([good]).is_ok(), "{good}");
        }
    }
}
