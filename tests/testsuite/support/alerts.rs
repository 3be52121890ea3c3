//! A real loopback webhook receiver (std TcpListener, one thread per connection) that records
//! every request it reads and answers as told, and an independent signature check in Python.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The secret the tests sign with: long and unmistakable, so a leak is easy to find.
pub const SECRET: &str = "whsec-test-3f9c2b7e1d5a48c6a0e1f2d3c4b5a697-never-print-me";

#[derive(Debug, Clone)]
pub struct Request {
    pub alert_id: String,
    pub signature: String,
    pub content_type: String,
    pub body: String,
    /// When its body had been read (for the order across receivers).
    pub received: Instant,
    /// The same, in Unix seconds (to compare with times meterline stores).
    pub received_unix: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 to everything.
    Ok,
    /// By request number: 200, 500, 200, dropped connection (no answer), ...
    Flaky,
    /// Read the request, then answer nothing and hold the connection open.
    Hang,
    /// 500 to the first request, 200 to the rest.
    FailFirst,
    /// 200 to everything, each a little late (so requests sent at once overlap).
    Slow,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    mode: Arc<Mutex<Mode>>,
    seen: Arc<AtomicUsize>,
    /// Requests read and not yet answered, and the most there ever were at once.
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

impl Receiver {
    pub fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let receiver = Receiver {
            url: format!("http://{}/hooks/meterline", listener.local_addr().unwrap()),
            requests: Arc::default(),
            mode: Arc::new(Mutex::new(mode)),
            seen: Arc::default(),
            in_flight: Arc::default(),
            most_in_flight: Arc::default(),
        };
        let shared = receiver.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let shared = shared.clone();
                std::thread::spawn(move || shared.handle(stream));
            }
        });
        receiver
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The most requests this receiver was ever answering at once.
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    /// Wait (generously) until at least `n` requests arrived; false if they never did.
    pub fn wait_for(&self, n: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.requests.lock().unwrap().len() >= n {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn handle(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            headers.push(line);
        }
        let header = |name: &str| {
            headers
                .iter()
                .find_map(|h| {
                    let (k, v) = h.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        let length: usize = header("content-length").parse().unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let number = self.seen.fetch_add(1, Ordering::SeqCst);
        let now_in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight
            .fetch_max(now_in_flight, Ordering::SeqCst);
        let unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        self.requests.lock().unwrap().push(Request {
            alert_id: header("meterline-alert-id"),
            signature: header("meterline-signature"),
            content_type: header("content-type"),
            body: String::from_utf8(body).unwrap(),
            received: Instant::now(),
            received_unix: unix.as_secs() as i64,
        });
        let mode = *self.mode.lock().unwrap();
        let status = Self::status(mode, number);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let Some(status) = status else {
            return; // dropped: closed without an answer
        };
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
        );
    }

    /// The answer to request `number` (from 0), after any wait the mode asks for; `None` to
    /// drop the connection.
    fn status(mode: Mode, number: usize) -> Option<&'static str> {
        Some(match (mode, number % 4) {
            (Mode::Ok, _) | (Mode::Flaky, 0 | 2) => "200 OK",
            (Mode::FailFirst, _) if number > 0 => "200 OK",
            (Mode::Flaky, 1) | (Mode::FailFirst, _) => "500 Internal Server Error",
            (Mode::Flaky, _) => return None,
            (Mode::Slow, _) => {
                std::thread::sleep(Duration::from_millis(100));
                "200 OK"
            }
            (Mode::Hang, _) => {
                std::thread::sleep(Duration::from_secs(120));
                return None;
            }
        })
    }
}

/// Check every request's signature with Python's own `hmac` (not our Rust code): the header
/// parses, v1 is HMAC-SHA256 of "<t>.<body>" under `secret`, and the id header matches the
/// body's id. Returns Python's verdict line.
pub fn verify_with_python(requests: &[Request], secret: &str) -> String {
    const SCRIPT: &str = r#"
import hashlib, hmac, json, os, sys
secret = os.environ["CHECK_SECRET"].encode()
n = 0
for line in sys.stdin:
    req = json.loads(line)
    parts = dict(p.split("=", 1) for p in req["signature"].split(","))
    signed = (parts["t"] + "." + req["body"]).encode()
    want = hmac.new(secret, signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, parts["v1"]):
        print("bad signature for", req["alert_id"])
        sys.exit(1)
    if json.loads(req["body"])["id"] != req["alert_id"]:
        print("id header differs from body")
        sys.exit(1)
    n += 1
print("verified", n)
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .env("CHECK_SECRET", secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed for the independent signature check");
    {
        let mut stdin = child.stdin.take().unwrap();
        for r in requests {
            let line = serde_json::json!({
                "alert_id": r.alert_id, "signature": r.signature, "body": r.body,
            });
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let verdict = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success(), "python: {verdict}");
    verdict
}

/// plans.toml text: the shipped plans plus `extra` (the `[[alerts]]` entries).
pub fn plans_with(extra: &str) -> String {
    let shipped = std::fs::read_to_string(super::cli::repo_plans()).unwrap();
    format!("{shipped}\n{extra}\n")
}
