//! Connection limits: idle connections are closed, trickled headers close the connection, a
//! trickled body times out with 408, and the connection cap makes a further client wait until
//! a slot frees.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::serve::{Server, create_token};

engine_tests!(
    a_silent_connection_is_closed_after_the_idle_timeout,
    trickled_headers_close_the_connection_after_the_request_timeout,
    a_trickled_body_gets_408_and_writes_nothing,
    the_connection_cap_makes_the_next_client_wait_for_a_slot,
);

fn connect(server: &Server) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Everything the server sends until it closes the connection.
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server kept the connection open: {e}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn a_silent_connection_is_closed_after_the_idle_timeout(engine: Engine) {
    let s = Scratch::on(engine);
    let server = Server::start(&s, &["--idle-timeout", "1"]);
    let mut silent = connect(&server);
    assert_eq!(read_to_close(&mut silent), "");
}

/// A client that sends header bytes slowly but never finishes (slowloris) is cut off after
/// the request timeout: each byte resets the idle timer, so only a header deadline stops it.
/// (Before, the connection stayed open for as long as the bytes kept coming.)
fn trickled_headers_close_the_connection_after_the_request_timeout(engine: Engine) {
    let s = Scratch::on(engine);
    let server = Server::start(&s, &["--request-timeout", "1", "--idle-timeout", "5"]);
    let mut slow = connect(&server);
    slow.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let closed = loop {
        if started.elapsed() > Duration::from_secs(15) {
            break false;
        }
        // A write into a connection the server closed fails, or the read sees the close.
        if slow.write_all(b"X-Trickle: 1\r\n").is_err() {
            break true;
        }
        match slow.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => break true,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => {} // the read timed out: still open
        }
    };
    assert!(closed, "a trickling client kept its connection for 15 s");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed too soon"
    );
}

fn a_trickled_body_gets_408_and_writes_nothing(engine: Engine) {
    let s = Scratch::on(engine);
    s.add_customer("acme", "pro", "2026-11-01");
    let token = create_token(&s, "t");
    let before = s.dump();
    let server = Server::start(&s, &["--request-timeout", "1"]);
    let mut slow = connect(&server);
    write!(
        slow,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"customer\""
    )
    .unwrap();
    let answer = read_to_close(&mut slow);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(s.dump(), before);
}

fn the_connection_cap_makes_the_next_client_wait_for_a_slot(engine: Engine) {
    let s = Scratch::on(engine);
    let server = Server::start(&s, &["--max-connections", "1"]);
    let holder = connect(&server);
    let base = server.base.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reply = crate::support::serve::Client::new(&base, None).get("/healthz");
        let _ = tx.send(reply.status);
    });
    // The only slot is taken: no answer while the holder stays connected.
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    drop(holder);
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(200));
}

/// A real full disk under the server (a 1 MiB tmpfs in a private mount namespace): writes are
/// answered 503 `disk_full` with Retry-After, never a bare 500; every event that got a 200 is
/// counted; reads still answer, and the server still stops cleanly. (The database is a file on
/// that disk: SQLite's.)
#[test]
fn a_full_disk_answers_503_disk_full_and_keeps_every_acknowledged_event() {
    let s = Scratch::new();
    let token_file = s.dir.path().join("token");
    let command = s.on_small_disk(
        "1m",
        &format!(
            "'{bin}' --db \"$SMALL/m.db\" customer add big --plan business --anchor 2026-11-01 && \
             '{bin}' --db \"$SMALL/m.db\" token create t > '{token}' && \
             exec '{bin}' --db \"$SMALL/m.db\" serve --listen 127.0.0.1:0",
            token = token_file.display(),
            bin = crate::support::cli::BIN,
        ),
    );
    let server = Server::spawn(command);
    let token = std::fs::read_to_string(&token_file).unwrap();
    let c = server.client(token.trim());

    let mut acknowledged = 0;
    let full = (0..200)
        .find_map(|round| {
            let events: Vec<serde_json::Value> = (0..500)
                .map(|i| serde_json::json!({"customer": "big", "key": format!("r{round}-{i}")}))
                .collect();
            let reply = c.post(
                "/v1/events/batch",
                &serde_json::json!({ "events": events }).to_string(),
            );
            if reply.status == 200 {
                acknowledged += 500;
                None
            } else {
                Some(reply)
            }
        })
        .expect("1 MiB never filled up");
    assert_eq!(
        (full.status, full.code().as_str()),
        (503, "disk_full"),
        "{}",
        full.body
    );
    assert!(full.retry_after.is_some());
    assert!(acknowledged > 0);
    // Reads still answer, and count exactly what was acknowledged.
    let check = c.get("/v1/customers/big/check");
    assert_eq!(check.status, 200, "{}", check.body);
    assert_eq!(check.json()["used"], acknowledged);
    assert_eq!(server.terminate().code(), Some(0));
}
