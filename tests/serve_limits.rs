//! Connection limits: idle connections are closed, trickled headers close the connection, a
//! trickled body times out with 408, and the connection cap makes a further client wait until
//! a slot frees.

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

/// A client that sends header bytes slowly but never finishes (slowloris) is cut off after
/// the request timeout: each byte resets the idle timer, so only a header deadline stops it.
/// (Before, the connection stayed open for as long as the bytes kept coming.)
#[test]
fn trickled_headers_close_the_connection_after_the_request_timeout() {
    let s = Scratch::new();
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
