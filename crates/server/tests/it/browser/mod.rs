//! The web UI in a real browser (Debian's chromium driven through chromedriver's WebDriver protocol):
//! it loads, sees a simulated device come online, shows its alarm live, and decodes a pasted capture;
//! history search, its time format and its width at 1400 px, ids that wrap at their separators, the
//! frame inspector (below the sticky header; no download of a frame no longer stored), a device's
//! connection history and "new" badge, the sinks page (a valid snippet when there is no sink) and the
//! token form. Reads `BROWSER_TEST_CHROMEDRIVER` (and `BROWSER_TEST_CHROMIUM`); without it at build time the
//! tests are ignored with that reason, with it a missing or broken browser fails them. The tests take turns (one browser at a
//! time).

mod driver;

use std::time::Duration;

use crate::common::*;
use alarm_center_proto::encode;
use driver::Driver;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
/// One browser at a time: the tests take turns (two cores; a browser each would make them flaky).
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A browser session and the profile directory it uses. The variables are read when the tests run,
/// else when they were built (without `BROWSER_TEST_CHROMEDRIVER` at build time the tests are ignored).
async fn browser() -> (Driver, tempfile::TempDir) {
    let chromedriver = std::env::var("BROWSER_TEST_CHROMEDRIVER")
        .ok()
        .or(option_env!("BROWSER_TEST_CHROMEDRIVER").map(str::to_owned))
        .expect("BROWSER_TEST_CHROMEDRIVER must name chromedriver, e.g. /usr/bin/chromedriver");
    let chromium = std::env::var("BROWSER_TEST_CHROMIUM")
        .ok()
        .or(option_env!("BROWSER_TEST_CHROMIUM").map(str::to_owned))
        .unwrap_or_else(|| "/usr/bin/chromium".into());
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver::start(&chromedriver, &chromium, profile.path()).await;
    (driver, profile)
}

fn ui_of(t: &TestServer) -> String {
    format!("http://{}/", t.server.api_addr().unwrap())
}

/// A device's keepAlive with `serial` (DHIP).
fn keepalive(serial: &str) -> Vec<u8> {
    let body = json!({"id": 1, "method": "global.keepAlive", "params": {"timeout": 60, "SerialNo": serial}});
    encode::dhip(1, 1, &body.to_string())
}

