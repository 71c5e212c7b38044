//! Link-layer and IP decoding down to TCP segments.

use std::net::{IpAddr, SocketAddr};

use etherparse::{EtherType, NetSlice, SlicedPacket, TransportSlice};

/// LINKTYPE_NULL: BSD loopback, 4-byte address family in host byte order.
pub const LINKTYPE_NULL: u32 = 0;
/// LINKTYPE_ETHERNET (incl. 802.1Q / QinQ VLAN tags).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// LINKTYPE_RAW: raw IPv4 or IPv6.
pub const LINKTYPE_RAW: u32 = 101;
/// LINKTYPE_LOOP: OpenBSD loopback, 4-byte address family in network byte order.
pub const LINKTYPE_LOOP: u32 = 108;
/// LINKTYPE_LINUX_SLL: Linux "cooked" capture v1 (16-byte header).
pub const LINKTYPE_LINUX_SLL: u32 = 113;
/// LINKTYPE_IPV4: raw IPv4.
pub const LINKTYPE_IPV4: u32 = 228;
/// LINKTYPE_IPV6: raw IPv6.
pub const LINKTYPE_IPV6: u32 = 229;
/// LINKTYPE_LINUX_SLL2: Linux "cooked" capture v2 (20-byte header).
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

/// One TCP segment taken from a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment<'a> {
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
    /// Sequence number of the first byte (of the SYN flag if set).
    pub(crate) seq: u32,
    pub(crate) syn: bool,
    pub(crate) fin: bool,
    pub(crate) rst: bool,
    pub(crate) payload: &'a [u8],
}

/// Decodes a captured frame of link type `linktype`; `None` for anything that is not a
/// complete, well-formed TCP segment over IPv4/IPv6 (including IP fragments and frames cut by
/// the snap length inside the IP packet).
pub(crate) fn tcp_segment(linktype: u32, frame: &[u8]) -> Option<Segment<'_>> {
    let sliced = match linktype {
        LINKTYPE_ETHERNET => SlicedPacket::from_ethernet(frame).ok()?,
        LINKTYPE_LINUX_SLL => {
            let proto = u16::from_be_bytes(frame.get(14..16)?.try_into().ok()?);
            SlicedPacket::from_ether_type(EtherType(proto), frame.get(16..)?).ok()?
        }
        LINKTYPE_LINUX_SLL2 => {
            let proto = u16::from_be_bytes(frame.get(0..2)?.try_into().ok()?);
            SlicedPacket::from_ether_type(EtherType(proto), frame.get(20..)?).ok()?
        }
        // 12 and 14 are DLT_RAW values some systems wrote into pcap files.
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 | 12 | 14 => {
            SlicedPacket::from_ip(frame).ok()?
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let family: [u8; 4] = frame.get(0..4)?.try_into().ok()?;
            // AF_INET = 2; AF_INET6 = 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS). The field
            // is in the capturing host's byte order, so accept both.
            let is_ip = |af: u32| matches!(af, 2 | 24 | 28 | 30);
            if !is_ip(u32::from_le_bytes(family)) && !is_ip(u32::from_be_bytes(family)) {
                return None;
            }
            SlicedPacket::from_ip(frame.get(4..)?).ok()?
        }
        _ => return None,
    };
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match sliced.net? {
        NetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
    };
    let TransportSlice::Tcp(tcp) = sliced.transport? else {
        return None;
    };
    Some(Segment {
        src: SocketAddr::new(src_ip, tcp.source_port()),
        dst: SocketAddr::new(dst_ip, tcp.destination_port()),
        seq: tcp.sequence_number(),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        payload: tcp.payload(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_v4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(40000, 15002, 7, 1000);
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn link_types() {
        let ip = tcp_v4(b"abc");
        let check = |lt: u32, frame: &[u8]| {
            let seg = tcp_segment(lt, frame).unwrap_or_else(|| panic!("linktype {lt}"));
            assert_eq!(seg.payload, b"abc");
            assert_eq!(seg.seq, 7);
            assert_eq!(seg.dst, "10.0.0.2:15002".parse().unwrap());
        };
        check(LINKTYPE_RAW, &ip);
        check(LINKTYPE_IPV4, &ip);
        check(LINKTYPE_NULL, &[&2u32.to_le_bytes()[..], &ip].concat());
        check(LINKTYPE_LOOP, &[&2u32.to_be_bytes()[..], &ip].concat());
        let mut sll = vec![0, 0, 3, 4, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 8, 0];
        sll.extend_from_slice(&ip);
        check(LINKTYPE_LINUX_SLL, &sll);
        let mut sll2 = vec![8, 0, 0, 0, 0, 0, 0, 1, 3, 4, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        sll2.extend_from_slice(&ip);
        check(LINKTYPE_LINUX_SLL2, &sll2);
        let mut eth_vlan = vec![0; 12];
        eth_vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        eth_vlan.extend_from_slice(&ip);
        check(LINKTYPE_ETHERNET, &eth_vlan);
    }

    #[test]
    fn rejects_non_tcp_and_damage() {
        let ip = tcp_v4(b"abc");
        assert!(
            tcp_segment(LINKTYPE_RAW, &ip[..ip.len() - 1]).is_none(),
            "cut by snaplen"
        );
        assert!(tcp_segment(LINKTYPE_NULL, &[&7u32.to_le_bytes()[..], &ip].concat()).is_none());
        assert!(tcp_segment(999, &ip).is_none());
        assert!(tcp_segment(LINKTYPE_LINUX_SLL2, &ip[..10]).is_none());
        let mut udp = Vec::new();
        PacketBuilder::ipv4([1; 4], [2; 4], 1)
            .udp(1, 2)
            .write(&mut udp, b"x")
            .unwrap();
        assert!(tcp_segment(LINKTYPE_RAW, &udp).is_none());
        for cut in 0..ip.len() {
            let _ = tcp_segment(LINKTYPE_ETHERNET, &ip[..cut]);
        }
    }
}
