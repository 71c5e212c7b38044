//! The MQTT sink against real brokers: the Mosquitto of this machine (`MQTT_TEST_URL`,
//! e.g. `mqtt://127.0.0.1:1883`) and a second Mosquitto that the test starts, stops and restarts itself.
//! Without the variable at build time they are ignored, and `cargo test` says so with the reason; with
//! it set, an unreachable broker fails them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;
use alarm_center_sinks::mqtt::MqttConfig;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::mpsc;

pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// The broker of `MQTT_TEST_URL` (read when the tests run, else when they were built).
pub(crate) fn broker_url() -> String {
    std::env::var("MQTT_TEST_URL")
        .ok()
        .or(option_env!("MQTT_TEST_URL").map(str::to_owned))
        .expect("MQTT_TEST_URL must name a broker, e.g. mqtt://127.0.0.1:1883")
}

pub(crate) fn host_port(url: &str) -> (String, u16) {
    let rest = url.trim_start_matches("mqtt://");
    let (h, p) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
    (h.to_owned(), p.parse().unwrap())
}

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u32 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// A subscriber that forwards (topic, payload, retained) of everything under `filters`.
pub(crate) async fn subscriber(
    host: &str,
    port: u16,
    id: &str,
    clean: bool,
    filters: &[String],
) -> (
    AsyncClient,
    mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
) {
    let mut options = MqttOptions::new(id, host, port);
    options.set_clean_session(clean);
    options.set_keep_alive(Duration::from_secs(5));
    // Whole events of up to a few MiB (mqtt_outsized).
    options.set_max_packet_size(16 << 20, 16 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let (tx, rx) = mpsc::unbounded_channel();
    let (ready_tx, mut ready) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec(), p.retain));
                }
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    for f in filters {
        client.subscribe(f.clone(), QoS::AtLeastOnce).await.unwrap();
        tokio::time::timeout(WAIT, ready.recv())
            .await
            .expect("no SubAck: is the broker running?");
    }
    (client, rx)
}

