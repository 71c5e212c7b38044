//! The log thread (decision D65): records are formatted where they happen and queued; one thread
//! escapes them (D26) and writes all that are waiting with one buffered write to standard error, so a
//! connection thread neither makes a `write(2)` per line nor waits for a slow reader of standard error
//! until the queue is full. Nothing is dropped: a full queue makes the logging thread wait, as a full
//! pipe did before. Nothing is printed anywhere else (standard output may carry the `--stdout` sink's
//! JSON), and shutdown waits for the queue to be written, without a deadline shorter than a stuck
//! standard error deserves.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use crate::log_escape::escape_controls;

/// Records waiting at most (about 3 MB at 200 bytes a line; the queue's slots, ~0.5 MB, are taken
/// at start).
const QUEUE_LINES: usize = 16_384;

/// The log thread's pause after each batch, while records gather. Without it the thread slept and was
/// woken for nearly every record under load (one connection per alarm: 73,000 wake-ups in 5 s, each
/// a futex call by the logging thread and a context switch, 20 % more CPU per alarm than writing
/// from the connection threads); with it at most 500 batches a second, each record out within ~2 ms.
const BATCH_PAUSE: Duration = Duration::from_millis(2);

/// How long [`LogThread::finish`] waits for the queue to be written: only a standard error that
/// accepts nothing for this long loses the records still queued.
const FINISH_WAIT: Duration = Duration::from_secs(10);

enum Message {
    /// One formatted record, with its final newline.
    Record(Vec<u8>),
    /// Write everything queued before this, flush, then say so.
    Finish(mpsc::Sender<()>),
}

/// Where the formatter hands records: the queue of the log thread.
pub(crate) struct Queue(SyncSender<Message>);

/// The log thread; [`LogThread::finish`] writes what is queued.
pub(crate) struct LogThread {
    queue: SyncSender<Message>,
}

/// Starts the log thread writing to standard error. Falls back to writing each record directly
/// (escaped) when the thread cannot start.
pub(crate) fn start() -> (Queue, LogThread) {
    let (queue, records) = mpsc::sync_channel(QUEUE_LINES);
    // Should the thread not start, the receiver goes with its closure: every send then fails and the
    // record is written directly.
    let _ = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_records(&records, &mut io::BufWriter::new(io::stderr())));
    (Queue(queue.clone()), LogThread { queue })
}

/// The thread's loop: waits for a record, writes it and every record already waiting, flushes, then
/// pauses for [`BATCH_PAUSE`] so that the next batch gathers without waking it.
fn write_records(records: &Receiver<Message>, out: &mut impl Write) {
    while let Ok(first) = records.recv() {
        for message in std::iter::once(first).chain(records.try_iter()) {
            match message {
                Message::Record(record) => write_escaped(out, &record),
                Message::Finish(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
        }
        // Standard error closed or full disk: nothing to tell it to.
        let _ = out.flush();
        std::thread::sleep(BATCH_PAUSE);
    }
}

/// One record, its control characters escaped (D26); write errors are ignored (nowhere to report
/// them).
fn write_escaped(out: &mut impl Write, record: &[u8]) {
    // Most records are printable ASCII (and tabs) up to their final newline: nothing to replace or
    // escape, written as they are without decoding them character by character (about 30
    // instructions a byte, docs/benchmarks.md §22).
    let body = record.strip_suffix(b"\n").unwrap_or(record);
    if body
        .iter()
        .all(|&b| (b' '..=b'~').contains(&b) || b == b'\t')
    {
        let _ = out.write_all(record);
        return;
    }
    let text = String::from_utf8_lossy(record);
    let _ = out.write_all(escape_controls(&text).as_bytes());
}

impl LogThread {
    /// Waits (at most [`FINISH_WAIT`]) until every record queued so far is written and flushed.
    pub(crate) fn finish(self) {
        let (done, written) = mpsc::channel();
        if self.queue.send(Message::Finish(done)).is_ok() {
            let _ = written.recv_timeout(FINISH_WAIT);
        }
    }
}

/// Queues one record per `write` call (the formatter writes each record with one `write_all`).
pub(crate) struct Queued<'a>(&'a SyncSender<Message>);

impl Write for Queued<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Err(mpsc::SendError(Message::Record(record))) =
            self.0.send(Message::Record(buf.to_vec()))
        {
            // No log thread: write it here, as before the thread existed.
            write_escaped(&mut io::stderr(), &record);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Queue {
    type Writer = Queued<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Queued(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Output shared with the test, which reads it while the thread still runs.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_record_is_written_as_escape_controls_writes_it_whatever_its_bytes() {
        // Records of pieces that are plain, controls, tabs, newlines, C1 controls, other UTF-8 and
        // bytes that are not UTF-8, in every order a small generator (xorshift) makes.
        let pieces: [&[u8]; 12] = [
            b"plain text ",
            b"\t",
            b"\n",
            b"\r",
            b"\x1b[31m",
            b"\x7f",
            "\u{85}".as_bytes(),
            "\u{9f}\u{a0}".as_bytes(),
            "é€".as_bytes(),
            b"\xff",
            b"\xc2",
            b"~ ",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5_000 {
            let mut record = Vec::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for k in 0..(state % 6) {
                record.extend_from_slice(pieces[((state >> (8 * k + 8)) % 12) as usize]);
            }
            if state & 1 == 0 {
                record.push(b'\n');
            }
            let mut written = Vec::new();
            write_escaped(&mut written, &record);
            let expected = escape_controls(&String::from_utf8_lossy(&record)).into_owned();
            assert_eq!(written, expected.as_bytes(), "{record:?}");
        }
    }

    #[test]
    fn records_are_written_escaped_in_order_and_finish_waits_for_them() {
        // A small queue: the loggers wait for room, nothing is dropped.
        let (queue, records) = mpsc::sync_channel(4);
        let out = Shared::default();
        let mut thread_out = io::BufWriter::new(out.clone());
        let writer = std::thread::spawn(move || write_records(&records, &mut thread_out));
        let make = Queue(queue.clone());
        for i in 0..1_000 {
            let line = format!("line {i} serial=EVIL\nforged\n");
            make.make_writer().write_all(line.as_bytes()).unwrap();
        }
        // Everything queued is written once `finish` returns, while the thread still runs.
        LogThread { queue }.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1_000);
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(*line, format!("line {i} serial=EVIL\\nforged"));
        }
        drop(make);
        writer.join().unwrap();
    }
}
