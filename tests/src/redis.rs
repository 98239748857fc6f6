//! A private `redis-server` per test: its own temp dir, a unix socket (no
//! TCP port unless asked), append-only persistence with fsync on every
//! write, so a test can kill it and start it again without losing data.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use reprise_host::store::{RedisOptions, RedisStore};

/// A running `redis-server` that only this test uses. Killed on drop.
pub struct RedisServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a unix socket in a fresh temp dir.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g.
    /// `["--requirepass", "pw"]`).
    pub fn start_with(extra: &[&str]) -> Self {
        let extra = extra.iter().map(|s| s.to_string()).collect();
        Self::try_start(extra).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start(extra: Vec<String>) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("reprise-redis")
            .tempdir()
            .expect("creating a temp dir for redis-server");
        let mut server = Self {
            dir,
            child: None,
            extra,
        };
        server.try_launch()?;
        Ok(server)
    }

    /// Starts a server that also listens on TCP, on loopback, retrying on
    /// another port if the one picked was taken before the server bound it
    /// (tests run in parallel and all pick ports). `args(port)` gives the
    /// arguments for a port.
    fn start_on_free_port(args: impl Fn(u16) -> Vec<String>) -> (Self, u16) {
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            match Self::try_start(args(port)) {
                Ok(server) => return (server, port),
                Err(e) => failures.push(format!("port {port}: {e}")),
            }
        }
        panic!(
            "redis-server did not start on any of 5 ports:\n{}",
            failures.join("\n")
        )
    }

    /// The unix socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// A URL for this server.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Starts a server that also listens on a free TCP port on loopback
    /// (benchmarks compare against network round trips); returns it and
    /// its `redis://127.0.0.1:<port>` URL.
    pub fn start_tcp(extra: &[&str]) -> (Self, String) {
        let (server, port) = Self::start_on_free_port(|port| {
            let mut args = vec![
                "--port".to_string(),
                port.to_string(),
                "--bind".to_string(),
                "127.0.0.1".to_string(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            args
        });
        (server, format!("redis://127.0.0.1:{port}"))
    }

    /// A store connected to this server with default options.
    pub async fn store(&self) -> RedisStore {
        self.store_with(RedisOptions::default()).await
    }

    /// A store connected to this server.
    pub async fn store_with(&self, options: RedisOptions) -> RedisStore {
        RedisStore::connect(&self.url(), options)
            .await
            .expect("connecting to the test's redis-server")
    }

    fn launch(&mut self) {
        if let Err(e) = self.try_launch() {
            panic!("{e}");
        }
    }

    /// The file the server logs to (its startup errors, such as a port
    /// already in use, end up here).
    fn log(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn try_launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("creating redis-server's log file");
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(self.socket())
            .arg("--dir")
            .arg(self.dir.path())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .args(&self.extra)
            .stdout(log.try_clone().expect("cloning a file handle"))
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}); install it (e.g. `apt-get install \
                 redis-server`): the Redis tests start their own server"
            )
        });
        self.child = Some(child);
        let ready = self.wait_ready();
        if ready.is_err() {
            self.kill();
        }
        ready
    }

    /// Waits until the server answers PING (or says it needs a password).
    /// Fails at once if the server exits (e.g. its port was taken), with
    /// the server's own log in the message.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = UnixStream::connect(self.socket()) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok()
                    && let Ok(n) = s.read(&mut buf)
                {
                    let reply = &buf[..n];
                    if reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH") {
                        return Ok(());
                    }
                }
            }
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                _ => None,
            };
            if let Some(status) = exited {
                return Err(format!(
                    "redis-server exited ({status}) before answering on {}; its log:\n{}",
                    self.socket().display(),
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server did not answer on {} within 30 s; its log:\n{}",
                    self.socket().display(),
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server at once (SIGKILL: no shutdown save, like a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }

    /// Starts the server again on the same socket and data dir.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Runs one command through `redis-cli` and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("running redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// A private Redis Cluster: three primaries (no replicas) on loopback TCP
/// ports, each with its own temp dir and AOF, joined with
/// `redis-cli --cluster create`. Killed on drop.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
    ports: Vec<u16>,
}

impl RedisCluster {
    /// Starts three nodes and creates the cluster; returns once every node
    /// reports `cluster_state:ok`.
    pub fn start() -> Self {
        let (nodes, ports): (Vec<_>, Vec<_>) = (0..3)
            .map(|_| {
                RedisServer::start_on_free_port(|port| {
                    [
                        "--port",
                        &port.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "5000",
                    ]
                    .map(String::from)
                    .to_vec()
                })
            })
            .unzip();
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("running redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { nodes, ports }
    }

    /// The seed URLs, comma-separated (for `RedisOptions::cluster`).
    pub fn url(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Cluster store options.
    pub fn options() -> RedisOptions {
        RedisOptions {
            cluster: true,
            ..RedisOptions::default()
        }
    }

    /// A store on this cluster.
    pub async fn store(&self) -> RedisStore {
        RedisStore::connect(&self.url(), Self::options())
            .await
            .expect("connecting to the test's Redis Cluster")
    }
}

/// A port that is free now, and whose cluster bus port (+10000) is free
/// too, both below the kernel's ephemeral range (32768 and up on Linux), so
/// the many loopback connections the tests open cannot be handed either of
/// them between this check and the server binding it.
fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    for attempt in 0..10_000u64 {
        hasher.write_u64(attempt);
        let port = 10_000 + (hasher.finish() % 12_000) as u16;
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free pair of ports (p, p + 10000) between 10000 and 32000")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