pub(crate) async fn until_topic(
    rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
    seen: &mut Vec<(String, Vec<u8>, bool)>,
    pred: impl Fn(&str, &[u8]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    if seen.iter().any(|(t, p, _)| pred(t, p)) {
        return;
    }
    loop {
        let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            let topics: Vec<_> = seen
                .iter()
                .map(|(t, p, _)| format!("{t} {}", String::from_utf8_lossy(p)))
                .collect();
            panic!("message not seen; got {topics:#?}");
        };
        let done = pred(&m.0, &m.1);
        seen.push(m);
        if done {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mqtt_test_url),
    ignore = "MQTT_TEST_URL was not set when the tests were built (needs a Mosquitto broker; .ci/run sets it)"
)]
async fn topics_states_and_home_assistant_discovery() {
    let url = broker_url();
    let (host, port) = host_port(&url);
    let root = unique("ac-test");
    let prefix = format!("{root}-ha");
    let (ha, mut rx) = subscriber(
        &host,
        port,
        &unique("sub"),
        true,
        &[format!("{root}/#"), format!("{prefix}/#")],
    )
    .await;
    let mut t = start(|c| {
        c.sinks.mqtt = Some(MqttConfig {
            url: url.clone(),
            client_id: unique("ac"),
            topic_root: root.clone(),
            discovery_prefix: prefix.clone(),
            ..MqttConfig::default()
        });
        c.auto_clear
            .insert("VideoMotion".into(), Duration::from_secs(120));
    })
    .await;
    let mut seen = Vec::new();
    until_topic(&mut rx, &mut seen, |t, p| {
        t == format!("{root}/status") && p == b"online"
    })
    .await;
    let mut device = t.connect().await;
    let start = r#"{"method":"client.notifyEventStream","params":{"SerialNo":"MQ-1","eventList":[{"Code":"VideoMotion","Action":"Start","Index":0},{"Code":"CrossLineDetection","Action":"Pulse","Index":1}]}}"#;
    send(&mut device, &encode::dhip(1, 1, start)).await;
    send(
        &mut device,
        &encode::dhip(
            1,
            2,
            r#"{"Code":"VideoMotion","Action":"Stop","Index":0,"SerialNo":"MQ-1"}"#,
        ),
    )
    .await;
    t.events(4, WAIT).await;
    until_topic(&mut rx, &mut seen, |t, p| {
        t == format!("{root}/MQ-1/1/VideoMotion") && p == b"OFF"
    })
    .await;
    until_topic(&mut rx, &mut seen, |t, _| {
        t == format!("{root}/MQ-1/2/CrossLineDetection/event")
    })
    .await;
    let find = |topic: String| -> serde_json::Value {
        let (_, p, _) = seen
            .iter()
            .find(|(t, _, _)| *t == topic)
            .unwrap_or_else(|| panic!("no {topic}"));
        serde_json::from_slice(p).unwrap_or(serde_json::Value::Null)
    };
    assert!(seen
        .iter()
        .any(|(t, p, _)| *t == format!("{root}/MQ-1/availability") && p == b"online"));
    assert!(seen
        .iter()
        .any(|(t, p, _)| *t == format!("{root}/MQ-1/1/VideoMotion") && p == b"ON"));
    let events: Vec<_> = seen
        .iter()
        .filter(|(t, _, _)| *t == format!("{root}/MQ-1/event"))
        .map(|(_, p, _)| serde_json::from_slice::<serde_json::Value>(p).unwrap())
        .collect();
    let codes = code_actions(&events);
    assert_eq!(
        codes,
        [
            "DeviceOnline pulse",
            "VideoMotion start",
            "CrossLineDetection pulse",
            "VideoMotion stop"
        ]
    );
    let motion = find(format!(
        "{prefix}/binary_sensor/alarm-center_MQ-1/1_VideoMotion/config"
    ));
    assert_eq!(motion["device_class"], "motion");
    assert_eq!(
        motion["off_delay"], 120,
        "auto-clear gives Home Assistant an off_delay"
    );
    assert_eq!(motion["state_topic"], format!("{root}/MQ-1/1/VideoMotion"));
    assert_eq!(motion["device"]["identifiers"][0], "alarm-center_MQ-1");
    let connectivity = find(format!(
        "{prefix}/binary_sensor/alarm-center_MQ-1/connectivity/config"
    ));
    assert_eq!(connectivity["device_class"], "connectivity");
    let pulse = find(format!(
        "{prefix}/event/alarm-center_MQ-1/2_CrossLineDetection/config"
    ));
    assert_eq!(pulse["event_types"][0], "pulse");
    // Home Assistant restarting asks for discovery again.
    let configs = |seen: &[(String, Vec<u8>, bool)]| {
        seen.iter()
            .filter(|(t, _, _)| t.ends_with("/config"))
            .count()
    };
    let unique: std::collections::BTreeSet<_> = seen
        .iter()
        .filter(|(t, _, _)| t.ends_with("/config"))
        .map(|(t, _, _)| t.clone())
        .collect();
    assert_eq!(unique.len(), 3, "{unique:?}");
    let before = configs(&seen);
    ha.publish(
        format!("{prefix}/status"),
        QoS::AtLeastOnce,
        false,
        "online",
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while configs(&seen) < before + unique.len() {
        let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            panic!("discovery not republished")
        };
        seen.push(m);
    }
    t.server.shutdown().await.unwrap();
    until_topic(&mut rx, &mut Vec::new(), |t, p| {
        t == format!("{root}/status") && p == b"offline"
    })
    .await;
}

/// One alarm event from each device.
async fn send_round(devices: &mut [tokio::net::TcpStream], round: u32) {
    for (d, stream) in devices.iter_mut().enumerate() {
        // Each (device, index) alternates start and stop, so that no event repeats a state.
        let action = if (round / 4).is_multiple_of(2) {
            "Start"
        } else {
            "Stop"
        };
        let frame = encode::bare_json(&format!(
            r#"{{"Code":"AlarmLocal","Action":"{action}","Index":{},"SerialNo":"R-{d}"}}"#,
            round % 4
        ));
        send(stream, &frame).await;
    }
}

