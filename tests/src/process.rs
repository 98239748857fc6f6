//! `reprise serve` as a process of its own: what the CLI tests, the HTTP
//! benchmarks and the chaos test run and kill.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `reprise serve`. Killed (SIGKILL) on drop.
pub struct ServeProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The line it printed when it began to listen (names the store).
    pub listen_line: String,
    dir: tempfile::TempDir,
    log: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
}

/// Lines of a host's log kept for [`ServeProcess::log`].
const KEPT_LINES: usize = 10_000;

impl ServeProcess {
    /// Starts `bin serve --config <file>`, the file holding a free loopback
    /// port, a data dir of its own and `config` (more TOML), with `env`
    /// added; returns once it listens.
    pub fn spawn(bin: &Path, config: &str, env: &[(&str, &str)]) -> Self {
        Self::spawn_with(bin, config, env, &[])
    }

    /// [`ServeProcess::spawn`] with extra `serve` flags (which override the
    /// config file).
    pub fn spawn_with(bin: &Path, config: &str, env: &[(&str, &str)], args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("creating a temp dir for reprise serve");
        let path = dir.path().join("reprise.toml");
        std::fs::write(
            &path,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{config}",
                dir.path().join("data").display()
            ),
        )
        .expect("writing the config file");
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("REPRISE_REDIS_URL")
            .env_remove("REPRISE_QUEUE")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning reprise serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (url, listen_line) = loop {
            let line = lines
                .next()
                .expect("reprise serve exited before listening")
                .expect("reading reprise serve's stderr");
            if let Some(rest) = line.split("listening on ").nth(1) {
                let url = rest.split_whitespace().next().unwrap_or_default();
                break (url.to_string(), line);
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe,
        // keeping its last lines.
        let log = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut kept = kept.lock().expect("log poisoned");
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        });
        Self {
            child,
            url,
            listen_line,
            dir,
            log,
        }
    }

    /// The last lines it logged since it began to listen (at most
    /// 10,000).
    pub fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .expect("log poisoned")
            .iter()
            .cloned()
            .collect()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir holding its config and data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills it at once (SIGKILL: no drain, no cleanup).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for it to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        self.child.wait().expect("waiting for reprise serve")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// (CPU seconds used, RSS bytes, peak RSS bytes) of a process.
pub fn usage(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 here.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (cpu, kb("VmRSS:"), kb("VmHWM:"))
}

/// A finished command's exit status, stdout and stderr, for an assertion
/// message.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
