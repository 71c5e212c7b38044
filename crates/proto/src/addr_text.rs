//! Addresses as text, as std's `Display` writes them. For IPv4 the digits are written here: std
//! writes each octet and the port through the formatting machinery, about 3,000 instructions an
//! address, and a camera that connects for each alarm has its address written up to four times per
//! alarm (the connection's row, its device's row, the two log lines), and an XM frame's own address
//! was written twice per frame.

use std::net::{Ipv4Addr, SocketAddr};

use crate::digits::push_decimal;

/// `ip` as `ip.to_string()` writes it (`192.0.2.7`).
pub fn ipv4_text(ip: Ipv4Addr) -> String {
    let mut text = String::with_capacity(15);
    push_ipv4(&mut text, ip);
    text
}

/// Appends the four octets of `ip` with dots.
fn push_ipv4(text: &mut String, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        push_decimal(text, u32::from(octet));
    }
}

/// `addr` as `addr.to_string()` writes it (`192.0.2.7:37777`, `[2001:db8::7]:37777`).
pub fn peer_text(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => {
            let mut text = String::with_capacity(21);
            push_ipv4(&mut text, *v4.ip());
            text.push(':');
            push_decimal(&mut text, u32::from(v4.port()));
            text
        }
        SocketAddr::V6(_) => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv6Addr, SocketAddrV4, SocketAddrV6};

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        let ports = [0, 1, 9, 10, 99, 100, 999, 1000, 37777, 65535];
        for octet in 0..=255u8 {
            for (i, &port) in ports.iter().enumerate() {
                let mut octets = [10, 0, 200, 7];
                octets[i % 4] = octet;
                let ip = Ipv4Addr::from(octets);
                let addr = SocketAddr::V4(SocketAddrV4::new(ip, port));
                assert_eq!(peer_text(addr), addr.to_string());
                assert_eq!(ipv4_text(ip), ip.to_string());
            }
        }
        for addr in [
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 37777, 0, 0)),
            "[2001:db8::7]:80".parse().unwrap(),
            "[::ffff:192.0.2.7]:1".parse().unwrap(),
            "[fe80::1%2]:5".parse().unwrap(),
        ] {
            assert_eq!(peer_text(addr), addr.to_string());
        }
    }
}
