//! Reassembly of JSON bodies split over several DVRIP 0xF6/0xF4 or DHIP packets.
//!
//! Both headers carry the body length of this packet and the total body length; a packet whose total is
//! larger than its own body starts a message, and the following packets of the same protocol and
//! request id continue it [I: header layout from real captures; no fragmented sample is public]. The
//! pieces are joined in order and the joined body is read once complete.

use bytes::{Bytes, BytesMut};
use serde::Serialize;

use crate::frame::Protocol;

/// Largest message reassembled, in bytes; a longer one is abandoned (each packet is still kept).
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// Where a packet stands in its message; printed as `"fragment"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FragmentInfo {
    /// 1-based number of this packet in its message.
    pub index: u32,
    /// Body bytes received for the message so far, this packet included.
    pub received: u32,
    /// Total body length the message announced.
    pub total: u32,
}

/// A message being reassembled.
#[derive(Debug, Clone)]
struct Pending {
    protocol: Protocol,
    request_id: u32,
    total: u32,
    packets: u32,
    body: BytesMut,
}

/// Reassembly state of one stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reassembly {
    pending: Option<Pending>,
}

/// What to do with a packet's body.
#[derive(Debug)]
pub(crate) enum Step {
    /// Not part of a fragmented message: read the body as it is.
    Whole,
    /// A piece of a message still incomplete.
    Partial(FragmentInfo),
    /// The last piece: read the joined body.
    Complete(FragmentInfo, Bytes),
    /// The message grew past [`MAX_MESSAGE`] and was abandoned.
    TooLong(FragmentInfo),
}

impl Reassembly {
    /// Takes a packet of `protocol` with `request_id`, its `body` and its header's `total` body length.
    pub(crate) fn push(
        &mut self,
        protocol: Protocol,
        request_id: u32,
        total: u32,
        body: &[u8],
    ) -> Step {
        let continues = self
            .pending
            .as_ref()
            .is_some_and(|p| p.protocol == protocol && p.request_id == request_id);
        if !continues {
            if (total as usize) <= body.len() {
                self.pending = None;
                return Step::Whole;
            }
            self.pending = Some(Pending {
                protocol,
                request_id,
                total,
                packets: 0,
                body: BytesMut::new(),
            });
        }
        let Some(p) = self.pending.as_mut() else {
            return Step::Whole;
        };
        p.packets += 1;
        let info = |p: &Pending, received: usize| FragmentInfo {
            index: p.packets,
            received: received.min(u32::MAX as usize) as u32,
            total: p.total,
        };
        let received = p.body.len() + body.len();
        if received > MAX_MESSAGE {
            let step = Step::TooLong(info(p, received));
            self.pending = None;
            return step;
        }
        p.body.extend_from_slice(body);
        if p.body.len() >= p.total as usize {
            let done = self
                .pending
                .take()
                .map(|p| (info(&p, p.body.len()), p.body.freeze()));
            return done.map_or(Step::Whole, |(i, b)| Step::Complete(i, b));
        }
        Step::Partial(info(p, received))
    }
}
