//! Request bodies with a `Content-Encoding`, over real loopback HTTP: gzip is decoded on the
//! native and the compat routes, the 1 MiB limit applies to the decoded bytes (a gzip bomb is a
//! 413), and any other encoding is a 415 in each protocol's error shape, with nothing written.

use std::io::Write;

use crate::support::cli::Scratch;
use crate::support::engine::{Engine, engine_tests};
use crate::support::serve::{Client, Reply, serving_acme};
use serde_json::{Value, json};

engine_tests!(
    gzip_bodies_are_decoded_on_the_native_and_the_compat_routes,
    the_body_limit_applies_to_the_decoded_bytes,
    other_encodings_are_415_in_each_protocols_shape,
);

/// The server's body limit (`meterline_server::MAX_BODY`).
const MAX_BODY: usize = 1024 * 1024;

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn events(s: &Scratch) -> i64 {
    s.inspect().number("SELECT COUNT(*) FROM usage_events")
}

fn send(api: &Client, path: &str, content_type: &str, encoding: &str, body: &[u8]) -> Reply {
    api.send(
        path,
        &[
            ("Content-Type", content_type),
            ("Content-Encoding", encoding),
        ],
        body,
    )
}

fn cloud_event(id: &str) -> String {
    json!({"specversion": "1.0", "id": id, "source": "app", "type": "meterline_usage",
           "subject": "acme"})
    .to_string()
}

fn lago_event(id: &str) -> String {
    json!({"event": {"transaction_id": id, "code": "meterline_usage",
                     "external_customer_id": "acme"}})
    .to_string()
}

fn stripe_event(id: &str) -> String {
    format!(
        "event_name=meterline_usage&payload[stripe_customer_id]=cus_Acme1&payload[value]=1\
         &identifier={id}"
    )
}

fn gzip_bodies_are_decoded_on_the_native_and_the_compat_routes(engine: Engine) {
    let (s, _server, api) = serving_acme(engine);
    let event = json!({"customer": "acme", "key": "n1"}).to_string();
    let reply = send(&api, "/v1/events", JSON, "gzip", &gzip(event.as_bytes()));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["recorded"], json!(true));
    let batch = json!({"events": [{"customer": "acme", "key": "n2"}]}).to_string();
    // `x-gzip` is gzip's old name (RFC 9110), in any letter case.
    let reply = send(
        &api,
        "/v1/events/batch",
        JSON,
        "X-GZIP",
        &gzip(batch.as_bytes()),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["results"][0]["recorded"], json!(true));

    let reply = send(
        &api,
        "/stripe/v1/billing/meter_events",
        FORM,
        "gzip",
        &gzip(stripe_event("s1").as_bytes()),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = send(
        &api,
        "/openmeter/api/v1/events",
        JSON,
        "gzip",
        &gzip(cloud_event("c1").as_bytes()),
    );
    assert_eq!(reply.status, 204, "{}", reply.body);
    let reply = send(
        &api,
        "/lago/api/v1/events",
        JSON,
        "gzip",
        &gzip(lago_event("l1").as_bytes()),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    // `identity` is the body as it is.
    let reply = send(
        &api,
        "/lago/api/v1/events",
        JSON,
        "identity",
        lago_event("l2").as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(events(&s), 6);
}

fn the_body_limit_applies_to_the_decoded_bytes(engine: Engine) {
    let (s, _server, api) = serving_acme(engine);
    // Just under the limit once decoded (JSON padded with spaces): taken.
    let event = json!({"customer": "acme", "key": "big"}).to_string();
    let padded = format!("{event}{}", " ".repeat(MAX_BODY - event.len()));
    let reply = send(&api, "/v1/events", JSON, "gzip", &gzip(padded.as_bytes()));
    assert_eq!(reply.status, 200, "{}", reply.body);

    // One byte over: 413, although the compressed body is a few KiB.
    let over = format!("{padded} ");
    let compressed = gzip(over.as_bytes());
    assert!(compressed.len() < 16 * 1024);
    let reply = send(&api, "/v1/events", JSON, "gzip", &compressed);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.code(), "body_too_large");

    // A gzip bomb (64 MiB of zeros in about 64 KiB): 413 on every route, in its shape.
    let bomb = gzip(&vec![b'0'; 64 * MAX_BODY]);
    let reply = send(&api, "/v1/events", JSON, "gzip", &bomb);
    assert_eq!((reply.status, reply.code()), (413, "body_too_large".into()));
    let reply = send(&api, "/stripe/v1/billing/meter_events", FORM, "gzip", &bomb);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert!(
        reply.json()["error"]["message"].is_string(),
        "{}",
        reply.body
    );
    let reply = send(&api, "/openmeter/api/v1/events", JSON, "gzip", &bomb);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.json()["status"], json!(413));
    let reply = send(&api, "/lago/api/v1/events", JSON, "gzip", &bomb);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.json()["status"], json!(413));

    // Not gzip at all: 400, the body named.
    let reply = send(&api, "/v1/events", JSON, "gzip", event.as_bytes());
    assert_eq!((reply.status, reply.code()), (400, "bad_body".into()));
    assert!(reply.body.contains("gzip"), "{}", reply.body);
    assert_eq!(events(&s), 1);
}

fn other_encodings_are_415_in_each_protocols_shape(engine: Engine) {
    let (s, _server, api) = serving_acme(engine);
    let names_the_encodings = |message: &Value| {
        let message = message.as_str().unwrap_or_default();
        assert!(
            message.contains("gzip") && message.contains("identity"),
            "{message}"
        );
    };
    let event = json!({"customer": "acme"}).to_string();
    for encoding in ["br", "deflate", "zstd", "gzip, br", "gzip, gzip"] {
        let reply = send(&api, "/v1/events", JSON, encoding, event.as_bytes());
        assert_eq!(reply.status, 415, "{encoding}: {}", reply.body);
        assert_eq!(reply.code(), "unsupported_encoding");
        names_the_encodings(&reply.json()["error"]["message"]);
    }
    let batch = json!({"events": [{"customer": "acme"}]}).to_string();
    let reply = send(&api, "/v1/events/batch", JSON, "br", batch.as_bytes());
    assert_eq!(reply.status, 415, "{}", reply.body);

    // Stripe: {"error":{"type","message"}}.
    let reply = send(
        &api,
        "/stripe/v1/billing/meter_events",
        FORM,
        "br",
        stripe_event("s1").as_bytes(),
    );
    assert_eq!(reply.status, 415, "{}", reply.body);
    assert!(reply.json()["error"]["type"].is_string(), "{}", reply.body);
    names_the_encodings(&reply.json()["error"]["message"]);
    // CloudEvents: problem details.
    let reply = send(
        &api,
        "/openmeter/api/v1/events",
        JSON,
        "br",
        cloud_event("c1").as_bytes(),
    );
    assert_eq!(reply.status, 415, "{}", reply.body);
    assert_eq!(reply.json()["status"], json!(415));
    names_the_encodings(&reply.json()["detail"]);
    // Lago: {"status","error","code","error_details"}.
    let reply = send(
        &api,
        "/lago/api/v1/events",
        JSON,
        "br",
        lago_event("l1").as_bytes(),
    );
    assert_eq!(reply.status, 415, "{}", reply.body);
    assert_eq!(reply.json()["status"], json!(415));
    names_the_encodings(&reply.json()["error_details"]["message"]);
    assert_eq!(events(&s), 0);
}