/// A Mosquitto of the test's own, with persistence so that a durable subscriber's queue survives a restart.
pub(crate) struct Broker {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

/// A free port for a broker the test restarts, below the kernel's ephemeral range (32768–60999 by
/// default): while the broker is down, an outgoing connection of another test could otherwise take
/// the port as its source port, and the restarted broker could not listen on it.
pub(crate) fn broker_port() -> u16 {
    loop {
        let port = 20_000 + (rand_suffix() % 10_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Broker {
    pub(crate) fn start(port: u16, dir: &std::path::Path) -> Broker {
        Broker::start_with(port, dir, "")
    }

    /// A broker with `extra` lines in its configuration.
    pub(crate) fn start_with(port: u16, dir: &std::path::Path, extra: &str) -> Broker {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nmax_queued_messages 100000\n{extra}", dir.display()),
        )
        .unwrap();
        let child =
            std::process::Command::new(if std::path::Path::new("/usr/sbin/mosquitto").exists() {
                "/usr/sbin/mosquitto"
            } else {
                "mosquitto"
            })
            .arg("-c")
            .arg(&conf)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto");
        let mut child = child;
        let mut listening = false;
        for _ in 0..100 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("mosquitto on port {port} exited at start: {status}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                listening = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            listening,
            "mosquitto does not listen on port {port} after 5 s"
        );
        Broker {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    fn stop(mut self) -> (u16, std::path::PathBuf) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        (self.port, self.dir.clone())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mqtt_test_url),
    ignore = "MQTT_TEST_URL was not set when the tests were built (needs a Mosquitto broker; .ci/run sets it)"
)]
async fn broker_down_during_ingest_loses_nothing_and_keeps_order() {
    broker_url();
    let dir = tempfile::tempdir().unwrap();
    let port = broker_port();
    let broker = Broker::start(port, dir.path());
    let root = unique("ac-restart");
    let sub_id = unique("durable");
    let (_c, mut rx) = subscriber(
        "127.0.0.1",
        port,
        &sub_id,
        false,
        &[format!("{root}/+/event")],
    )
    .await;
    let mut t = start(|c| {
        c.sinks.mqtt = Some(MqttConfig {
            url: format!("mqtt://127.0.0.1:{port}"),
            client_id: unique("ac"),
            topic_root: root.clone(),
            discovery: false,
            ..MqttConfig::default()
        });
    })
    .await;
    let mut devices = Vec::new();
    for _ in 0..3 {
        devices.push(t.connect().await);
    }
    let mut committed: Vec<alarm_center_store::StoredEvent> = Vec::new();
    for round in 0..30 {
        send_round(&mut devices, round).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    committed.extend(t.events(90 + 3, WAIT).await);
    // The broker goes away while devices keep sending.
    let (port, bdir) = broker.stop();
    drop(_c);
    for round in 30..60 {
        send_round(&mut devices, round).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    committed.extend(t.events(90, WAIT).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let broker = Broker::start(port, &bdir);
    let (_c2, mut rx2) = subscriber(
        "127.0.0.1",
        port,
        &sub_id,
        false,
        &[format!("{root}/+/event")],
    )
    .await;
    for round in 60..70 {
        send_round(&mut devices, round).await;
    }
    committed.extend(t.events(30, WAIT).await);
    // Every committed event arrives at least once, in log order per device.
    let wanted: BTreeMap<i64, String> = committed
        .iter()
        .map(|e| (e.id, e.event.device.clone()))
        .collect();
    let mut got: HashMap<i64, u32> = HashMap::new();
    let mut order: HashMap<String, Vec<i64>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < wanted.len() {
        // What the first subscriber received before the outage comes first: a random pick between
        // the two would interleave old and new deliveries and break the per-device order checked below.
        let message = tokio::select! {
            biased;
            m = rx.recv() => m,
            m = rx2.recv() => m,
            () = tokio::time::sleep_until(deadline) => panic!("{} of {} events arrived", got.len(), wanted.len()),
        };
        let Some((_, payload, _)) = message else {
            continue;
        };
        let e: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let id = e["id"].as_i64().unwrap();
        if wanted.contains_key(&id) && *got.entry(id).and_modify(|n| *n += 1).or_insert(1) == 1 {
            order
                .entry(e["device"].as_str().unwrap().to_owned())
                .or_default()
                .push(id);
        }
    }
    for (device, ids) in &order {
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(ids, &sorted, "{device}: out of order");
    }
    let duplicates = got.values().filter(|n| **n > 1).count();
    eprintln!(
        "{} events delivered, {duplicates} more than once (QoS 1 resend after the outage)",
        got.len()
    );
    t.server.shutdown().await.unwrap();
    let cursor = alarm_center_store::Db::open_read_only(t.dir.path())
        .unwrap()
        .sink_cursor("mqtt")
        .unwrap()
        .unwrap();
    assert_eq!(cursor.position, *wanted.keys().max().unwrap());
    drop(broker);
}

/// Runs a command, panicking with its output when it fails.
fn run(cmd: &str, args: &[&str], dir: &std::path::Path) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mqtt_test_url),
    ignore = "MQTT_TEST_URL was not set when the tests were built (needs a Mosquitto broker; .ci/run sets it)"
)]
async fn tls_with_username_and_password() {
    broker_url();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A private CA, a certificate for localhost, and a password file.
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=alarm-center test CA",
        ],
        d,
    );
    run(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        d,
    );
    std::fs::write(
        d.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
        d,
    );
    run(
        "mosquitto_passwd",
        &["-c", "-b", "passwords", "alarm", "s3cret"],
        d,
    );
    let port = broker_port();
    let conf = d.join("tls.conf");
    std::fs::write(
        &conf,
        format!(
            "user root\nlistener {port} 127.0.0.1\ncafile {0}/ca.crt\ncertfile {0}/server.crt\nkeyfile {0}/server.key\nallow_anonymous false\npassword_file {0}/passwords\n",
            d.display()
        ),
    )
    .unwrap();
    let mosquitto = if std::path::Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    };
    let mut broker = std::process::Command::new(mosquitto)
        .arg("-c")
        .arg(&conf)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let root = unique("ac-tls");
    let t = start(|c| {
        c.sinks.mqtt = Some(MqttConfig {
            url: format!("mqtts://127.0.0.1:{port}"),
            ca_file: Some(d.join("ca.crt")),
            username: Some("alarm".into()),
            password: Some("s3cret".into()),
            client_id: unique("ac"),
            topic_root: root.clone(),
            discovery: false,
            ..MqttConfig::default()
        });
    })
    .await;
    // A subscriber over the same TLS listener.
    let mut options = MqttOptions::new(unique("tls-sub"), "127.0.0.1", port);
    options.set_credentials("alarm", "s3cret");
    let ca = std::fs::read(d.join("ca.crt")).unwrap();
    options.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Simple {
            ca,
            alpn: None,
            client_auth: None,
        },
    ));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    client
        .subscribe(format!("{root}/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut device = t.connect().await;
    send(
        &mut device,
        &encode::bare_json(
            r#"{"Code":"VideoMotion","Action":"Start","Index":0,"SerialNo":"TLS-1"}"#,
        ),
    )
    .await;
    let got = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Event::Incoming(Incoming::Publish(p))) = eventloop.poll().await {
                if p.topic == format!("{root}/TLS-1/1/VideoMotion") {
                    return p.payload.to_vec();
                }
            }
        }
    })
    .await
    .expect("no state over TLS");
    assert_eq!(got, b"ON");
    t.server.shutdown().await.unwrap();
    let _ = broker.kill();
    let _ = broker.wait();
}