/// An alarm of `serial` (DHIP notifyEventStream); `data` goes in the event's `Data`.
fn alarm(serial: &str, code: &str, action: &str, data: Value) -> Vec<u8> {
    let body = json!({"method": "client.notifyEventStream", "params": {"SerialNo": serial,
        "eventList": [{"Code": code, "Action": action, "Index": 0, "Data": data}]}});
    encode::dhip(1, 2, &body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(browser_test),
    ignore = "BROWSER_TEST_CHROMEDRIVER was not set when the tests were built (needs chromium and chromedriver; .ci/run sets it)"
)]
async fn the_ui_shows_devices_live_alarms_and_decodes_a_pasted_capture() {
    let _turn = TURN.lock().await;
    let (driver, _profile) = browser().await;
    let mut t = start(|_| {}).await;
    let ui = ui_of(&t);
    driver.go(&ui).await;
    driver.click("#nav-devices").await;
    // A simulated device comes online.
    let mut device = t.connect().await;
    send(
        &mut device,
        &encode::dhip(
            1,
            1,
            r#"{"id":1,"method":"global.keepAlive","params":{"timeout":60,"SerialNo":"UI-CAM-1"}}"#,
        ),
    )
    .await;
    t.events(1, WAIT).await;
    driver
        .find(r#".device-row[data-device="UI-CAM-1"][data-state="online"]"#)
        .await;
    // Its alarm appears live.
    driver.click("#nav-live").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    send(&mut device, &encode::dhip(1, 2, r#"{"method":"client.notifyEventStream","params":{"SerialNo":"UI-CAM-1","eventList":[{"Code":"VideoMotion","Action":"Start","Index":0}]}}"#)).await;
    driver
        .find(r#".event-row[data-code="VideoMotion"][data-action="start"][data-device="UI-CAM-1"]"#)
        .await;
    // A pasted capture is decoded.
    driver.click("#nav-frames").await;
    let hex = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/sample-xm-alarmcenter-humandetect.hex"
    ))
    .unwrap();
    driver.type_into("#paste-input", &hex).await;
    driver.click("#paste-decode").await;
    driver
        .find(r#"#paste-result .decoded-frame[data-protocol="xm"][data-kind="alarm"]"#)
        .await;
    // An HTTP-mode request shows its request line and header fields.
    let hex = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/http-notifyevent.hex"
    ))
    .unwrap();
    driver.clear("#paste-input").await;
    driver.type_into("#paste-input", &hex).await;
    driver.click("#paste-decode").await;
    let head = driver
        .text(r#"#paste-result .decoded-frame[data-protocol="http"][data-kind="alarm"] .http-head"#)
        .await;
    assert!(
        head.contains("POST /cgi-bin/NotifyEvent HTTP/1.1"),
        "{head}"
    );
    assert!(
        head.contains("Content-Type") && head.contains("application/json"),
        "{head}"
    );
    let shot = driver.screenshot().await;
    eprintln!("screenshot: {shot}");
    driver.quit().await;
    t.server.shutdown().await.unwrap();
}

/// A 128-character device id (the longest an id gets) with a separator every 10 characters.
fn long_id() -> String {
    let id: String = (0..13).map(|i| format!("segment{i:02}.")).collect();
    id[..128].to_owned()
}

/// "YYYY-MM-DD HH:MM:SS" (possibly wrapped between date and time).
fn is_table_time(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => c.is_ascii_whitespace(),
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// "YYYY-MM-DDTHH:MM:SS.mmm+HH:MM (local)": ISO 8601 with the zone's offset.
fn is_full_local_time(line: &str) -> bool {
    let Some(time) = line.strip_suffix(" (local)") else {
        return false;
    };
    let b = time.as_bytes();
    b.len() == 29 && b[10] == b'T' && b[19] == b'.' && matches!(b[23], b'+' | b'-') && b[26] == b':'
}

/// The history rows shown: (event id, device, code, time text, time title).
async fn history_rows(driver: &Driver) -> Vec<(i64, String, String, String, String)> {
    let rows = driver
        .execute(
            "return [...document.querySelectorAll('#history-body tr.history-row')].map((r) => {
               const t = r.querySelector('td time');
               return [Number(r.dataset.id), r.dataset.device, r.dataset.code, t.textContent, t.title];
             });",
            json!([]),
        )
        .await;
    serde_json::from_value(rows).unwrap()
}

/// Submits the history form with `code` and `device` and waits for the answer.
async fn search_history(driver: &Driver, device: &str, code: &str) {
    driver.clear("#h-device").await;
    driver.clear("#h-code").await;
    if !device.is_empty() {
        driver.type_into("#h-device", device).await;
    }
    if !code.is_empty() {
        driver.type_into("#h-code", code).await;
    }
    driver
        .execute(
            "document.getElementById('history-status').textContent = ''; return true;",
            json!([]),
        )
        .await;
    driver.click("#history-form button[type=submit]").await;
    driver
        .wait_for(
            "history search answered",
            "const s = document.getElementById('history-status').textContent;
             return s !== '' && s !== 'Searching…';",
            json!([]),
        )
        .await;
}

/// Widths of the history table, its container and the page, and cells whose content overflows.
async fn history_widths(driver: &Driver) -> Value {
    driver
        .execute(
            "const table = document.querySelector('#view-history table');
             const box = table.parentElement;
             const root = document.documentElement;
             const overflowing = [...table.querySelectorAll('td')]
               .filter((td) => td.scrollWidth > td.clientWidth + 1)
               .map((td) => `${td.dataset.label}: ${td.scrollWidth} > ${td.clientWidth}`);
             return { table: table.scrollWidth, box: box.clientWidth, page: root.scrollWidth,
                      view: root.clientWidth, inner: window.innerWidth, overflowing,
                      columns: [...table.querySelectorAll('thead th')]
                        .map((th) => `${th.textContent} ${th.offsetWidth}`) };",
            json!([]),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(browser_test),
    ignore = "BROWSER_TEST_CHROMEDRIVER was not set when the tests were built (needs chromium and chromedriver; .ci/run sets it)"
)]
async fn history_search_one_time_format_wrapped_ids_and_the_table_fits_1400px() {
    let _turn = TURN.lock().await;
    let (driver, _profile) = browser().await;
    let mut t = start(|_| {}).await;
    let long = long_id();
    let mut seen = Vec::new();
    let mut cam = t.connect().await;
    send(&mut cam, &keepalive("UI-CAM-A")).await;
    let mut far = t.connect().await;
    send(&mut far, &keepalive(&long)).await;
    seen.extend(t.events(2, WAIT).await);
    let wide = "x".repeat(400);
    send(
        &mut cam,
        &alarm(
            "UI-CAM-A",
            "VideoMotion",
            "Start",
            json!({"LocaleTime": "2024-05-01 12:00:00", "Region": "door"}),
        ),
    )
    .await;
    send(
        &mut cam,
        &alarm(
            "UI-CAM-A",
            "CrossLineDetection",
            "Start",
            json!({"Name": wide}),
        ),
    )
    .await;
    send(
        &mut far,
        &alarm(&long, "VideoMotion", "Start", json!({"Name": wide})),
    )
    .await;
    send(&mut far, &alarm(&long, "VideoMotion", "Stop", json!({}))).await;
    seen.extend(t.events(4, WAIT).await);
    let ids_where = |pred: &dyn Fn(&alarm_center_store::StoredEvent) -> bool| {
        let mut ids: Vec<i64> = seen.iter().filter(|e| pred(e)).map(|e| e.id).collect();
        ids.sort_by(|a, b| b.cmp(a)); // newest first, as the table
        ids
    };

    driver.window(1400, 900).await;
    driver.go(&format!("{}#history", ui_of(&t))).await;
    driver.find("#history-body tr.history-row").await;

    // Search by code: exactly the matching event.
    search_history(&driver, "", "CrossLineDetection").await;
    let rows = history_rows(&driver).await;
    let want = ids_where(&|e| e.event.code == "CrossLineDetection");
    assert_eq!(want.len(), 1);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        want,
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.2 == "CrossLineDetection"), "{rows:?}");
    // Search by device: exactly that device's events, newest first.
    search_history(&driver, &long, "").await;
    let rows = history_rows(&driver).await;
    let want = ids_where(&|e| e.event.device == long);
    assert!(want.len() >= 3, "{want:?}");
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        want,
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.1 == long), "{rows:?}");
    // Both filters: the device's VideoMotion only.
    search_history(&driver, &long, "VideoMotion").await;
    let rows = history_rows(&driver).await;
    let want = ids_where(&|e| e.event.device == long && e.event.code == "VideoMotion");
    assert_eq!(want.len(), 2);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        want,
        "{rows:?}"
    );

    // Everything, for the format and the width.
    search_history(&driver, "", "").await;
    let rows = history_rows(&driver).await;
    assert_eq!(rows.len(), seen.len(), "{rows:?}");
    // One time format; the full time (zone, UTC, device time) on hover; no column of device times.
    for (_, _, code, text, title) in &rows {
        assert!(is_table_time(text), "time {text:?} of {code}");
        let lines: Vec<&str> = title.lines().collect();
        assert!(
            lines.first().is_some_and(|l| is_full_local_time(l)),
            "title {title:?} of {code}"
        );
        assert!(
            lines.iter().any(|l| l.ends_with("Z (UTC)")),
            "title {title:?} of {code}"
        );
    }
    let with_device_time = rows
        .iter()
        .find(|r| r.1 == "UI-CAM-A" && r.2 == "VideoMotion")
        .unwrap();
    assert!(
        with_device_time
            .4
            .contains("device time: 2024-05-01T12:00:00"),
        "{with_device_time:?}"
    );
    let heads = driver
        .execute(
            "return [...document.querySelectorAll('#view-history thead th')].map((th) => th.textContent);",
            json!([]),
        )
        .await;
    assert!(
        !heads.as_array().unwrap().iter().any(|h| h == "Device time"),
        "{heads}"
    );

    // The table fits 1400 px and narrower: no horizontal overflow, no cell cut off.
    for width in [1400, 1100, 800] {
        driver.window(width, 900).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let w = history_widths(&driver).await;
        let n = |k: &str| w[k].as_i64().unwrap();
        assert!(n("table") <= n("box"), "at {width} px: {w}");
        assert!(n("page") <= n("view"), "at {width} px: {w}");
        assert!(
            w["overflowing"].as_array().unwrap().is_empty(),
            "at {width} px: {w}"
        );
    }
    // At 800 px the 128-character id wraps, and only at its separators: every piece between two
    // break opportunities stays on one line.
    let wrap = driver
        .execute(
            "const row = [...document.querySelectorAll('#history-body tr.history-row')]
               .find((r) => r.dataset.device === arguments[0]);
             const id = row.querySelector('td[data-label=\"Device\"] .id')
               || row.querySelector('td[data-label=\"Device\"] span');
             const split = [...id.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE)
               .filter((n) => { const r = document.createRange(); r.selectNodeContents(n);
                                return r.getClientRects().length > 1; })
               .map((n) => n.textContent);
             return { lines: id.getClientRects().length, split, text: id.textContent };",
            json!([long]),
        )
        .await;
    assert!(wrap["lines"].as_i64().unwrap() > 1, "{wrap}");
    assert!(wrap["split"].as_array().unwrap().is_empty(), "{wrap}");
    assert_eq!(wrap["text"], long.as_str());
    driver.quit().await;
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(browser_test),
    ignore = "BROWSER_TEST_CHROMEDRIVER was not set when the tests were built (needs chromium and chromedriver; .ci/run sets it)"
)]
async fn the_frame_inspector_clears_the_header_and_a_missing_frame_has_no_download() {
    let _turn = TURN.lock().await;
    let (driver, _profile) = browser().await;
    let mut t = start(|_| {}).await;
    let mut cam = t.connect().await;
    send(&mut cam, &keepalive("UI-CAM-F")).await;
    let burst: Vec<u8> = (0..40)
        .flat_map(|i| alarm("UI-CAM-F", "VideoMotion", "Pulse", json!({"n": i})))
        .collect();
    send(&mut cam, &burst).await;
    let seen = t.events(41, WAIT).await;
    let alarms: Vec<_> = seen
        .iter()
        .filter(|e| e.event.code == "VideoMotion")
        .collect();
    let (oldest, newest) = (alarms[0], alarms[alarms.len() - 1]);
    let (kept, gone) = (newest.frame_id.unwrap(), oldest.frame_id.unwrap());
    // Retention removed the oldest alarm's frame (as store.frames-max-age would).
    let db = rusqlite::Connection::open(t.dir.path().join("alarm-center.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        db.execute("DELETE FROM frames WHERE id = ?1", [gone])
            .unwrap(),
        1
    );
    drop(db);

    driver.window(1200, 800).await;
    let ui = ui_of(&t);
    driver.go(&format!("{ui}#frames")).await;
    driver
        .wait_for(
            "the stored frames listed",
            "return document.querySelectorAll('#frames-body tr.frame-row').length >= 40;",
            json!([]),
        )
        .await;
    // Open the newest alarm's frame from its event in History.
    driver.click("#nav-history").await;
    let link = format!(
        r#"#history-body tr.history-row[data-id="{}"] td[data-label="Frame"] a"#,
        newest.id
    );
    driver.click(&link).await;
    driver.find("#inspector-body .decoded-frame").await;
    let place = driver
        .execute(
            "const title = document.getElementById('inspector-title').getBoundingClientRect();
             const header = document.querySelector('header.top').getBoundingClientRect();
             const download = document.getElementById('inspector-download');
             return { title: title.top, header: header.bottom, scrolled: window.scrollY,
                      hash: location.hash, download: download.offsetParent !== null,
                      href: download.getAttribute('href') };",
            json!([]),
        )
        .await;
    assert_eq!(place["hash"], format!("#frame/{kept}"), "{place}");
    // The page did scroll to the inspector (else the next check would prove nothing) …
    assert!(place["scrolled"].as_f64().unwrap() > 0.0, "{place}");
    // … and its title is below the sticky header, not under it.
    assert!(
        place["title"].as_f64().unwrap() >= place["header"].as_f64().unwrap(),
        "{place}"
    );
    assert_eq!(place["download"], true, "{place}");
    assert_eq!(place["href"], format!("api/frames/{kept}/raw"), "{place}");

    // The oldest alarm's frame is gone: the inspector says so and offers no download.
    driver.click("#nav-history").await;
    let link = format!(
        r#"#history-body tr.history-row[data-id="{}"] td[data-label="Frame"] a"#,
        oldest.id
    );
    driver.click(&link).await;
    driver
        .wait_for(
            "the missing frame reported",
            "const s = document.getElementById('inspector-status');
             return location.hash === arguments[0] && s.classList.contains('error');",
            json!([format!("#frame/{gone}")]),
        )
        .await;
    let missing = driver
        .execute(
            "return { status: document.getElementById('inspector-status').textContent,
                      download: document.getElementById('inspector-download').offsetParent !== null };",
            json!([]),
        )
        .await;
    assert_eq!(missing["download"], false, "{missing}");
    assert!(
        missing["status"].as_str().unwrap().contains("not stored"),
        "{missing}"
    );
    driver.quit().await;
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(browser_test),
    ignore = "BROWSER_TEST_CHROMEDRIVER was not set when the tests were built (needs chromium and chromedriver; .ci/run sets it)"
)]
async fn a_device_page_shows_its_connection_history_and_the_new_badge_explains_itself() {
    let _turn = TURN.lock().await;
    let (driver, _profile) = browser().await;
    let mut t = start(|_| {}).await;
    let mut first = t.connect().await;
    let first_peer = first.local_addr().unwrap().to_string();
    send(&mut first, &keepalive("UI-CAM-D")).await;
    t.events(1, WAIT).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut second = t.connect().await;
    let second_peer = second.local_addr().unwrap().to_string();
    send(&mut second, &keepalive("UI-CAM-D")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    driver.go(&ui_of(&t)).await;
    // The "new" badge says what it means, and so does the legend beside the table.
    driver
        .find(r#".device-row[data-device="UI-CAM-D"] .badge.new"#)
        .await;
    let new = driver
        .execute(
            "const badge = document.querySelector('.device-row[data-device=\"UI-CAM-D\"] .badge.new');
             const legend = document.getElementById('devices-legend');
             return { title: badge.title,
                      legend: legend && legend.offsetParent !== null ? legend.textContent : null };",
            json!([]),
        )
        .await;
    assert!(
        new["title"].as_str().unwrap().contains("first seen"),
        "{new}"
    );
    assert!(
        new["legend"]
            .as_str()
            .is_some_and(|l| l.contains("first seen in the last 10 minutes")),
        "{new}"
    );
    // The device's page lists both connections, newest first.
    driver
        .click(r#".device-row[data-device="UI-CAM-D"] a.device-link"#)
        .await;
    driver
        .wait_for(
            "two connections listed",
            "return document.querySelectorAll('#connections-body tr.connection-row').length === 2;",
            json!([]),
        )
        .await;
    let page = driver
        .execute(
            "return { hash: location.hash, title: document.getElementById('device-title').textContent,
                      nav: document.getElementById('nav-devices').getAttribute('aria-current'),
                      rows: [...document.querySelectorAll('#connections-body tr.connection-row')]
                        .map((r) => [r.dataset.state, r.dataset.peer]) };",
            json!([]),
        )
        .await;
    assert_eq!(page["hash"], "#device/UI-CAM-D", "{page}");
    assert!(
        page["title"].as_str().unwrap().contains("UI-CAM-D"),
        "{page}"
    );
    assert_eq!(page["nav"], "page", "{page}");
    assert_eq!(
        page["rows"],
        json!([["open", second_peer], ["closed", first_peer]]),
        "{page}"
    );
    driver.quit().await;
    drop(second);
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(browser_test),
    ignore = "BROWSER_TEST_CHROMEDRIVER was not set when the tests were built (needs chromium and chromedriver; .ci/run sets it)"
)]
async fn the_sinks_page_shows_a_valid_snippet_when_empty_and_lists_a_configured_sink() {
    let _turn = TURN.lock().await;
    let (driver, _profile) = browser().await;
    // No sink: a [sinks.mqtt] snippet the server's configuration accepts.
    let t = start(|_| {}).await;
    driver.go(&format!("{}#sinks", ui_of(&t))).await;
    driver
        .wait_for(
            "the empty sinks page",
            "const e = document.getElementById('sinks-empty'); return !!e && e.offsetParent !== null;",
            json!([]),
        )
        .await;
    let snippet = driver.text("#sinks-snippet").await;
    assert!(snippet.contains("[sinks.mqtt]"), "{snippet}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, &snippet).unwrap();
    let config = alarm_center_server::Config::load(Some(&file), Vec::new())
        .unwrap_or_else(|e| panic!("the snippet is refused: {e}\n{snippet}"));
    let mqtt = config.sinks.mqtt.expect("the snippet configures MQTT");
    assert!(mqtt.enabled && mqtt.validate().is_empty(), "{mqtt:?}");
    t.server.shutdown().await.unwrap();

    // A webhook sink (its target down): listed, and no snippet.
    std::fs::write(
        &file,
        "[[sinks.webhook]]\nname = \"ui-test\"\nurl = \"http://127.0.0.1:9/hook\"\n",
    )
    .unwrap();
    let loaded = alarm_center_server::Config::load(Some(&file), Vec::new()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = crate::common::config(data.path());
    config.sinks = loaded.sinks;
    let t = start_with(data, config).await;
    driver.go(&format!("{}#sinks", ui_of(&t))).await;
    driver
        .find(r#"#sinks-body .sink-row[data-sink="webhook:ui-test"]"#)
        .await;
    let empty = driver
        .execute(
            "const e = document.getElementById('sinks-empty'); return !!e && e.offsetParent !== null;",
            json!([]),
        )
        .await;
    assert_eq!(empty, false);
    driver.quit().await;
    t.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(browser_test),
    ignore = "BROWSER_TEST_CHROMEDRIVER was not set when the tests were built (needs chromium and chromedriver; .ci/run sets it)"
)]
async fn the_token_form_asks_for_the_token_and_data_loads_with_it() {
    let _turn = TURN.lock().await;
    let (driver, _profile) = browser().await;
    let mut t = start(|c| c.api.token = Some("ui-secret".into())).await;
    let mut cam = t.connect().await;
    send(&mut cam, &keepalive("UI-CAM-T")).await;
    t.events(1, WAIT).await;
    driver.go(&ui_of(&t)).await;
    let asked = "return document.getElementById('auth').offsetParent !== null
                   && document.getElementById('live-status').dataset.state === 'auth';";
    driver
        .wait_for("the token asked for", asked, json!([]))
        .await;
    let rows = driver
        .execute(
            "return document.querySelectorAll('.device-row').length;",
            json!([]),
        )
        .await;
    assert_eq!(rows, 0, "devices shown without the token");
    // A wrong token is refused and asked again.
    driver.type_into("#auth-token", "not-the-token").await;
    driver.click("#auth-form button[type=submit]").await;
    driver
        .wait_for(
            "the wrong token refused",
            "return document.getElementById('auth').offsetParent !== null
               && document.getElementById('auth-message').textContent.includes('rejected');",
            json!([]),
        )
        .await;
    // The right one: the form goes and the data loads.
    driver.type_into("#auth-token", "ui-secret").await;
    driver.click("#auth-form button[type=submit]").await;
    driver
        .find(r#".device-row[data-device="UI-CAM-T"][data-state="online"]"#)
        .await;
    driver
        .wait_for(
            "the form gone and the feed polling",
            "return document.getElementById('auth').hidden
               && document.getElementById('live-status').dataset.state === 'polling';",
            json!([]),
        )
        .await;
    driver.click("#nav-history").await;
    driver
        .find(r#"#history-body tr.history-row[data-device="UI-CAM-T"]"#)
        .await;
    driver.quit().await;
    t.server.shutdown().await.unwrap();
}
