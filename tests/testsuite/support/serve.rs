//! The real `meterline serve` on an ephemeral loopback port, and a small blocking client.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::Value;

use super::cli::{BIN, NOW, Scratch};

pub struct Server {
    pub child: Child,
    pub base: String,
    /// What it printed to stderr so far.
    lines: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Start `meterline serve --listen 127.0.0.1:0` on the scratch database.
    pub fn start(scratch: &Scratch, extra: &[&str]) -> Server {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("METERLINE_DB", &scratch.db)
            .env("METERLINE_PLANS", &scratch.plans);
        Server::spawn(command)
    }

    /// Run `command`, which ends by running `meterline serve`, and wait until it listens.
    pub fn spawn(mut command: Command) -> Server {
        let mut child = command
            .env_remove("METERLINE_LISTEN")
            .env("METERLINE_NOW", NOW)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn meterline serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("meterline serve: listening on ") {
                    let _ = tx.send(addr.to_string());
                }
                kept.lock().unwrap().push(line);
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server did not start: {:?}", lines.lock().unwrap()));
        // The thread goes on draining stderr, so the server never blocks on a full pipe.
        Server { child, base, lines }
    }

    pub fn client(&self, token: &str) -> Client {
        Client::new(&self.base, Some(token))
    }

    /// SIGTERM, then wait for the exit code; its stderr never showed the database password.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let status = self.child.wait().expect("wait for the server");
        // The reader thread has seen everything once the pipe closes.
        std::thread::sleep(Duration::from_millis(100));
        let lines = self.lines.lock().unwrap().clone();
        assert!(
            lines.iter().all(|l| !l.contains(super::postgres::PASSWORD)),
            "the database password is in serve's output: {lines:?}"
        );
        std::mem::forget(self);
        status
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
        std::mem::forget(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// acme on the pro plan, mapped to Stripe's cus_Acme1, on `engine`.
pub fn mapped_acme(engine: super::engine::Engine) -> Scratch {
    let s = Scratch::on(engine);
    s.add_customer("acme", "pro", "2026-11-01");
    s.cmd()
        .args(["customer", "set-stripe", "acme", "cus_Acme1"])
        .assert()
        .success();
    s
}

/// [`mapped_acme`], served: the scratch, the server and a client with a token.
pub fn serving_acme(engine: super::engine::Engine) -> (Scratch, Server, Client) {
    let s = mapped_acme(engine);
    let token = create_token(&s, "t");
    let server = Server::start(&s, &[]);
    let api = server.client(&token);
    (s, server, api)
}

/// Create a token with the real binary; stdout must be the token alone.
pub fn create_token(scratch: &Scratch, name: &str) -> String {
    let out = scratch
        .cmd()
        .args(["token", "create", name])
        .output()
        .expect("token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.trim_end_matches('\n');
    assert!(
        !token.contains('\n') && token.starts_with("mlt_"),
        "{stdout:?}"
    );
    token.to_string()
}

pub struct Reply {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `error.code` of an error answer.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {}", self.body))
            .to_string()
    }
}

#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str, token: Option<&str>) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            base: base.to_string(),
            token: token.map(str::to_string),
        }
    }

    fn finish(
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Reply, ureq::Error> {
        let mut response = response?;
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        Ok(Reply {
            status: response.status().as_u16(),
            body: response.body_mut().read_to_string()?,
            retry_after,
        })
    }

    pub fn try_post(&self, path: &str, body: &str) -> Result<Reply, ureq::Error> {
        let mut request = self
            .agent
            .post(format!("{}{path}", self.base))
            .content_type("application/json");
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Self::finish(request.send(body))
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.try_post(path, body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    pub fn get(&self, path: &str) -> Reply {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Self::finish(request.call()).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub fn delete(&self, path: &str) -> Reply {
        let mut request = self.agent.delete(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Self::finish(request.call()).unwrap_or_else(|e| panic!("DELETE {path}: {e}"))
    }

    /// POST raw bytes with the given headers (a content type, a content encoding, …).
    pub fn send(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut request = self.agent.post(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        Self::finish(request.send(body)).unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// POST to a drop-in route as its SDK does: the status and the JSON answer (null when
    /// the answer has no body, as CloudEvents' 204).
    pub fn drop_in(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let reply = self.send(path, &[("Content-Type", content_type)], body);
        let json = if reply.body.is_empty() {
            Value::Null
        } else {
            reply.json()
        };
        (reply.status, json)
    }

    /// Stripe's `POST /v1/billing/meter_events`, a form.
    pub fn stripe_meter_event(&self, form: &str) -> (u16, Value) {
        let form_type = "application/x-www-form-urlencoded";
        self.drop_in(
            "/stripe/v1/billing/meter_events",
            form_type,
            form.as_bytes(),
        )
    }

    /// OpenMeter's CloudEvents batch.
    pub fn cloudevents(&self, batch: &Value) -> (u16, Value) {
        let batch_type = "application/cloudevents-batch+json";
        self.drop_in(
            "/openmeter/api/v1/events",
            batch_type,
            batch.to_string().as_bytes(),
        )
    }

    /// Lago's `events` or `events/batch` at `path`.
    pub fn lago(&self, path: &str, body: &Value) -> (u16, Value) {
        self.drop_in(path, "application/json", body.to_string().as_bytes())
    }
}

/// Send raw bytes on a new connection and read the first answer (headers and the body that
/// arrived within a moment): for requests an HTTP client would not send as they are.
pub fn raw_exchange(server: &Server, request: &str) -> String {
    use std::io::{Read, Write};
    let addr = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the JSON body is complete (it ends with "}}").
    while !answer.ends_with(b"}}") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}