/// Messages received so far, by kind.
#[derive(Default)]
struct Tally {
    /// Discovery config topics, in arrival order (a topic twice means it was published twice).
    configs: Vec<String>,
    /// Retained `ON`/`OFF` state messages.
    states: usize,
}

impl Tally {
    /// Counts what `rx` brings until `done` holds, then for `quiet` more (to see anything published
    /// after it, such as a repeated config), failing after `within`.
    async fn until(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
        prefix: &str,
        within: Duration,
        quiet: Duration,
        done: impl Fn(&Tally) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + within;
        while !done(self) {
            let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                panic!(
                    "not done within {within:?}: {} configs, {} states",
                    self.configs.len(),
                    self.states
                );
            };
            self.add(m, prefix);
        }
        while let Ok(Some(m)) = tokio::time::timeout(quiet, rx.recv()).await {
            self.add(m, prefix);
        }
    }

    fn add(&mut self, (topic, payload, _): (String, Vec<u8>, bool), prefix: &str) {
        if topic.starts_with(&format!("{prefix}/")) && topic.ends_with("/config") {
            self.configs.push(topic);
        } else if payload == b"ON" || payload == b"OFF" {
            self.states += 1;
        }
    }

    /// Config topics published more than once.
    fn repeated(&self) -> Vec<(&str, usize)> {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &self.configs {
            *count.entry(t).or_default() += 1;
        }
        count.into_iter().filter(|(_, n)| *n > 1).collect()
    }
}

