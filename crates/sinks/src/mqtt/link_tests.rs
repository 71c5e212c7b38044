//! The MQTT connection against a scripted broker on a real socket (the sink's tests in
//! crates/server/tests/it/mqtt.rs run it against Mosquitto).

use std::time::Duration;

use bytes::BytesMut;
use rumqttc::{ConnAck, ConnectReturnCode, LastWill, Packet, PubAck, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::link::{connect, outsized_header, Link, Options, Outsized, Request};
use super::session::{Message, Note};

fn options(port: u16, keep_alive: Duration, max_inflight: u16) -> Options {
    Options {
        host: "127.0.0.1".into(),
        port,
        tls: None,
        client_id: "link-test".into(),
        keep_alive,
        max_inflight,
        max_message: 256 * 1024,
        will: LastWill::new("t/status", "offline", QoS::AtLeastOnce, true),
        login: None,
    }
}

/// The broker's side of one connection: reads whole packets, writes packets.
struct Broker {
    stream: TcpStream,
    read: BytesMut,
}

impl Broker {
    async fn accept(listener: &TcpListener) -> Broker {
        let (stream, _) = listener.accept().await.unwrap();
        Broker {
            stream,
            read: BytesMut::new(),
        }
    }

    /// The next packet, or `None` if none comes within `wait`.
    async fn packet(&mut self, wait: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match Packet::read(&mut self.read, 1 << 20) {
                Ok(packet) => return Some(packet),
                Err(rumqttc::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("bad packet from the client: {e}"),
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.read));
            match read.await {
                Ok(Ok(0)) | Err(_) => return None,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("{e}"),
            }
        }
    }

    async fn send(&mut self, packet: Packet) {
        let mut bytes = BytesMut::new();
        packet.write(&mut bytes, 16 << 20).unwrap();
        self.stream.write_all(&bytes).await.unwrap();
    }

    /// Answers the CONNECT with `code`.
    async fn greet(&mut self, code: ConnectReturnCode) {
        let packet = self.packet(Duration::from_secs(5)).await;
        assert!(matches!(packet, Some(Packet::Connect(_))), "{packet:?}");
        self.send(Packet::ConnAck(ConnAck::new(code, false))).await;
    }
}

/// Connects a link to a scripted broker that answers its CONNECT with `code`.
async fn connect_to(
    code: ConnectReturnCode,
    keep_alive: Duration,
    max_inflight: u16,
) -> (Result<Link, String>, Broker) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let broker = async {
        let mut broker = Broker::accept(&listener).await;
        broker.greet(code).await;
        broker
    };
    let options = options(port, keep_alive, max_inflight);
    tokio::join!(connect(&options), broker)
}

async fn connected(keep_alive: Duration, max_inflight: u16) -> (Link, Broker) {
    let (link, broker) = connect_to(ConnectReturnCode::Success, keep_alive, max_inflight).await;
    (link.expect("connected"), broker)
}

fn publish(n: i64) -> Request {
    let message = Message {
        topic: format!("t/{n}"),
        payload: n.to_string().into_bytes(),
        retain: n % 2 == 0,
    };
    Request::Publish(message, Some(n))
}

#[tokio::test]
async fn a_refused_connection_says_why() {
    let (link, _broker) =
        connect_to(ConnectReturnCode::BadUserNamePassword, Duration::ZERO, 10).await;
    let error = link.err().expect("refused");
    assert!(error.contains("BadUserNamePassword"), "{error}");
}

#[tokio::test]
async fn no_more_publishes_than_the_window_await_acknowledgement() {
    let (link, mut broker) = connected(Duration::ZERO, 3).await;
    let (requests, queued) = mpsc::channel(100);
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let task = tokio::spawn(link.run(queued, notes_tx, |_| {}));
    for n in 1..=5 {
        requests.send(publish(n)).await.unwrap();
    }
    let mut pkids = Vec::new();
    for n in 1..=3 {
        match broker.packet(Duration::from_secs(5)).await {
            Some(Packet::Publish(p)) => {
                assert_eq!(p.topic, format!("t/{n}"));
                assert_eq!(p.qos, QoS::AtLeastOnce);
                assert_eq!(p.retain, n % 2 == 0);
                pkids.push(p.pkid);
            }
            other => panic!("expected publish {n}, got {other:?}"),
        }
    }
    // The window is full: nothing more until an acknowledgement.
    assert!(broker.packet(Duration::from_millis(300)).await.is_none());
    broker.send(Packet::PubAck(PubAck::new(pkids[1]))).await;
    assert!(matches!(notes.recv().await, Some(Note::Acked(2))));
    match broker.packet(Duration::from_secs(5)).await {
        Some(Packet::Publish(p)) => {
            assert_eq!(p.topic, "t/4");
            assert!(!pkids.contains(&p.pkid), "packet id {} reused", p.pkid);
        }
        other => panic!("expected publish 4, got {other:?}"),
    }
    assert!(broker.packet(Duration::from_millis(300)).await.is_none());
    task.abort();
}

#[tokio::test]
async fn a_broker_that_answers_no_ping_is_taken_as_gone() {
    let (link, mut broker) = connected(Duration::from_secs(1), 10).await;
    let (_requests, queued) = mpsc::channel(1);
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    tokio::spawn(link.run(queued, notes_tx, |_| {}));
    let ping = broker.packet(Duration::from_secs(5)).await;
    assert!(matches!(ping, Some(Packet::PingReq)), "{ping:?}");
    let note = tokio::time::timeout(Duration::from_secs(5), notes.recv()).await;
    match note {
        Ok(Some(Note::Down(why))) => assert!(why.contains("PINGRESP"), "{why}"),
        _ => panic!("the link did not report the silent broker"),
    }
}

