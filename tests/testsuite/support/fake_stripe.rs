//! A Stripe-like Billing Meter Events server on 127.0.0.1, for tests and benches.
//!
//! It checks each request the way Stripe does (Bearer auth, Stripe-Version, form encoding,
//! required fields and their types, other payload keys kept as dimensions, the 35-day /
//! 5-minute timestamp window), aggregates each meter by its formula (sum, count, last) in
//! its event summaries, remembers
//! identifiers and answers a resend with Stripe's "An event already exists with identifier"
//! 400, replays saved answers for a known Idempotency-Key, and injects faults on demand.
//! Hand-written on std::net so faults like dropped connections are exact.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

#[path = "fake_stripe_http.rs"]
mod http;
use http::{Request, parse_form, read_request, reason};

/// A fault applied to the next valid request(s), in the order injected.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 rate_limit_error.
    TooManyRequests,
    /// 400 with code rate_limit (how Stripe signals some rate limits).
    RateLimit400,
    /// 409 lock_timeout.
    Conflict,
    /// 500 before anything is recorded; the header value if `Some`.
    ServerError { should_retry: Option<bool> },
    /// The event is recorded, then 500 (saved under the Idempotency-Key, as Stripe does).
    RecordThenServerError,
    /// Process the event, but answer only after this delay (set past the client's timeout).
    Slow(Duration),
    /// Close the connection without answering; nothing recorded.
    Drop,
    /// Record the event, then close the connection without answering.
    RecordThenDrop,
    /// 401 as for a revoked key.
    Unauthorized,
    /// 400 (Stripe-Should-Retry: false) with this message: what a hostile or buggy server
    /// could put in front of the user.
    RefuseWith(String),
    /// Start an answer, then send one byte of a never-ending header line every 200 ms: each
    /// read succeeds, the answer never completes. Nothing recorded.
    Trickle,
}

/// One event the server accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub identifier: String,
    pub event_name: String,
    pub customer: String,
    pub value: i64,
    pub timestamp: i64,
    /// Payload keys besides `stripe_customer_id` and `value`: the meter's dimensions.
    pub dimensions: BTreeMap<String, String>,
    /// Order of arrival (a `last` meter takes the latest timestamp, then the latest arrival).
    pub seq: u64,
}

#[derive(Default)]
struct Book {
    faults: VecDeque<Fault>,
    accepted: HashMap<String, Accepted>,
    /// Identifiers in the order the events were accepted.
    arrivals: Vec<String>,
    /// Every POST that reached validation, per identifier (retries and resends included).
    posts: HashMap<String, u32>,
    duplicates: u64,
    /// Validation failures: (status, message).
    refused: Vec<(u16, String)>,
    /// Idempotency-Key -> (request body, saved status, saved body).
    idempotency: HashMap<String, (String, u16, String)>,
    replays: u64,
    missing_idempotency_key: u64,
    refuse_customers: HashSet<String>,
    in_flight: HashMap<(String, String), u32>,
    max_in_flight_per_key: u32,
    in_flight_total: u32,
    max_in_flight_total: u32,
    versions: HashSet<String>,
    /// Billing meters: (id, event_name, status, formula), in creation order.
    meters: Vec<(String, String, String, String)>,
    /// Events accepted or added so far (the next `Accepted::seq`).
    seq: u64,
    /// Largest page the list endpoints return (Stripe's `limit`, at most this).
    page_size: usize,
    /// A broken list: `has_more` is always true and the last page comes back forever.
    stuck_pages: bool,
    /// Usage Stripe holds that no meter event of meterline's carried (added "server side").
    extra: Vec<Accepted>,
    /// GET requests that passed auth.
    reads: u64,
}

struct Shared {
    api_key: String,
    clock_start: Mutex<(DateTime<Utc>, Instant)>,
    delay: Mutex<Duration>,
    book: Mutex<Book>,
    connections: AtomicU64,
    requests: AtomicU64,
    stop: AtomicBool,
}

