//! One server per data directory: an exclusive lock on `<data-dir>/alarm-center.lock`, held for the
//! life of the process and released by the operating system when it ends, even on a crash. A second
//! server on the same directory would run its own supervision and declare offline the devices that
//! stream to the first one. The query commands (`events`, `devices`, `sinks`) do not take the lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "alarm-center.lock";

/// The held lock; dropping it (or ending the process) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it; `holder` is what it wrote there (`process N (started …)`).
    #[error("data directory {dir} is in use by {holder}; stop that server first, or give this one another --data-dir")]
    InUse {
        /// The data directory.
        dir: PathBuf,
        /// Who holds it, as the holder wrote it.
        holder: String,
    },
    /// The directory or the lock file cannot be created or locked.
    #[error("cannot lock data directory {dir}: {cause}")]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// The cause (shown in the message, not chained: an error chain would print it twice).
        cause: std::io::Error,
    },
}

/// Takes the exclusive lock on `dir` (created if missing) and writes who holds it.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, LockError> {
    let io = |cause| LockError::Io {
        dir: dir.to_owned(),
        cause,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(LockError::InUse {
                dir: dir.to_owned(),
                holder: if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    holder.to_owned()
                },
            });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let started = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S UTC");
    let holder = format!("process {} (started {started})\n", std::process::id());
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(holder.as_bytes()).map_err(io)?;
    Ok(DataDirLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data_dir(dir.path()).unwrap();
        let err = lock_data_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("is in use by process {}", std::process::id())),
            "{err}"
        );
        drop(first);
        lock_data_dir(dir.path()).expect("released when dropped");
    }
}