/// A server whose MQTT sink publishes under a unique root and prefix, with a subscriber to its discovery
/// configs and its state topics (`<root>/<device>/<channel>/<code>`).
async fn discovery_setup(
    url: &str,
    adjust: impl FnOnce(&mut MqttConfig),
) -> (
    TestServer,
    AsyncClient,
    mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
    String,
    String,
) {
    let (host, port) = host_port(url);
    let root = unique("ac-disc");
    let prefix = format!("{root}-ha");
    let (ha, rx) = subscriber(
        &host,
        port,
        &unique("sub"),
        true,
        &[format!("{prefix}/#"), format!("{root}/+/+/+")],
    )
    .await;
    let mut mqtt = MqttConfig {
        url: url.to_owned(),
        client_id: unique("ac"),
        topic_root: root.clone(),
        discovery_prefix: prefix.clone(),
        ..MqttConfig::default()
    };
    adjust(&mut mqtt);
    let t = start(|c| {
        c.sinks.mqtt = Some(mqtt);
        // One connection per device, all from 127.0.0.1: above the default per-address limits,
        // which these tests are not about.
        c.server.max_connections_per_ip = 5000;
        c.server.max_new_devices_per_ip_per_minute = 0;
        c.server.max_new_devices_per_minute = 0;
    })
    .await;
    (t, ha, rx, root, prefix)
}

/// `start` frames of `entities` distinct entities (channels 1..=entities) of device `serial`.
fn entity_frames(serial: &str, entities: usize) -> Vec<u8> {
    let mut frames = Vec::new();
    for index in 0..entities {
        frames.extend(encode::bare_json(&format!(
            r#"{{"Code":"AlarmLocal","Action":"Start","Index":{index},"SerialNo":"{serial}"}}"#
        )));
    }
    frames
}

/// Issue 9, item 9: each new entity used to republish every discovery config of its device (N x M^2/2
/// configs for N devices of M entities). Now exactly one config per entity and one connectivity config
/// per device are published; Home Assistant's `online` still gets everything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mqtt_test_url),
    ignore = "MQTT_TEST_URL was not set when the tests were built (needs a Mosquitto broker; .ci/run sets it)"
)]
async fn discovery_publishes_each_new_entity_once() {
    let url = broker_url();
    const DEVICES: usize = 12;
    const ENTITIES: usize = 10;
    let (mut t, ha, mut rx, _root, prefix) = discovery_setup(&url, |_| {}).await;
    let mut streams = Vec::new();
    for d in 0..DEVICES {
        let mut stream = t.connect().await;
        send(&mut stream, &entity_frames(&format!("DISC-{d}"), ENTITIES)).await;
        streams.push(stream);
    }
    t.events(DEVICES * (ENTITIES + 1), WAIT).await;
    let mut tally = Tally::default();
    tally
        .until(&mut rx, &prefix, WAIT, Duration::from_millis(500), |t| {
            t.states == DEVICES * ENTITIES
        })
        .await;
    eprintln!(
        "{DEVICES} devices x {ENTITIES} entities: {} discovery configs published",
        tally.configs.len()
    );
    assert_eq!(tally.repeated(), Vec::<(&str, usize)>::new());
    assert_eq!(
        tally.configs.len(),
        DEVICES * (ENTITIES + 1),
        "one config per entity and one connectivity config per device"
    );
    let connectivity = tally
        .configs
        .iter()
        .filter(|t| t.ends_with("/connectivity/config"))
        .count();
    assert_eq!(connectivity, DEVICES);
    // Home Assistant (re)starting gets every config again.
    ha.publish(
        format!("{prefix}/status"),
        QoS::AtLeastOnce,
        false,
        "online",
    )
    .await
    .unwrap();
    let mut again = Tally::default();
    again
        .until(&mut rx, &prefix, WAIT, Duration::from_millis(500), |t| {
            t.configs.len() >= DEVICES * (ENTITIES + 1)
        })
        .await;
    assert_eq!(again.configs.len(), DEVICES * (ENTITIES + 1));
    assert_eq!(again.repeated(), Vec::<(&str, usize)>::new());
    t.server.shutdown().await.unwrap();
    drop(streams);
}

