"""The official Python SDKs of Stripe, OpenMeter and Lago against a real `meterline serve`.

Run by tests/compat_sdk.rs, which starts the server and sets up the database:
  METERLINE_BASE   http://127.0.0.1:PORT
  METERLINE_TOKEN  a meterline token
  METERLINE_NOW_UNIX  the server's clock at start (Unix seconds); event times are set from it
Customers: "acme" (plan pro, mapped to cus_AcmeSdk1, no cap), "capped" (plan free,
1,000 included, hard cap, mapped to cus_CappedSdk1). plans.toml takes the quantity of
meterline_usage events from the payload field "tokens" for CloudEvents and Lago.

Each SDK sends events through its base URL; every call is resent with the same identifier /
id / transaction_id and must record nothing twice; a hard cap raises the SDK's error; a bad
token raises its auth error. Counters are read back through the native API after each step.
Prints "compat_sdk: ok" at the end; any failure raises (exit code 1).

`run.py meters` runs the multi-meter suites instead (compat_sdk.rs's METER_PLANS): meters
"requests" (count, Stripe event "api_requests"; free includes 3, hard cap) and "tokens" (sum of
the property "tokens" by "model", Stripe event "ai_tokens"). Each SDK records to both meters
in one call or batch; the payload is the event's properties; a name matching no meter raises
the SDK's error; a capped meter refuses while the other records.

`run.py types` runs the OpenMeter SDK with event types (`openmeter_types`).
"""

import json
import os
import sys
import time
import urllib.request

import stripe
from corehttp.exceptions import ClientAuthenticationError, HttpResponseError
from lago_python_client.client import Client as LagoClient
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import BatchEvent as LagoBatchEvent
from lago_python_client.models import Event as LagoEvent
from openmeter import Client as OpenMeterClient
from openmeter.models import Event as CloudEvent

BASE = os.environ["METERLINE_BASE"]
TOKEN = os.environ["METERLINE_TOKEN"]
BAD_TOKEN = "mlt_" + "0" * 43
NOW = int(os.environ.get("METERLINE_NOW_UNIX") or time.time())
AN_HOUR_AGO = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - 3600))


def check(customer, meter=None):
    query = f"?meter={meter}" if meter else ""
    request = urllib.request.Request(
        f"{BASE}/v1/customers/{customer}/check{query}",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request) as answer:
        return json.load(answer)


def used(customer, meter=None):
    return check(customer, meter)["used"]


def meters(customer):
    """(requests, tokens) used, and the tokens meter's groups as {model: used}."""
    tokens = check(customer, "tokens")
    groups = {g["key"]["model"]: g["used"] for g in tokens["groups"]}
    return used(customer, "requests"), tokens["used"], groups


def expect(error_type, call, check=lambda e: True):
    """Run `call`; it must raise `error_type` and pass `check`. Returns the error."""
    try:
        call()
    except error_type as e:
        assert check(e), f"unexpected {error_type.__name__}: {e!r}"
        return e
    raise AssertionError(f"expected {error_type.__name__}")


def stripe_sdk():
    def client(key):
        return stripe.StripeClient(
            key,
            base_addresses={"api": f"{BASE}/stripe"},
            max_network_retries=0,
        )

    meter_events = client(TOKEN).v1.billing.meter_events

    def send(customer, value, identifier=None, **extra):
        params = {
            "event_name": "meterline_usage",
            "payload": {"stripe_customer_id": customer, "value": value},
            **extra,
        }
        if identifier:
            params["identifier"] = identifier
        return meter_events.create(params=params)

    before = used("acme")
    first = send("cus_AcmeSdk1", "5", "sdk-stripe-1")
    assert first.object == "billing.meter_event", first
    assert first.identifier == "sdk-stripe-1" and first.event_name == "meterline_usage"
    assert first.payload["value"] == "5"
    second = send("cus_AcmeSdk1", "7", "sdk-stripe-2", timestamp=first.timestamp - 60)
    assert second.timestamp == first.timestamp - 60
    assert used("acme") == before + 12
    # Resent: Stripe's answer for a known identifier, and nothing counted twice.
    for identifier, value in (("sdk-stripe-1", "5"), ("sdk-stripe-2", "7")):
        expect(
            stripe.InvalidRequestError,
            lambda: send("cus_AcmeSdk1", value, identifier),
            lambda e: "already exists" in str(e),
        )
    assert used("acme") == before + 12
    # A hard cap: 402, which Stripe's SDK raises as CardError, with our code.
    capped = used("capped")
    error = expect(stripe.CardError, lambda: send("cus_CappedSdk1", "5000", "sdk-stripe-cap"))
    assert error.code == "meterline_hard_cap_reached", error.code
    assert used("capped") == capped
    # An unmapped Stripe customer; a value that is not a whole number.
    expect(stripe.InvalidRequestError, lambda: send("cus_Nobody", "1"))
    error = expect(stripe.InvalidRequestError, lambda: send("cus_AcmeSdk1", "1.5"))
    assert error.param == "payload[value]", error.param
    # A bad token.
    expect(
        stripe.AuthenticationError,
        lambda: client(BAD_TOKEN).v1.billing.meter_events.create(
            params={
                "event_name": "meterline_usage",
                "payload": {"stripe_customer_id": "cus_AcmeSdk1", "value": "1"},
            }
        ),
    )
    assert used("acme") == before + 12


