//! The embedded store's lock: an OS file lock on the store directory, released by the kernel
//! when its holder dies, however it dies; the file names the holder for whoever is refused.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::lease::{Holder, LockError};

/// An exclusive lock on an embedded store directory, held until dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    pub path: PathBuf,
}

/// Take the store's lock without waiting.
pub fn lock_store(root: &Path, run_id: &str) -> Result<StoreLock, LockError> {
    let io = |source| LockError::Io {
        path: root.display().to_string(),
        source,
    };
    std::fs::create_dir_all(root).map_err(io)?;
    let path = root.join(".mongo2qdrant.lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = serde_json::from_str::<Holder>(&text)
                .map_or_else(|_| "another process".to_owned(), |h| h.to_string());
            return Err(LockError::Held {
                what: format!("the embedded store {}", root.display()),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    let me = serde_json::to_string(&Holder::me(run_id)).expect("holder serialises");
    file.write_all(me.as_bytes()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(StoreLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_a_store_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_store(dir.path(), "run-a").unwrap();
        let err = lock_store(dir.path(), "run-b").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("run-a") && msg.contains("wait"), "{msg}");
        drop(first);
        lock_store(dir.path(), "run-b").unwrap();
    }
}