#[tokio::test]
async fn the_brokers_publishes_are_acknowledged_and_handed_over() {
    let (link, mut broker) = connected(Duration::ZERO, 10).await;
    let (_requests, queued) = mpsc::channel(1);
    let (notes_tx, _notes) = mpsc::unbounded_channel();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    tokio::spawn(link.run(queued, notes_tx, move |p| {
        let _ = seen_tx.send((p.topic.clone(), p.payload.to_vec()));
    }));
    let mut online = rumqttc::Publish::new("homeassistant/status", QoS::AtLeastOnce, "online");
    online.pkid = 7;
    broker.send(Packet::Publish(online)).await;
    let ack = broker.packet(Duration::from_secs(5)).await;
    assert_eq!(ack, Some(Packet::PubAck(PubAck::new(7))));
    assert_eq!(
        seen.recv().await,
        Some(("homeassistant/status".into(), b"online".to_vec()))
    );
}

#[tokio::test]
async fn the_link_ends_when_its_requests_close() {
    let (link, _broker) = connected(Duration::ZERO, 10).await;
    let (requests, queued) = mpsc::channel(1);
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let task = tokio::spawn(link.run(queued, notes_tx, |_| {}));
    drop(requests);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task ended")
        .unwrap();
    assert!(notes.recv().await.is_none(), "nothing to report");
}

#[tokio::test]
async fn a_lost_connection_is_reported() {
    let (link, broker) = connected(Duration::ZERO, 10).await;
    let (_requests, queued) = mpsc::channel(1);
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    tokio::spawn(link.run(queued, notes_tx, |_| {}));
    drop(broker);
    match tokio::time::timeout(Duration::from_secs(5), notes.recv()).await {
        Ok(Some(Note::Down(why))) => assert!(why.contains("closed"), "{why}"),
        _ => panic!("the closed connection was not reported"),
    }
}

/// A packet past the link's 1 MiB limit (a huge retained message on Home Assistant's status topic,
/// published by anyone with the right) used to fail the connection, and again on every reconnect:
/// MQTT delivery stopped for good. It is skipped now, acknowledged if it asks for it, and the
/// packets after it are read as before.
#[tokio::test]
async fn an_outsized_packet_from_the_broker_is_skipped_and_acknowledged() {
    let (link, mut broker) = connected(Duration::ZERO, 10).await;
    let (requests, queued) = mpsc::channel(10);
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    tokio::spawn(link.run(queued, notes_tx, move |p| {
        let _ = seen_tx.send((p.topic.clone(), p.payload.len()));
    }));
    let mut huge = rumqttc::Publish::new(
        "homeassistant/status",
        QoS::AtLeastOnce,
        vec![b'x'; 3 << 20],
    );
    huge.pkid = 9;
    huge.retain = true;
    broker.send(Packet::Publish(huge)).await;
    let at_most_once =
        rumqttc::Publish::new("homeassistant/status", QoS::AtMostOnce, vec![b'y'; 2 << 20]);
    broker.send(Packet::Publish(at_most_once)).await;
    let mut online = rumqttc::Publish::new("homeassistant/status", QoS::AtLeastOnce, "online");
    online.pkid = 10;
    broker.send(Packet::Publish(online)).await;
    assert_eq!(
        broker.packet(Duration::from_secs(5)).await,
        Some(Packet::PubAck(PubAck::new(9)))
    );
    assert_eq!(
        broker.packet(Duration::from_secs(5)).await,
        Some(Packet::PubAck(PubAck::new(10)))
    );
    assert_eq!(
        seen.recv().await,
        Some(("homeassistant/status".into(), 6)),
        "only the small message is handed over"
    );
    // The connection still carries publishes both ways.
    requests.send(publish(1)).await.unwrap();
    match broker.packet(Duration::from_secs(5)).await {
        Some(Packet::Publish(p)) => broker.send(Packet::PubAck(PubAck::new(p.pkid))).await,
        other => panic!("expected a publish, got {other:?}"),
    }
    assert!(matches!(notes.recv().await, Some(Note::Acked(1))));
}

#[test]
fn an_outsized_header_is_read_once_it_has_arrived() {
    let mut bytes = BytesMut::new();
    let mut publish = rumqttc::Publish::new("a/topic", QoS::AtLeastOnce, vec![0; 200_000]);
    publish.pkid = 0x1234;
    Packet::Publish(publish).write(&mut bytes, 1 << 20).unwrap();
    // Fixed header 1 + 3 bytes, topic 2 + 7, packet id 2.
    let header = 15;
    for cut in 0..header {
        assert_eq!(outsized_header(&bytes[..cut]), Ok(None), "cut at {cut}");
    }
    let expected = Outsized {
        length: bytes.len(),
        pkid: Some(0x1234),
        topic: "a/topic".into(),
    };
    assert_eq!(outsized_header(&bytes[..header]), Ok(Some(expected)));

    let mut bytes = BytesMut::new();
    let publish = rumqttc::Publish::new("t", QoS::AtMostOnce, vec![0; 200]);
    Packet::Publish(publish).write(&mut bytes, 1 << 20).unwrap();
    let header = outsized_header(&bytes).unwrap().unwrap();
    assert_eq!((header.length, header.pkid), (bytes.len(), None));
    // Not a publish: the length alone.
    let length = outsized_header(&[0x90, 0x80, 0x80, 0x01]).unwrap().unwrap();
    assert_eq!((length.length, length.pkid), (4 + (1 << 14), None));
    // Five bytes of remaining length; a publish whose topic overruns it.
    assert!(outsized_header(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).is_err());
    assert!(outsized_header(&[0x30, 0x03, 0x00, 0x05, b'a']).is_err());
}