def openmeter_sdk():
    client = OpenMeterClient(endpoint=f"{BASE}/openmeter", token=TOKEN)

    def event(id, tokens, customer="acme", source="sdk-tests"):
        return CloudEvent(
            id=id,
            source=source,
            specversion="1.0",
            type="meterline_usage",
            subject=customer,
            time=AN_HOUR_AGO,
            data={"tokens": tokens, "model": "small"},
        )

    before = used("acme")
    client.events.ingest_event(event("ce-1", 3))
    client.events.ingest_events([event("ce-2", 4), event("ce-3", 6)])
    client.events.ingest_events_json(event("ce-4", 10))
    # The same id from another source is another event.
    client.events.ingest_event(event("ce-1", 2, source="other-source"))
    assert used("acme") == before + 25, used("acme")
    # Resent: OpenMeter drops duplicates silently (204); nothing counted twice.
    client.events.ingest_event(event("ce-1", 3))
    client.events.ingest_events([event("ce-2", 4), event("ce-3", 6), event("ce-4", 10)])
    assert used("acme") == before + 25
    # A hard cap refuses one event of a batch: 402, the other one is recorded.
    capped = used("capped")
    batch = [event("ce-cap-ok", 1, "capped"), event("ce-cap-no", 5000, "capped")]
    error = expect(HttpResponseError, lambda: client.events.ingest_events(batch))
    assert error.status_code == 402, error.status_code
    assert used("capped") == capped + 1
    # Retrying the whole batch records nothing twice.
    expect(
        HttpResponseError,
        lambda: client.events.ingest_events(batch),
        lambda e: e.status_code == 402,
    )
    assert used("capped") == capped + 1
    # The configured value field is not a number.
    expect(
        HttpResponseError,
        lambda: client.events.ingest_event(event("ce-bad", "lots")),
        lambda e: e.status_code == 400,
    )
    # A bad token.
    bad = OpenMeterClient(endpoint=f"{BASE}/openmeter", token=BAD_TOKEN)
    expect(ClientAuthenticationError, lambda: bad.events.ingest_event(event("ce-x", 1)))
    assert used("acme") == before + 25


def lago_sdk():
    client = LagoClient(api_key=TOKEN, api_url=f"{BASE}/lago/")

    def event(transaction_id, tokens, customer="acme"):
        return LagoEvent(
            transaction_id=transaction_id,
            external_subscription_id=customer,
            code="meterline_usage",
            timestamp=NOW - 7200,
            precise_total_amount_cents=None,
            properties={"tokens": tokens},
        )

    before = used("acme")
    created = client.events.create(event("lago-1", 8))
    assert created.transaction_id == "lago-1" and created.code == "meterline_usage", created
    assert created.external_subscription_id == "acme"
    client.events.batch_create(LagoBatchEvent(events=[event("lago-2", 1), event("lago-3", 2)]))
    assert used("acme") == before + 11
    # Resent: answered as a success again; nothing counted twice.
    again = client.events.create(event("lago-1", 8))
    assert again.transaction_id == "lago-1"
    client.events.batch_create(LagoBatchEvent(events=[event("lago-2", 1), event("lago-3", 2)]))
    assert used("acme") == before + 11
    # A hard cap.
    capped = used("capped")
    error = expect(LagoApiError, lambda: client.events.create(event("lago-cap", 5000, "capped")))
    assert error.status_code == 402, error.status_code
    assert used("capped") == capped
    # A transaction id reused with other properties.
    error = expect(LagoApiError, lambda: client.events.create(event("lago-1", 9)))
    assert error.status_code == 422, error.status_code
    # A bad token.
    bad = LagoClient(api_key=BAD_TOKEN, api_url=f"{BASE}/lago/")
    error = expect(LagoApiError, lambda: bad.events.create(event("lago-x", 1)))
    assert error.status_code == 401, error.status_code
    assert used("acme") == before + 11


