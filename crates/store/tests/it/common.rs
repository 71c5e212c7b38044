//! Helpers shared by the store's test modules.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Log lines written while `f` runs.
pub(crate) fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    (result, text)
}

/// An alarm start of device `SN1` received at `at` (Unix ms), carried by the batch's frame `frame`.
pub(crate) fn event(at: i64, code: &str, frame: Option<usize>) -> alarm_center_store::NewEvent {
    alarm_center_store::NewEvent {
        frame: frame.map_or(
            alarm_center_store::FrameRef::None,
            alarm_center_store::FrameRef::InBatch,
        ),
        device: "SN1".into(),
        code: code.into(),
        action: "start".into(),
        index: Some(0),
        channel: Some(1),
        channel_name: None,
        kind: "alarm".into(),
        device_time: None,
        received_at: at,
        data: Some(r#"{"a":1}"#.into()),
        synthetic: None,
    }
}

/// Frames 1–3 (10, 20 and 30 zero bytes) in a store made with an older schema by `conn`.
pub(crate) fn old_frames(conn: &rusqlite::Connection) {
    for (id, len) in [(1, 10), (2, 20), (3, 30)] {
        conn.execute(
            "INSERT INTO frames (id, received_at, stream_offset, protocol, kind, body_format, bytes)
             VALUES (?1, ?1, 0, 'junk', 'unknown', 'binary', zeroblob(?2))",
            [id, len],
        )
        .unwrap();
    }
}