pub struct FakeStripe {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the handler decided for one request.
struct Reply {
    status: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
    /// Close without writing anything.
    drop: bool,
    delay: Duration,
    /// Trickle bytes forever instead of answering.
    trickle: bool,
}

impl Reply {
    fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
            drop: false,
            delay: Duration::ZERO,
            trickle: false,
        }
    }

    fn error(
        status: u16,
        kind: &str,
        code: Option<&str>,
        message: &str,
        param: Option<&str>,
    ) -> Reply {
        let mut error = serde_json::json!({ "type": kind, "message": message });
        if let Some(code) = code {
            error["code"] = code.into();
        }
        if let Some(param) = param {
            error["param"] = param.into();
        }
        Reply::json(status, serde_json::json!({ "error": error }).to_string())
    }

    fn should_retry(mut self, value: bool) -> Reply {
        self.headers
            .push(("Stripe-Should-Retry", value.to_string()));
        self
    }
}

impl FakeStripe {
    /// Start on an ephemeral loopback port. `now` is the server's clock at start (it runs on
    /// from there), so tests can pretend a time like the CLI's --now.
    pub fn start(api_key: &str, now: DateTime<Utc>) -> FakeStripe {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            api_key: api_key.to_string(),
            clock_start: Mutex::new((now, Instant::now())),
            delay: Mutex::new(Duration::ZERO),
            book: Mutex::new(Book {
                page_size: 100,
                ..Book::default()
            }),
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if shared.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    shared.connections.fetch_add(1, Ordering::SeqCst);
                    let shared = Arc::clone(&shared);
                    std::thread::Builder::new()
                        .name("fake-stripe".into())
                        .spawn(move || serve(stream, &shared))
                        .expect("spawn a connection thread");
                }
            })
        };
        FakeStripe {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The API base to give meterline (STRIPE_API_BASE).
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        self.shared.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Apply `fault` to the next `times` valid requests (after any already queued).
    pub fn inject(&self, fault: Fault, times: usize) {
        let mut book = self.book();
        for _ in 0..times {
            book.faults.push_back(fault.clone());
        }
    }

    pub fn clear_faults(&self) {
        self.book().faults.clear();
    }

    pub fn faults_left(&self) -> usize {
        self.book().faults.len()
    }

    /// Move the server's clock (it runs on from `now`).
    pub fn set_now(&self, now: DateTime<Utc>) {
        *self.shared.clock_start.lock().unwrap() = (now, Instant::now());
    }

    /// Delay every answer (to make a sync take a while).
    pub fn set_delay(&self, delay: Duration) {
        *self.shared.delay.lock().unwrap() = delay;
    }

    /// Answer events of this Stripe customer with "No such customer".
    pub fn refuse_customer(&self, customer: &str) {
        self.book().refuse_customers.insert(customer.to_string());
    }

    pub fn accept_customer(&self, customer: &str) {
        self.book().refuse_customers.remove(customer);
    }

    pub fn accepted(&self) -> HashMap<String, Accepted> {
        self.book().accepted.clone()
    }

    /// Accepted identifiers in order of arrival.
    pub fn arrivals(&self) -> Vec<String> {
        self.book().arrivals.clone()
    }

    pub fn accepted_count(&self) -> usize {
        self.book().accepted.len()
    }

    /// POSTs per identifier that passed auth (resends and retries included).
    pub fn posts(&self) -> HashMap<String, u32> {
        self.book().posts.clone()
    }

    /// Resends answered with "An event already exists with identifier".
    pub fn duplicates(&self) -> u64 {
        self.book().duplicates
    }

    /// Answers replayed from the idempotency cache.
    pub fn replays(&self) -> u64 {
        self.book().replays
    }

    /// Requests refused by validation, with Stripe's message.
    pub fn refused(&self) -> Vec<(u16, String)> {
        self.book().refused.clone()
    }

    pub fn missing_idempotency_keys(&self) -> u64 {
        self.book().missing_idempotency_key
    }

    /// The most requests ever in flight at once for one (customer, event name).
    pub fn max_in_flight_per_key(&self) -> u32 {
        self.book().max_in_flight_per_key
    }

    pub fn max_in_flight(&self) -> u32 {
        self.book().max_in_flight_total
    }

    pub fn versions(&self) -> HashSet<String> {
        self.book().versions.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Create an active billing meter for `event_name`, aggregating by `sum`; returns its id.
    pub fn add_meter(&self, event_name: &str) -> String {
        self.add_meter_with(event_name, "sum")
    }

    /// Create an active billing meter for `event_name` aggregating by `formula` (sum, count
    /// or last); returns its id.
    pub fn add_meter_with(&self, event_name: &str, formula: &str) -> String {
        let mut book = self.book();
        let id = format!("mtr_test{:04}", book.meters.len() + 1);
        book.meters.push((
            id.clone(),
            event_name.to_string(),
            "active".into(),
            formula.to_string(),
        ));
        id
    }

    /// Deactivate the meter of `event_name` (Stripe lists it with status "inactive").
    pub fn deactivate_meter(&self, event_name: &str) {
        for meter in &mut self.book().meters {
            if meter.1 == event_name {
                meter.2 = "inactive".into();
            }
        }
    }

    /// List pages hold at most `n` items (to exercise pagination).
    pub fn set_page_size(&self, n: usize) {
        self.book().page_size = n.max(1);
    }

    /// Lists that never end: past the last item the last page is answered again, has_more.
    pub fn set_stuck_pages(&self) {
        self.book().stuck_pages = true;
    }

    /// Usage that Stripe holds without meterline having sent it (a drift).
    pub fn add_usage(&self, customer: &str, event_name: &str, value: i64, timestamp: i64) {
        let mut book = self.book();
        book.seq += 1;
        let seq = book.seq;
        book.extra.push(Accepted {
            identifier: format!("extra-{timestamp}-{value}"),
            event_name: event_name.into(),
            customer: customer.into(),
            value,
            timestamp,
            dimensions: BTreeMap::new(),
            seq,
        });
    }

    /// Forget an accepted event (as if Stripe never received it).
    pub fn forget(&self, identifier: &str) {
        self.book().accepted.remove(identifier);
    }

    /// GET requests that passed auth.
    pub fn reads(&self) -> u64 {
        self.book().reads
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(handle) = self.acceptor.take() {
            let _ = handle.join();
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    // Idle connections are closed after a while, as real servers do.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_nodelay(true);
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let key = flight_key(&request);
        enter(shared, &key);
        let reply = handle(shared, &request);
        let pause = reply.delay + *shared.delay.lock().unwrap();
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        leave(shared, &key);
        if reply.drop {
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        }
        if reply.trickle {
            let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nX-Trickle: ");
            while !shared.stop.load(Ordering::SeqCst) && writer.write_all(b"a").is_ok() {
                std::thread::sleep(Duration::from_millis(200));
            }
            return;
        }
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRequest-Id: req_{}\r\n",
            reply.status,
            reason(reply.status),
            reply.body.len(),
            shared.requests.load(Ordering::SeqCst)
        );
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(&reply.body);
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
        if request
            .headers
            .get("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
        {
            return;
        }
    }
}

fn flight_key(request: &Request) -> (String, String) {
    let form = parse_form(&request.body).unwrap_or_default();
    let get = |k: &str| {
        form.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    (get("payload[stripe_customer_id]"), get("event_name"))
}

fn enter(shared: &Shared, key: &(String, String)) {
    let mut book = shared.book.lock().unwrap();
    let n = book.in_flight.entry(key.clone()).or_default();
    *n += 1;
    let n = *n;
    book.max_in_flight_per_key = book.max_in_flight_per_key.max(n);
    book.in_flight_total += 1;
    book.max_in_flight_total = book.max_in_flight_total.max(book.in_flight_total);
}

fn leave(shared: &Shared, key: &(String, String)) {
    let mut book = shared.book.lock().unwrap();
    if let Some(n) = book.in_flight.get_mut(key) {
        *n -= 1;
    }
    book.in_flight_total -= 1;
}

const FIELDS: [&str; 5] = [
    "event_name",
    "payload[stripe_customer_id]",
    "payload[value]",
    "identifier",
    "timestamp",
];

/// Stripe's validation of one meter event; the event or the 400 Stripe would give.
fn validate(shared: &Shared, request: &Request) -> Result<Accepted, Reply> {
    let invalid = |message: &str, param: &str| {
        Reply::error(
            400,
            "invalid_request_error",
            Some("parameter_invalid"),
            message,
            Some(param),
        )
        .should_retry(false)
    };
    let content_type = request
        .headers
        .get("content-type")
        .map(String::as_str)
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(invalid(
            "Invalid request: the body must be application/x-www-form-urlencoded",
            "",
        ));
    }
    let form = parse_form(&request.body).ok_or_else(|| invalid("Invalid form encoding", ""))?;
    let mut values: HashMap<&str, String> = HashMap::new();
    let mut dimensions = BTreeMap::new();
    for (name, value) in &form {
        let other_payload = name
            .strip_prefix("payload[")
            .and_then(|k| k.strip_suffix(']'))
            .filter(|k| !FIELDS.contains(&name.as_str()) && !k.is_empty() && !k.contains('['));
        if let Some(key) = other_payload {
            if dimensions.insert(key.to_string(), value.clone()).is_some() {
                return Err(invalid(
                    &format!("Received duplicate parameter: {name}"),
                    name,
                ));
            }
            continue;
        }
        let Some(field) = FIELDS.iter().find(|f| **f == name.as_str()) else {
            return Err(invalid(
                &format!("Received unknown parameter: {name}"),
                name,
            ));
        };
        if values.insert(field, value.clone()).is_some() {
            return Err(invalid(
                &format!("Received duplicate parameter: {name}"),
                name,
            ));
        }
    }
    for field in FIELDS {
        if values.get(field).is_none_or(|v| v.is_empty()) {
            return Err(Reply::error(
                400,
                "invalid_request_error",
                Some("parameter_missing"),
                &format!("Missing required param: {field}."),
                Some(field),
            )
            .should_retry(false));
        }
    }
    let identifier = values["identifier"].clone();
    let event_name = values["event_name"].clone();
    if identifier.len() > 100 {
        return Err(invalid(
            "identifier must be at most 100 characters",
            "identifier",
        ));
    }
    if event_name.len() > 100 {
        return Err(invalid(
            "event_name must be at most 100 characters",
            "event_name",
        ));
    }
    let customer = values["payload[stripe_customer_id]"].clone();
    if !customer.starts_with("cus_") {
        return Err(invalid(
            "Invalid customer id",
            "payload[stripe_customer_id]",
        ));
    }
    let value_text = &values["payload[value]"];
    let value: i64 = match value_text.parse() {
        Ok(v) if value_text.bytes().all(|b| b.is_ascii_digit()) => v,
        _ => {
            return Err(invalid(
                "payload[value] must be a whole number, sent as a string",
                "payload[value]",
            ));
        }
    };
    let timestamp: i64 = values["timestamp"]
        .parse()
        .map_err(|_| invalid("Invalid integer: timestamp", "timestamp"))?;
    let (start, since) = *shared.clock_start.lock().unwrap();
    let now = start + chrono::Duration::from_std(since.elapsed()).unwrap();
    let oldest = (now - chrono::Duration::days(35)).timestamp();
    let newest = (now + chrono::Duration::minutes(5)).timestamp();
    if timestamp < oldest || timestamp > newest {
        return Err(invalid(
            "Timestamp must be within the past 35 calendar days and at most 5 minutes in the future",
            "timestamp",
        ));
    }
    Ok(Accepted {
        identifier,
        event_name,
        customer,
        value,
        timestamp,
        dimensions,
        seq: 0,
    })
}

/// A page of `items` after `starting_after` (by id), Stripe's list shape.
fn list_page(
    items: Vec<serde_json::Value>,
    query: &HashMap<String, String>,
    book: &Book,
    url: &str,
) -> Reply {
    let cap = book.page_size;
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100)
        .min(cap);
    let from = match query.get("starting_after") {
        Some(after) => match items.iter().position(|i| i["id"] == after.as_str()) {
            Some(at) => at + 1,
            None => {
                return Reply::error(
                    400,
                    "invalid_request_error",
                    Some("resource_missing"),
                    &format!("No such object: '{after}'"),
                    Some("starting_after"),
                );
            }
        },
        None => 0,
    };
    let mut page: Vec<_> = items.iter().skip(from).take(limit).cloned().collect();
    let mut has_more = from + page.len() < items.len();
    if book.stuck_pages {
        has_more = true;
        if page.is_empty() {
            page.extend(items.last().cloned());
        }
    }
    Reply::json(
        200,
        serde_json::json!({ "object": "list", "data": page, "has_more": has_more, "url": url })
            .to_string(),
    )
}

/// Stripe's reads: the meter list and a meter's event summaries.
fn handle_get(shared: &Shared, request: &Request) -> Reply {
    let (path, query_text) = request.path.split_once('?').unwrap_or((&request.path, ""));
    let query: HashMap<String, String> = parse_form(query_text)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut book = shared.book.lock().unwrap();
    book.reads += 1;
    match book.faults.pop_front() {
        Some(Fault::TooManyRequests) => {
            return Reply::error(
                429,
                "rate_limit_error",
                Some("rate_limit"),
                "Too many requests",
                None,
            );
        }
        Some(Fault::RateLimit400) => {
            return Reply::error(
                400,
                "invalid_request_error",
                Some("rate_limit"),
                "Request rate limit exceeded",
                None,
            );
        }
        Some(Fault::Conflict) => {
            return Reply::error(
                409,
                "invalid_request_error",
                Some("lock_timeout"),
                "Conflict",
                None,
            );
        }
        Some(Fault::ServerError { .. } | Fault::RecordThenServerError) => {
            return Reply::error(500, "api_error", None, "An unknown error occurred", None);
        }
        Some(Fault::Drop | Fault::RecordThenDrop) => {
            let mut reply = Reply::json(0, String::new());
            reply.drop = true;
            return reply;
        }
        Some(Fault::Unauthorized) => {
            return Reply::error(
                401,
                "invalid_request_error",
                None,
                "Expired API Key provided",
                None,
            );
        }
        Some(Fault::RefuseWith(message)) => {
            return Reply::error(400, "invalid_request_error", None, &message, None)
                .should_retry(false);
        }
        Some(Fault::Trickle) => {
            let mut reply = Reply::json(0, String::new());
            reply.trickle = true;
            return reply;
        }
        Some(Fault::Slow(delay)) => {
            // Answered late: the client gives up and asks again (reads change nothing).
            let mut reply = Reply::json(500, String::new());
            reply.delay = delay;
            return reply;
        }
        None => {}
    }
    if path == "/v1/billing/meters" {
        let items = book
            .meters
            .iter()
            .map(|(id, name, status, formula)| {
                serde_json::json!({
                    "id": id, "object": "billing.meter", "event_name": name, "status": status,
                    "default_aggregation": { "formula": formula },
                    "customer_mapping": { "event_payload_key": "stripe_customer_id", "type": "by_id" },
                    "value_settings": { "event_payload_key": "value" },
                })
            })
            .collect();
        return list_page(items, &query, &book, path);
    }
    let summaries = path
        .strip_prefix("/v1/billing/meters/")
        .and_then(|rest| rest.strip_suffix("/event_summaries"));
    let Some(meter_id) = summaries else {
        return Reply::error(
            404,
            "invalid_request_error",
            None,
            &format!("Unrecognized request URL (GET {path})"),
            None,
        );
    };
    let Some((event_name, formula)) = book
        .meters
        .iter()
        .find(|m| m.0 == meter_id)
        .map(|m| (m.1.clone(), m.3.clone()))
    else {
        return Reply::error(
            404,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such billing meter: '{meter_id}'"),
            Some("id"),
        );
    };
    let number = |name: &str| query.get(name).and_then(|v| v.parse::<i64>().ok());
    let (Some(customer), Some(start), Some(end)) = (
        query.get("customer"),
        number("start_time"),
        number("end_time"),
    ) else {
        return Reply::error(
            400,
            "invalid_request_error",
            Some("parameter_missing"),
            "customer, start_time and end_time are required",
            None,
        )
        .should_retry(false);
    };
    if start % 60 != 0 || end % 60 != 0 {
        return Reply::error(
            400,
            "invalid_request_error",
            Some("parameter_invalid"),
            "start_time and end_time must be aligned to minute boundaries",
            Some("start_time"),
        )
        .should_retry(false);
    }
    let events = book
        .accepted
        .values()
        .chain(book.extra.iter())
        .filter(|e| &e.customer == customer && e.event_name == event_name)
        .filter(|e| start <= e.timestamp && e.timestamp < end);
    // Each formula as Stripe aggregates: `last` is the value of the latest event in the
    // window (the latest timestamp; between equal ones, the latest to arrive).
    let value: i64 = match formula.as_str() {
        "count" => events.count() as i64,
        "last" => events
            .max_by_key(|e| (e.timestamp, e.seq))
            .map_or(0, |e| e.value),
        _ => events.map(|e| e.value).sum(),
    };
    let items = vec![serde_json::json!({
        "id": format!("mtrusg_{meter_id}_{start}"),
        "object": "billing.meter_event_summary",
        "aggregated_value": value as f64,
        "start_time": start,
        "end_time": end,
        "livemode": false,
        "meter": meter_id,
    })];
    list_page(items, &query, &book, path)
}

fn handle(shared: &Shared, request: &Request) -> Reply {
    if request.method == "GET" {
        let bearer = request
            .headers
            .get("authorization")
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer != Some(shared.api_key.as_str()) {
            return Reply::error(
                401,
                "invalid_request_error",
                None,
                "Invalid API Key provided: sk_test_****",
                None,
            );
        }
        return handle_get(shared, request);
    }
    if request.method != "POST" || request.path != "/v1/billing/meter_events" {
        return Reply::error(
            404,
            "invalid_request_error",
            None,
            &format!(
                "Unrecognized request URL ({} {})",
                request.method, request.path
            ),
            None,
        );
    }
    let bearer = request
        .headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer != Some(shared.api_key.as_str()) {
        return Reply::error(
            401,
            "invalid_request_error",
            None,
            "Invalid API Key provided: sk_test_****",
            None,
        );
    }
    let mut book = shared.book.lock().unwrap();
    match request.headers.get("stripe-version") {
        Some(version) if !version.is_empty() => {
            book.versions.insert(version.clone());
        }
        _ => {
            let reply = Reply::error(
                400,
                "invalid_request_error",
                None,
                "This test server requires an explicit Stripe-Version header",
                None,
            );
            book.refused.push((400, "missing Stripe-Version".into()));
            return reply;
        }
    }
    let event = match validate(shared, request) {
        Ok(event) => event,
        Err(reply) => {
            book.refused.push((reply.status, reply.body.clone()));
            return reply;
        }
    };
    *book.posts.entry(event.identifier.clone()).or_default() += 1;
    let idempotency_key = request.headers.get("idempotency-key").cloned();
    match &idempotency_key {
        None => book.missing_idempotency_key += 1,
        Some(key) => {
            if let Some((body, status, saved)) = book.idempotency.get(key).cloned() {
                if body != request.body {
                    return Reply::error(
                        400,
                        "idempotency_error",
                        None,
                        "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                        None,
                    );
                }
                book.replays += 1;
                let mut reply = Reply::json(status, saved);
                reply.headers.push(("Idempotent-Replayed", "true".into()));
                return reply;
            }
        }
    }
    let fault = book.faults.pop_front();
    let save = |book: &mut Book, reply: &Reply| {
        if let Some(key) = &idempotency_key {
            book.idempotency.insert(
                key.clone(),
                (request.body.clone(), reply.status, reply.body.clone()),
            );
        }
    };
    match fault {
        Some(Fault::TooManyRequests) => {
            return Reply::error(
                429,
                "rate_limit_error",
                Some("rate_limit"),
                "Too many requests",
                None,
            );
        }
        Some(Fault::RateLimit400) => {
            return Reply::error(
                400,
                "invalid_request_error",
                Some("rate_limit"),
                "Request rate limit exceeded",
                None,
            );
        }
        Some(Fault::Conflict) => {
            return Reply::error(
                409,
                "invalid_request_error",
                Some("lock_timeout"),
                "Conflict",
                None,
            );
        }
        Some(Fault::ServerError { should_retry }) => {
            let reply = Reply::error(500, "api_error", None, "An unknown error occurred", None);
            return match should_retry {
                Some(v) => reply.should_retry(v),
                None => reply,
            };
        }
        Some(Fault::Unauthorized) => {
            return Reply::error(
                401,
                "invalid_request_error",
                None,
                "Expired API Key provided",
                None,
            );
        }
        Some(Fault::Drop) => {
            let mut reply = Reply::json(0, String::new());
            reply.drop = true;
            return reply;
        }
        Some(Fault::RefuseWith(message)) => {
            return Reply::error(400, "invalid_request_error", None, &message, None)
                .should_retry(false);
        }
        Some(Fault::Trickle) => {
            let mut reply = Reply::json(0, String::new());
            reply.trickle = true;
            return reply;
        }
        _ => {}
    }
    if book.accepted.contains_key(&event.identifier) {
        book.duplicates += 1;
        return Reply::error(
            400,
            "invalid_request_error",
            None,
            &format!(
                "An event already exists with identifier {}.",
                event.identifier
            ),
            Some("identifier"),
        )
        .should_retry(false);
    }
    if book.refuse_customers.contains(&event.customer) {
        let reply = Reply::error(
            400,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such customer: '{}'", event.customer),
            Some("payload[stripe_customer_id]"),
        )
        .should_retry(false);
        book.refused.push((400, reply.body.clone()));
        return reply;
    }
    book.seq += 1;
    let mut event = event;
    event.seq = book.seq;
    book.accepted
        .insert(event.identifier.clone(), event.clone());
    book.arrivals.push(event.identifier.clone());
    let mut payload = serde_json::json!({
        "stripe_customer_id": event.customer, "value": event.value.to_string(),
    });
    for (key, value) in &event.dimensions {
        payload[key] = value.clone().into();
    }
    let receipt = serde_json::json!({
        "object": "billing.meter_event",
        "created": event.timestamp,
        "event_name": event.event_name,
        "identifier": event.identifier,
        "livemode": false,
        "payload": payload,
        "timestamp": event.timestamp,
    })
    .to_string();
    let mut reply = Reply::json(200, receipt);
    match fault {
        Some(Fault::RecordThenServerError) => {
            reply = Reply::error(500, "api_error", None, "An unknown error occurred", None);
        }
        Some(Fault::RecordThenDrop) => reply.drop = true,
        Some(Fault::Slow(delay)) => reply.delay = delay,
        _ => {}
    }
    if !reply.drop {
        save(&mut book, &reply);
    }
    reply
}