/// Issue 9, item 9: 4,000 devices with random serials held MQTT delivery at 25-73 events/s, because
/// every new entity rebuilt the discovery configs of all devices. 2,000 events from 1,000 new devices
/// now go out with one config each (and one connectivity config per device), well within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mqtt_test_url),
    ignore = "MQTT_TEST_URL was not set when the tests were built (needs a Mosquitto broker; .ci/run sets it)"
)]
async fn thousand_new_devices_are_delivered_quickly() {
    let url = broker_url();
    const DEVICES: usize = 1000;
    let (mut t, _ha, mut rx, _root, prefix) = discovery_setup(&url, |_| {}).await;
    let began = std::time::Instant::now();
    let mut streams = Vec::new();
    for d in 0..DEVICES {
        let mut stream = t.connect().await;
        send(&mut stream, &entity_frames(&format!("MANY-{d}"), 1)).await;
        streams.push(stream);
    }
    t.events(2 * DEVICES, Duration::from_secs(60)).await;
    let mut tally = Tally::default();
    tally
        .until(
            &mut rx,
            &prefix,
            Duration::from_secs(60),
            Duration::from_millis(500),
            |t| t.states == DEVICES,
        )
        .await;
    let elapsed = began.elapsed();
    eprintln!(
        "{DEVICES} new devices, {} events: {} discovery configs, delivered in {elapsed:?}",
        2 * DEVICES,
        tally.configs.len()
    );
    assert_eq!(tally.repeated(), Vec::<(&str, usize)>::new());
    assert_eq!(tally.configs.len(), 2 * DEVICES);
    assert!(elapsed < Duration::from_secs(60), "{elapsed:?}");
    t.server.shutdown().await.unwrap();
    drop(streams);
}

/// Past `discovery-max-devices` and `discovery-max-entities-per-device`, events are still published on
/// their topics; only no new discovery config is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(mqtt_test_url),
    ignore = "MQTT_TEST_URL was not set when the tests were built (needs a Mosquitto broker; .ci/run sets it)"
)]
async fn discovery_bounds_keep_events_flowing() {
    let url = broker_url();
    let (mut t, _ha, mut rx, root, prefix) = discovery_setup(&url, |m| {
        m.discovery_max_devices = 2;
        m.discovery_max_entities_per_device = 3;
    })
    .await;
    let mut streams = Vec::new();
    for d in 0..3 {
        let mut stream = t.connect().await;
        // One device at a time, so that the first two are the ones announced.
        send(&mut stream, &entity_frames(&format!("BOUND-{d}"), 5)).await;
        t.events(6, WAIT).await;
        streams.push(stream);
    }
    let mut tally = Tally::default();
    tally
        .until(&mut rx, &prefix, WAIT, Duration::from_millis(500), |t| {
            t.states == 3 * 5
        })
        .await;
    assert_eq!(tally.repeated(), Vec::<(&str, usize)>::new());
    let mut configs = tally.configs.clone();
    configs.sort();
    let mut expected: Vec<String> = (0..2)
        .flat_map(|d| {
            let node = format!("{prefix}/binary_sensor/alarm-center_BOUND-{d}");
            [format!("{node}/connectivity/config")]
                .into_iter()
                .chain((1..=3).map(move |c| format!("{node}/{c}_AlarmLocal/config")))
        })
        .collect();
    expected.sort();
    assert_eq!(configs, expected);
    // The device past the bound has its states all the same.
    let (host, port) = host_port(&url);
    let (_c, mut retained) = subscriber(
        &host,
        port,
        &unique("sub"),
        true,
        &[format!("{root}/BOUND-2/+/+")],
    )
    .await;
    let mut states = Vec::new();
    while states.len() < 5 {
        let Ok(Some((topic, payload, _))) = tokio::time::timeout(WAIT, retained.recv()).await
        else {
            panic!("retained states of BOUND-2: {states:?}");
        };
        states.push(format!("{topic} {}", String::from_utf8_lossy(&payload)));
    }
    assert!(states.iter().all(|s| s.ends_with(" ON")), "{states:?}");
    t.server.shutdown().await.unwrap();
    drop(streams);
}
