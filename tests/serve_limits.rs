//! Connection limits: idle connections are closed, a trickled body times out with 408, and
//! the connection cap makes a further client wait until a slot frees.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::cli::Scratch;
use support::serve::{Server, create_token};

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

#[test]
fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--idle-timeout", "1"]);
    let mut silent = connect(&server);
    assert_eq!(read_to_close(&mut silent), "");
}

#[test]
fn a_trickled_body_gets_408_and_writes_nothing() {
    let s = Scratch::new();
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

#[test]
fn the_connection_cap_makes_the_next_client_wait_for_a_slot() {
    let s = Scratch::new();
    let server = Server::start(&s, &["--max-connections", "1"]);
    let holder = connect(&server);
    let base = server.base.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let reply = support::serve::Client::new(&base, None).get("/healthz");
        let _ = tx.send(reply.status);
    });
    // The only slot is taken: no answer while the holder stays connected.
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
    drop(holder);
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(200));
}
