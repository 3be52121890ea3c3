//! The HTTP load generator the serve benches share: keep-alive HTTP/1 connections driven by
//! one thread (as oha), and `meterline serve` started as a child process on a database.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use meterline::store::NewCustomer;
use meterline::{Config, Store};

/// The customers the serve benches record for, on the unlimited plan.
pub const CUSTOMERS: usize = 8;

/// The `i`-th event's customer, round robin.
pub fn customer(i: usize) -> String {
    format!("cust{}", i % CUSTOMERS)
}

/// A database at `db` (a file or a `postgres://` URL) with the customers and a token for serve.
pub fn fixture(db: &Path, config: &Config) -> (Store, String) {
    let mut store = Store::open(db).expect("open the store");
    let yesterday = chrono::Utc::now() - chrono::Days::new(1);
    for i in 0..CUSTOMERS {
        store
            .add_customer(
                config,
                &NewCustomer {
                    id: customer(i),
                    name: None,
                    plan_id: "business".into(),
                    stripe_customer_id: None,
                    billing_anchor: Some(yesterday.date_naive()),
                },
                yesterday,
            )
            .expect("add customer");
    }
    let token = store
        .create_token("bench", chrono::Utc::now())
        .expect("token");
    (store, token)
}

/// One keep-alive HTTP/1 connection to the server, with the bearer token.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    bearer: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr, token: &str) -> Client {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::task::spawn_local(connection);
        Client {
            sender,
            host: addr.to_string(),
            bearer: format!("Bearer {token}"),
        }
    }

    pub async fn get(&mut self, path: &str) -> (u16, String) {
        self.send(Method::GET, path, String::new()).await
    }

    pub async fn post(&mut self, path: &str, body: String) -> (u16, String) {
        self.send(Method::POST, path, body).await
    }

    pub async fn send(&mut self, method: Method, path: &str, body: String) -> (u16, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::AUTHORIZATION, &self.bearer)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        self.sender.ready().await.expect("connection ready");
        let reply = self.sender.send_request(request).await.expect("reply");
        let status = reply.status().as_u16();
        let body = reply.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// Run `n` clients, each on its own connection, all on this one thread; gather their
/// latencies, sorted.
pub fn run_clients<F, Fut>(server: &Server, token: &str, n: usize, client: F) -> Vec<Duration>
where
    F: Fn(usize, Client) -> Fut,
    Fut: Future<Output = Vec<Duration>> + 'static,
{
    run_clients_on(&[server], token, n, client)
}

/// `run_clients` over several servers: client `t` talks to `servers[t % servers.len()]`.
pub fn run_clients_on<F, Fut>(
    servers: &[&Server],
    token: &str,
    n: usize,
    client: F,
) -> Vec<Duration>
where
    F: Fn(usize, Client) -> Fut,
    Fut: Future<Output = Vec<Duration>> + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("load generator runtime");
    let local = tokio::task::LocalSet::new();
    let mut all = local.block_on(&runtime, async {
        let mut running = Vec::with_capacity(n);
        for t in 0..n {
            let connected = Client::connect(servers[t % servers.len()].addr, token).await;
            running.push(tokio::task::spawn_local(client(t, connected)));
        }
        let mut all = Vec::new();
        for done in running {
            all.extend(done.await.expect("client"));
        }
        all
    });
    all.sort();
    all
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// `meterline serve` on `db` (a file or a `postgres://` URL), listening on a free port.
    pub fn start(db: &Path, plans: &Path) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_meterline"));
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env_remove("METERLINE_NOW")
            .env("METERLINE_DB", db)
            .env("METERLINE_PLANS", plans);
        Server::spawn(command, "meterline serve: listening on ")
    }

    /// Any server `command` starts: it says `{prefix}http://ADDR` on stderr once it listens.
    pub fn spawn(mut command: Command, prefix: &'static str) -> Server {
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix(prefix) {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server started");
        let addr = base
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .expect("the server's address");
        Server { child, addr }
    }

    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
