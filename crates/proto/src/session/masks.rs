//! The DVRIP 0x69 mask diff (the last mask per alarm type and channel group), and the direct decoding
//! of the most frequent frame of a busy DVRIP device: an upload whose body is a format-0 mask.

use std::borrow::Cow;

use super::{Body, BodyFormat, Decoded, Header, Kind, Session};
use crate::dvrip;
use crate::event::{Action, DeviceInfo, Event, JsonText};
use crate::frame::{le_u32, Frame, Protocol};

/// The header and body of `frame` when it is a whole DVRIP 0x69 upload whose body is a format-0 mask
/// of whole 32-bit words: what [`Session::decode_mask`] reads.
pub(super) fn mask_upload(frame: &Frame) -> Option<(&[u8; dvrip::HEADER_LEN], &[u8])> {
    if frame.protocol != Protocol::Dvrip || frame.error.is_some() {
        return None;
    }
    let h: &[u8; dvrip::HEADER_LEN] = frame.header().try_into().ok()?;
    let body = &frame.bytes[dvrip::HEADER_LEN..];
    let mask = h[0] == dvrip::CMD_ALARM
        && h[dvrip::BODY_FORMAT_AT] == 0
        && !body.is_empty()
        && body.len().is_multiple_of(4);
    mask.then_some((h, body))
}

impl Session {
    /// Decodes a mask upload (header `h` and `body` from [`mask_upload`]) exactly as the general path
    /// would, built in one piece in the returned value instead of filled in and moved.
    pub(super) fn decode_mask(&mut self, h: &[u8; dvrip::HEADER_LEN], body: &[u8]) -> Decoded {
        let alarm_type = h[dvrip::ALARM_TYPE_AT];
        let group = h[dvrip::CHANNEL_GROUP_AT];
        let mask = le_u32(body, 0).unwrap_or(0);
        let more: Vec<u32> = body[4..]
            .chunks_exact(4)
            .map(|w| le_u32(w, 0).unwrap_or(0))
            .collect();
        let events = if more.is_empty() {
            self.mask_events(alarm_type, group, &[mask])
        } else {
            let words: Vec<u32> = std::iter::once(mask).chain(more.iter().copied()).collect();
            self.mask_events(alarm_type, group, &words)
        };
        Decoded {
            command: Some(u32::from(dvrip::CMD_ALARM)),
            kind: if alarm_type == dvrip::ALARM_TYPE_REPORT {
                Kind::Report
            } else {
                Kind::Alarm
            },
            body_format: BodyFormat::Mask,
            header: Header::Dvrip(dvrip::Header::alarm(h)),
            body: Body::Mask { mask, more },
            events,
            device: DeviceInfo::default(),
            keepalive_period: None,
            error: None,
            fragment: None,
        }
    }

    /// The events of a mask upload's `words`: what [`Session::apply_masks`] pushes, with the code of a
    /// named alarm type written as a constant.
    fn mask_events(&mut self, alarm_type: u8, group: u8, words: &[u32]) -> Vec<Event> {
        let mut events = Vec::new();
        match dvrip::alarm_code(alarm_type) {
            Some(name) => self.diff_words(alarm_type, group, words, |new, changed, base| {
                push_changes(&mut events, new, changed, base, |action, index| Event {
                    code: Cow::Borrowed(name),
                    action,
                    index,
                    device_time: None,
                    data: None,
                });
            }),
            None => self.apply_masks(alarm_type, group, words, None, None, &mut events),
        }
        events
    }

    /// Diffs each word against the last mask of its (type, group) and emits start/stop events.
    pub(super) fn apply_masks(
        &mut self,
        alarm_type: u8,
        group: u8,
        words: &[u32],
        device_time: Option<Box<str>>,
        data: Option<JsonText>,
        events: &mut Vec<Event>,
    ) {
        if alarm_type == dvrip::ALARM_TYPE_REPORT {
            return;
        }
        let code: Cow<'static, str> = match dvrip::alarm_code(alarm_type) {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!("DvripAlarmType{alarm_type}")),
        };
        // One loop, built twice: a binary mask's events have a static code and no time or data, so that
        // their fields are constants instead of clones.
        match (&code, &device_time, &data) {
            (Cow::Borrowed(name), None, None) => {
                self.diff_words(alarm_type, group, words, |new, changed, base| {
                    push_changes(events, new, changed, base, |action, index| Event {
                        code: Cow::Borrowed(name),
                        action,
                        index,
                        device_time: None,
                        data: None,
                    });
                });
            }
            _ => self.diff_words(alarm_type, group, words, |new, changed, base| {
                push_changes(events, new, changed, base, |action, index| Event {
                    code: code.clone(),
                    action,
                    index,
                    device_time: device_time.clone(),
                    data: data.clone(),
                });
            }),
        }
    }

    /// Diffs each word against the last mask of its (type, group), storing it, and calls `changes`
    /// with the new mask, its bits that changed and the index of its bit 0, for each word that changed.
    /// The self-report (type 120) has no state.
    #[inline(always)]
    fn diff_words(
        &mut self,
        alarm_type: u8,
        group: u8,
        words: &[u32],
        mut changes: impl FnMut(u32, u32, i64),
    ) {
        if alarm_type == dvrip::ALARM_TYPE_REPORT {
            return;
        }
        for (j, &word) in words.iter().enumerate() {
            let Some(group) = group.checked_add(j as u8).filter(|_| j < 256) else {
                break;
            };
            // Disk full is a boolean: non-zero means full.
            let new = if alarm_type == dvrip::ALARM_TYPE_DISK_FULL {
                u32::from(word != 0)
            } else {
                word
            };
            let old = self.swap_mask((alarm_type, group), new);
            let changed = old ^ new;
            if changed != 0 {
                changes(new, changed, 32 * i64::from(group));
            }
        }
    }

    /// Stores `new` as the mask of `key`, returning the previous one (0 when first seen).
    fn swap_mask(&mut self, key: (u8, u8), new: u32) -> u32 {
        match self.masks.iter_mut().find(|(k, _)| *k == key) {
            Some((_, mask)) => std::mem::replace(mask, new),
            None => {
                self.masks.push((key, new));
                0
            }
        }
    }
}

