//! A TCP proxy on loopback that a test can cut: every open connection is
//! dropped at once, as a flaky network or a host restart would, and new
//! connections can be sent to another address.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A running proxy.
pub struct Proxy {
    /// `http://127.0.0.1:<port>`: what clients connect to.
    pub url: String,
    target: Arc<Mutex<SocketAddr>>,
    conns: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards connections to `target` (`http://host:port` or `host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = Arc::new(Mutex::new(addr(target)));
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let accept = tokio::spawn({
            let (target, conns) = (target.clone(), conns.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let to = *target.lock().unwrap();
                    conns.lock().unwrap().spawn(async move {
                        if let Ok(mut upstream) = TcpStream::connect(to).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                        }
                    });
                }
            }
        });
        Self {
            url,
            target,
            conns,
            accept,
        }
    }

    /// Drops every open connection.
    pub fn sever(&self) {
        self.conns.lock().unwrap().abort_all();
    }

    /// Sends new connections to `target`.
    pub fn retarget(&self, target: &str) {
        *self.target.lock().unwrap() = addr(target);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.sever();
    }
}

fn addr(target: &str) -> SocketAddr {
    target
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("a proxy target is ip:port")
}