def stripe_meters():
    meter_events = stripe.StripeClient(
        TOKEN, base_addresses={"api": f"{BASE}/stripe"}, max_network_retries=0
    ).v1.billing.meter_events

    def send(event_name, customer, identifier, **payload):
        return meter_events.create(
            params={
                "event_name": event_name,
                "payload": {"stripe_customer_id": customer, "value": "1", **payload},
                "identifier": identifier,
            }
        )

    requests, tokens, groups = meters("acme")
    send("api_requests", "cus_AcmeSdk1", "sdk-m-req")
    answer = send("ai_tokens", "cus_AcmeSdk1", "sdk-m-tok", tokens="120", model="small")
    assert answer.event_name == "ai_tokens" and answer.payload["model"] == "small", answer
    send("ai_tokens", "cus_AcmeSdk1", "sdk-m-tok2", tokens="30", model="large")
    assert meters("acme") == (
        requests + 1,
        tokens + 150,
        {**groups, "small": groups.get("small", 0) + 120, "large": groups.get("large", 0) + 30},
    ), meters("acme")
    # Resent: already exists, nothing counted twice.
    expect(
        stripe.InvalidRequestError,
        lambda: send("ai_tokens", "cus_AcmeSdk1", "sdk-m-tok", tokens="120", model="small"),
        lambda e: "already exists" in str(e),
    )
    # The meter's id is not its Stripe event name; a nested payload member; a missing property.
    error = expect(
        stripe.InvalidRequestError, lambda: send("tokens", "cus_AcmeSdk1", "sdk-m-x1", tokens="5")
    )
    assert error.param == "event_name", error.param
    error = expect(
        stripe.InvalidRequestError,
        lambda: send("ai_tokens", "cus_AcmeSdk1", "sdk-m-x2", tokens="5", meta={"a": "1"}),
    )
    assert error.param == "payload[meta][a]", error.param
    error = expect(
        stripe.InvalidRequestError,
        lambda: send("ai_tokens", "cus_AcmeSdk1", "sdk-m-x3", model="small"),
    )
    assert error.param == "payload[tokens]", error.param
    assert meters("acme")[:2] == (requests + 1, tokens + 150)
    # capped's requests stop at 3; its tokens still record.
    for i in range(3):
        send("api_requests", "cus_CappedSdk1", f"sdk-m-cap{i}")
    error = expect(stripe.CardError, lambda: send("api_requests", "cus_CappedSdk1", "sdk-m-cap3"))
    assert error.code == "meterline_hard_cap_reached", error.code
    send("ai_tokens", "cus_CappedSdk1", "sdk-m-cap-tok", tokens="10", model="small")
    assert meters("capped")[:2] == (3, 10), meters("capped")


def openmeter_meters():
    client = OpenMeterClient(endpoint=f"{BASE}/openmeter", token=TOKEN)

    def event(id, kind, customer="acme", **data):
        return CloudEvent(
            id=id,
            source="sdk-meters",
            specversion="1.0",
            type=kind,
            subject=customer,
            time=AN_HOUR_AGO,
            data=data or None,
        )

    requests, tokens, groups = meters("acme")
    batch = [
        event("m-1", "requests"),
        event("m-2", "tokens", tokens=400, model="small"),
        event("m-3", "tokens", tokens=6, model="large"),
    ]
    client.events.ingest_events(batch)
    client.events.ingest_event(event("m-4", "requests"))
    expected = (
        requests + 2,
        tokens + 406,
        {**groups, "small": groups.get("small", 0) + 400, "large": groups.get("large", 0) + 6},
    )
    assert meters("acme") == expected, meters("acme")
    # Resent: dropped silently.
    client.events.ingest_events(batch)
    assert meters("acme") == expected
    # A type matching no meter id (ai_tokens is its Stripe event), a nested member: 400.
    for bad in (
        event("m-x1", "ai_tokens", tokens=1),
        event("m-x2", "tokens", tokens=1, meta={"a": 1}),
    ):
        expect(
            HttpResponseError,
            lambda: client.events.ingest_events([event("m-ok", "requests"), bad]),
            lambda e: e.status_code == 400,
        )
    assert meters("acme") == expected
    # capped (3 requests from the Stripe suite or none): a capped meter refuses in a batch,
    # the tokens event records.
    capped_requests, capped_tokens, _ = meters("capped")
    fill = [event(f"m-cap{i}", "requests", "capped") for i in range(4 - capped_requests)]
    batch = fill + [event("m-cap-tok", "tokens", "capped", tokens=7, model="small")]
    expect(
        HttpResponseError,
        lambda: client.events.ingest_events(batch),
        lambda e: e.status_code == 402,
    )
    assert meters("capped")[:2] == (3, capped_tokens + 7), meters("capped")


