//! Helpers shared by the binary's tests.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::time::Duration;

/// `alarm-center <args> --data-dir <dir>`, which must succeed; returns its standard output.
pub(crate) fn cli(args: &[&str], data_dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_alarm-center"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Waits for `child` (spawned with a piped standard error) to exit within `within`; returns its
/// status and standard error. Past `within` it is killed and the test fails, naming `what`.
pub(crate) fn exit_within(mut child: Child, what: &str, within: Duration) -> (ExitStatus, String) {
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = tx.send(text);
    });
    match rx.recv_timeout(within) {
        Ok(text) => (child.wait().unwrap(), text),
        Err(_) => {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{what} did not exit within {within:?}");
        }
    }
}
