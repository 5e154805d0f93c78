//! A Qdrant server a test owns: started with `../shared/qdrant/start.sh` (or the script
//! `M2Q_QDRANT_START` names) on ports and storage of its own, so that the test can kill it
//! and bring it back at the same address with the same data.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A Qdrant server this test owns.
pub struct Server {
    start: PathBuf,
    storage: tempfile::TempDir,
    http: u16,
    grpc: u16,
    pid: u32,
}

impl Server {
    /// The start script (`M2Q_QDRANT_START`, else `../shared/qdrant/start.sh`).
    pub fn script() -> PathBuf {
        std::env::var_os("M2Q_QDRANT_START")
            .map(PathBuf::from)
            .unwrap_or_else(|| super::repo().join("../shared/qdrant/start.sh"))
    }

    pub fn start() -> Server {
        let start = Self::script();
        assert!(
            start.is_file(),
            "{}: no Qdrant start script (set M2Q_QDRANT_START to one that honours QDRANT_HTTP_PORT, QDRANT_GRPC_PORT and QDRANT_STORAGE)",
            start.display()
        );
        let mut s = Server {
            start,
            storage: tempfile::tempdir().unwrap(),
            http: super::free_port(),
            grpc: super::free_port(),
            pid: 0,
        };
        s.up();
        s
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    pub fn up(&mut self) {
        let out = Command::new("bash")
            .arg(&self.start)
            .env("QDRANT_HTTP_PORT", self.http.to_string())
            .env("QDRANT_GRPC_PORT", self.grpc.to_string())
            .env("QDRANT_STORAGE", self.storage.path())
            .output()
            .unwrap();
        super::assert_ok(&out);
        let text = String::from_utf8_lossy(&out.stdout);
        self.pid = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("QDRANT_PID="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no QDRANT_PID in {text}"));
    }

    pub fn kill(&self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
        // The ports are free again once the process is gone.
        while std::path::Path::new(&format!("/proc/{}", self.pid)).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