def lago_meters():
    client = LagoClient(api_key=TOKEN, api_url=f"{BASE}/lago/")

    def event(transaction_id, code, customer="acme", **properties):
        return LagoEvent(
            transaction_id=transaction_id,
            external_subscription_id=customer,
            code=code,
            timestamp=NOW - 7200,
            precise_total_amount_cents=None,
            properties=properties,
        )

    requests, tokens, groups = meters("acme")
    created = client.events.create(event("lm-1", "tokens", tokens=25, model="large"))
    assert created.code == "tokens", created
    client.events.batch_create(
        LagoBatchEvent(
            events=[event("lm-2", "requests"), event("lm-3", "tokens", tokens=5, model="small")]
        )
    )
    expected = (
        requests + 1,
        tokens + 30,
        {**groups, "small": groups.get("small", 0) + 5, "large": groups.get("large", 0) + 25},
    )
    assert meters("acme") == expected, meters("acme")
    # Resent: the same answer, nothing counted twice.
    again = client.events.create(event("lm-1", "tokens", tokens=25, model="large"))
    assert again.transaction_id == "lm-1"
    assert meters("acme") == expected
    # A code matching no meter: 404; a nested property: 400.
    error = expect(
        LagoApiError, lambda: client.events.create(event("lm-x1", "ai_tokens", tokens=1))
    )
    assert error.status_code == 404, error.status_code
    error = expect(
        LagoApiError,
        lambda: client.events.create(event("lm-x2", "tokens", tokens=1, meta={"a": 1})),
    )
    assert error.status_code == 400, error.status_code
    assert meters("acme") == expected
    # A capped meter in a batch: 402; the tokens event records.
    capped_requests, capped_tokens, _ = meters("capped")
    fill = [event(f"lm-cap{i}", "requests", "capped") for i in range(4 - capped_requests)]
    batch = fill + [event("lm-cap-tok", "tokens", "capped", tokens=3, model="small")]
    error = expect(LagoApiError, lambda: client.events.batch_create(LagoBatchEvent(events=batch)))
    assert error.status_code == 402, error.status_code
    assert meters("capped")[:2] == (3, capped_tokens + 3), meters("capped")


def openmeter_types():
    """`run.py types` (compat_sdk.rs's TYPE_PLANS, tests/fixtures/plans/ai_types.toml): a
    CloudEvent's type is an event type, as OpenMeter meters it. One `completion` event feeds
    requests, tokens (by model, priced per model on pro past 1,000) and active_users at once,
    all or nothing."""
    client = OpenMeterClient(endpoint=f"{BASE}/openmeter", token=TOKEN)

    def event(id, customer="acme", **data):
        return CloudEvent(
            id=id,
            source="sdk-types",
            specversion="1.0",
            type="completion",
            subject=customer,
            time=AN_HOUR_AGO,
            data=data,
        )

    def used_by_meter(customer):
        return {m["meter"]: m["used"] for m in check(customer)["meters"]}

    batch = [
        event("t-1", tokens=1200, model="large", user="ann"),
        event("t-2", tokens=30, model="small", user="bob"),
    ]
    client.events.ingest_events(batch)
    expected = {"requests": 2, "tokens": 1230, "active_users": 2, "images": 0}
    assert used_by_meter("acme") == expected, used_by_meter("acme")
    # Resent: nothing twice, on any meter.
    client.events.ingest_events(batch)
    assert used_by_meter("acme") == expected, used_by_meter("acme")
    # 200 large tokens past 1,000 at 0.00001, then 30 small at 0.000001.
    assert check("acme")["overage_total"] == "0.00203", check("acme")
    # A property one meter needs is missing: 400, and no meter counts the event.
    expect(
        HttpResponseError,
        lambda: client.events.ingest_event(event("t-3", tokens=5, model="small")),
        lambda e: e.status_code == 400,
    )
    assert used_by_meter("acme") == expected, used_by_meter("acme")
    # capped (free: 2 active users): a third user is refused on every meter.
    client.events.ingest_events(
        [event(f"t-c{i}", "capped", tokens=1, model="tiny", user=u) for i, u in enumerate("ab")]
    )
    expect(
        HttpResponseError,
        lambda: client.events.ingest_event(event("t-c3", "capped", tokens=1, model="tiny", user="c")),
        lambda e: e.status_code == 402,
    )
    capped = {"requests": 2, "tokens": 2, "active_users": 2, "images": 0}
    assert used_by_meter("capped") == capped, used_by_meter("capped")


if __name__ == "__main__":
    SUITES = {"stripe": stripe_sdk, "openmeter": openmeter_sdk, "lago": lago_sdk}
    METER_SUITES = {"stripe": stripe_meters, "openmeter": openmeter_meters, "lago": lago_meters}
    names = sys.argv[1:]
    if names[:1] == ["meters"]:
        SUITES = METER_SUITES
        names = names[1:]
    if names[:1] == ["types"]:
        SUITES = {"openmeter": openmeter_types}
        names = names[1:]
    for name in names or list(SUITES):
        SUITES[name]()
        print(f"compat_sdk: {name} ok", flush=True)
    print("compat_sdk: ok", flush=True)
