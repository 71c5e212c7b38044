//! The MQTT sink against real brokers: the Mosquitto of this machine (`MQTT_TEST_URL`,
//! e.g. `mqtt://127.0.0.1:1883`) and a second Mosquitto that the test starts, stops and restarts itself.
//! Without the variable these tests say so and pass; with it set, an unreachable broker fails them.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use alarm_center_proto::encode;
use alarm_center_server::sinks::mqtt::MqttConfig;
use common::*;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

fn broker_url() -> Option<String> {
    match std::env::var("MQTT_TEST_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            eprintln!("MQTT_TEST_URL is not set: MQTT test not run");
            None
        }
    }
}

fn host_port(url: &str) -> (String, u16) {
    let rest = url.trim_start_matches("mqtt://");
    let (h, p) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
    (h.to_owned(), p.parse().unwrap())
}

fn unique(prefix: &str) -> String {
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
async fn subscriber(
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

async fn until_topic(
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
async fn topics_states_and_home_assistant_discovery() {
    let Some(url) = broker_url() else { return };
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
    let codes: Vec<_> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["code"].as_str().unwrap(),
                e["action"].as_str().unwrap()
            )
        })
        .collect();
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
        let action = if (round / 4) % 2 == 0 {
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
struct Broker {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Broker {
    fn start(port: u16, dir: &std::path::Path) -> Broker {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("user root\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nmax_queued_messages 100000\n", dir.display()),
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
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
async fn broker_down_during_ingest_loses_nothing_and_keeps_order() {
    if broker_url().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
    let wanted: BTreeMap<i64, String> =
        committed.iter().map(|e| (e.id, e.device.clone())).collect();
    let mut got: HashMap<i64, u32> = HashMap::new();
    let mut order: HashMap<String, Vec<i64>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < wanted.len() {
        let message = tokio::select! {
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
async fn tls_with_username_and_password() {
    if broker_url().is_none() {
        return;
    }
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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