/// Pushes a start (bit set in `new`) or stop event for each bit set in `changed`, lowest bit first, with
/// index `base` + bit.
#[inline(always)]
fn push_changes(
    events: &mut Vec<Event>,
    new: u32,
    mut changed: u32,
    base: i64,
    event: impl Fn(Action, Option<i64>) -> Event,
) {
    let count = changed.count_ones();
    if events.capacity() == 0 {
        // Allocated at its size directly, which costs less than the growth `extend` would go through.
        *events = Vec::with_capacity(count as usize);
    }
    // A counted range: `extend` knows the exact length and writes each event in place.
    events.extend((0..count).map(|_| {
        let bit = changed.trailing_zeros();
        changed &= changed.wrapping_sub(1);
        let action = if new >> bit & 1 != 0 {
            Action::Start
        } else {
            Action::Stop
        };
        event(action, Some(i64::from(bit) + base))
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::finish;

    /// A 0x69 format-0 frame with `words` as its body, and `other` in a header byte no field covers.
    fn mask_frame(alarm_type: u8, group: u8, words: &[u32], other: u8) -> Frame {
        let mut bytes = crate::encode::dvrip_mask(alarm_type, group, 0);
        bytes.truncate(dvrip::HEADER_LEN);
        bytes[20] = other;
        bytes[4..8].copy_from_slice(&(4 * words.len() as u32).to_le_bytes());
        bytes.extend(words.iter().flat_map(|w| w.to_le_bytes()));
        Frame::whole(Protocol::Dvrip, bytes, dvrip::HEADER_LEN)
    }

    /// `decode` of a mask upload gives what the general reading of a 0x69 frame gives, state included.
    #[test]
    fn a_mask_upload_decodes_as_the_general_path_does() {
        let (mut fast, mut general) = (Session::new(), Session::new());
        let frames = [
            mask_frame(2, 0, &[0b101], 0),
            mask_frame(2, 0, &[0b110], 7),
            mask_frame(2, 0, &[0b110, 1, 0x8000_0000], 0),
            mask_frame(2, 1, &[0, 1], 0),
            mask_frame(6, 0, &[0x8000], 0),
            mask_frame(6, 0, &[0x4000], 0),
            mask_frame(6, 0, &[0], 0),
            mask_frame(42, 3, &[0xFFFF_FFFF], 1),
            mask_frame(42, 3, &[0xF0], 0),
            mask_frame(dvrip::ALARM_TYPE_REPORT, 0, &[5], 0),
            mask_frame(3, 254, &[1, 2, 3, 4, 5], 0),
            mask_frame(3, 254, &[0, 0, 0, 0, 0], 0),
        ];
        for frame in &frames {
            let (h, body) = mask_upload(frame).expect("a mask upload");
            assert_eq!(body.len(), frame.bytes.len() - dvrip::HEADER_LEN);
            assert_eq!(h[..], frame.bytes[..dvrip::HEADER_LEN]);
            let mut out = Decoded::new(
                Some(u32::from(dvrip::CMD_ALARM)),
                Header::Dvrip(dvrip::Header::parse(frame)),
            );
            general.dvrip_alarm(frame, dvrip::HEADER_LEN, &mut out);
            assert_eq!(fast.decode(frame), finish(out));
            assert_eq!(fast.masks(), general.masks());
        }
    }

    /// Frames that are not mask uploads are left to the general path.
    #[test]
    fn only_whole_format_0_uploads_of_whole_words_are_mask_uploads() {
        let mut frame = mask_frame(2, 0, &[1], 0);
        assert!(mask_upload(&frame).is_some());
        let bytes = frame.bytes.to_vec();
        type Edit = fn(&mut Vec<u8>, &mut Frame);
        let edits: [(&str, Edit); 6] = [
            ("format 1", |b, _| b[dvrip::BODY_FORMAT_AT] = 1),
            ("no body", |b, _| b.truncate(dvrip::HEADER_LEN)),
            ("partial word", |b, _| b.push(0)),
            ("other command", |b, _| b[0] = dvrip::CMD_JSON),
            ("short header", |_, f| f.header_len = 16),
            ("error", |_, f| {
                f.error = Some(crate::FrameError::Unrecognized)
            }),
        ];
        for (what, edit) in edits {
            let mut b = bytes.clone();
            let mut f = mask_frame(2, 0, &[1], 0);
            edit(&mut b, &mut f);
            f.bytes = b.into();
            assert!(mask_upload(&f).is_none(), "{what}");
        }
        frame.protocol = Protocol::Dhip;
        assert!(mask_upload(&frame).is_none(), "DHIP");
    }
}
