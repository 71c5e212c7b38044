//! `alarm-center decode`: captured traffic in, one JSON object per frame out.

use std::collections::HashMap;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;

use alarm_center_capture::{self as capture, CaptureEvent, InputKind};
use alarm_center_proto::record::StreamInfo;
use alarm_center_proto::{Decoder, DecoderConfig, Frame, FrameRecord, Session, DEFAULT_MAX_FRAME};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

/// How to read the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum InputFormat {
    /// Sniff: pcap/pcapng by magic number, hex dump if the text parses as one, else raw bytes.
    Auto,
    /// A hex dump: plain hex, xxd, hexdump -C, Wireshark, or the samples' style; blank lines separate streams.
    Hex,
    /// Raw bytes of one stream.
    Bin,
    /// A pcap or pcapng capture; TCP streams are reassembled.
    Pcap,
}

#[derive(Debug, Args)]
pub(crate) struct DecodeArgs {
    /// Input format.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    input: InputFormat,
    /// pcap only: decode the direction of each TCP stream towards this port (default: both directions of every stream).
    #[arg(long)]
    port: Option<u16>,
    /// Largest frame kept whole, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME)]
    max_frame: usize,
    /// Also print each frame's bytes as hex (`"raw"`).
    #[arg(long)]
    raw: bool,
    /// The input file, or `-` (the default) for standard input.
    #[arg(default_value = "-")]
    file: PathBuf,
}

/// One stream being decoded.
struct StreamDecoder {
    decoder: Decoder,
    session: Session,
    info: StreamInfo,
}

/// Writes decoded frames as JSON Lines.
struct Output<W: Write> {
    out: W,
    raw: bool,
    frames: u64,
}

impl<W: Write> Output<W> {
    fn frame(
        &mut self,
        session: &mut Session,
        frame: &Frame,
        stream: Option<&StreamInfo>,
    ) -> Result<()> {
        let decoded = session.decode(frame);
        let record = FrameRecord {
            frame,
            decoded: &decoded,
            stream,
            include_raw: self.raw,
        };
        serde_json::to_writer(&mut self.out, &record)?;
        self.out.write_all(b"\n")?;
        self.frames += 1;
        Ok(())
    }
}

impl StreamDecoder {
    fn new(config: DecoderConfig, info: StreamInfo) -> StreamDecoder {
        StreamDecoder {
            decoder: Decoder::new(config),
            session: Session::new(),
            info,
        }
    }

    fn feed<W: Write>(&mut self, data: &[u8], out: &mut Output<W>) -> Result<()> {
        let stream = (self.info != StreamInfo::default()).then_some(&self.info);
        for frame in self.decoder.feed(data) {
            out.frame(&mut self.session, &frame, stream)?;
        }
        Ok(())
    }

    fn finish<W: Write>(&mut self, out: &mut Output<W>) -> Result<()> {
        let stream = (self.info != StreamInfo::default()).then_some(&self.info);
        for frame in self.decoder.finish() {
            out.frame(&mut self.session, &frame, stream)?;
        }
        Ok(())
    }
}

fn read_input(file: &PathBuf) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if file.as_os_str() == "-" {
        io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    }
    Ok(bytes)
}

pub(crate) fn run(args: &DecodeArgs) -> Result<()> {
    let bytes = read_input(&args.file)?;
    let config = DecoderConfig {
        max_frame: args.max_frame,
    };
    let format = match args.input {
        InputFormat::Auto => match capture::sniff(&bytes) {
            InputKind::Pcap | InputKind::Pcapng => InputFormat::Pcap,
            InputKind::Hex => InputFormat::Hex,
            InputKind::Binary => InputFormat::Bin,
        },
        other => other,
    };
    if args.port.is_some() && format != InputFormat::Pcap {
        bail!("--port applies to pcap input only");
    }
    let stdout = io::stdout();
    let mut out = Output {
        out: BufWriter::new(stdout.lock()),
        raw: args.raw,
        frames: 0,
    };
    match format {
        InputFormat::Bin => {
            let mut stream = StreamDecoder::new(config, StreamInfo::default());
            stream.feed(&bytes, &mut out)?;
            stream.finish(&mut out)?;
        }
        InputFormat::Hex => {
            let text = std::str::from_utf8(&bytes).context("hex input is not UTF-8 text")?;
            let streams = capture::hex::parse_hex(text).context("reading hex dump")?;
            let numbered = streams.len() > 1;
            for (i, hex) in streams.iter().enumerate() {
                let info = StreamInfo {
                    index: numbered.then_some(i as u32 + 1),
                    ..StreamInfo::default()
                };
                let mut stream = StreamDecoder::new(config, info);
                stream.feed(&hex.bytes, &mut out)?;
                stream.finish(&mut out)?;
            }
        }
        InputFormat::Pcap => decode_pcap(&bytes, args.port, config, &mut out)?,
        InputFormat::Auto => unreachable!("auto was resolved above"),
    }
    out.out.flush()?;
    Ok(())
}

fn decode_pcap<W: Write>(
    bytes: &[u8],
    port: Option<u16>,
    config: DecoderConfig,
    out: &mut Output<W>,
) -> Result<()> {
    let mut streams: HashMap<u32, StreamDecoder> = HashMap::new();
    let mut failure: Option<anyhow::Error> = None;
    let summary = capture::pcap::read_capture(bytes, port, |event| {
        if failure.is_some() {
            return;
        }
        let (info, ts) = match &event {
            CaptureEvent::Data { stream, ts, .. }
            | CaptureEvent::Gap { stream, ts, .. }
            | CaptureEvent::End { stream, ts } => (*stream, ts),
        };
        let stream = streams.entry(info.id).or_insert_with(|| {
            let info = StreamInfo {
                index: Some(info.id),
                src: Some(info.src.to_string()),
                dst: Some(info.dst.to_string()),
                ts: None,
            };
            StreamDecoder::new(config, info)
        });
        stream.info.ts = Some(ts.to_rfc3339());
        let result = match event {
            CaptureEvent::Data { data, .. } => stream.feed(data, out),
            CaptureEvent::Gap { missing, .. } => {
                eprintln!(
                    "alarm-center: warning: stream {} ({} -> {}): {missing} bytes missing from the capture; decoding restarts after the gap",
                    info.id, info.src, info.dst
                );
                stream.finish(out)
            }
            CaptureEvent::End { .. } => stream.finish(out),
        };
        if let Err(err) = result {
            failure = Some(err);
        }
    })
    .context("reading capture")?;
    if let Some(err) = failure {
        return Err(err);
    }
    if summary.skipped_packets > 0 {
        eprintln!(
            "alarm-center: note: {} of {} packets were not TCP or could not be parsed",
            summary.skipped_packets, summary.packets
        );
    }
    Ok(())
}
