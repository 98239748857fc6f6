//! A private `redis-server` per test: its own temp dir, a unix socket (no
//! TCP port unless asked), append-only persistence with fsync on every
//! write, so a test can kill it and start it again without losing data.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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
        let dir = tempfile::Builder::new()
            .prefix("reprise-redis")
            .tempdir()
            .expect("creating a temp dir for redis-server");
        let mut server = Self {
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.launch();
        server
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("finding a free port")
            .port()
            .to_string();
        let mut args = vec!["--port", &port, "--bind", "127.0.0.1"];
        args.extend_from_slice(extra);
        let server = Self::start_with(&args);
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
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}); install it (e.g. `apt-get install \
                 redis-server`): the Redis tests start their own server"
            )
        });
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the server answers PING (or says it needs a password).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = UnixStream::connect(self.socket()) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok()
                    && let Ok(n) = s.read(&mut buf)
                {
                    let reply = &buf[..n];
                    if reply.starts_with(b"+PONG") || reply.starts_with(b"-NOAUTH") {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on {}",
                self.socket().display()
            );
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
        let ports = (0..3).map(|_| free_cluster_port()).collect::<Vec<_>>();
        let nodes = ports
            .iter()
            .map(|p| {
                RedisServer::start_with(&[
                    "--port",
                    &p.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect::<Vec<_>>();
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

/// A free port whose cluster bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("finding a free port")
            .port();
        if port <= 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
