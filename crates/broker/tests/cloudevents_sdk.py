"""The official Python CloudEvents SDK's side of the broker's interoperability test
(cloudevents_sdk.rs): it builds the HTTP requests a Python publisher sends, and parses the
events the broker delivers. The Rust test sends, pulls and compares; this script only speaks
the SDK.

    python cloudevents_sdk.py build   -> {"requests": [...], "expected": [...]} on stdout
    python cloudevents_sdk.py parse   <- [{"headers": {...}, "body_b64": "..."}] on stdin
                                      -> [event, ...] on stdout

An event is written canonically, so both sides compare plain JSON: its attributes (times in
ISO 8601) and its data as {"json": ...}, {"text": ...} or {"base64": ...}.
"""

import base64
import json
import sys
from datetime import datetime, timezone

from cloudevents.core.bindings import http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

TIME = datetime(2026, 12, 7, 10, 30, 0, 123456, tzinfo=timezone.utc)


def event(event_id, data, **attributes):
    attributes = {"id": event_id, "source": "/py/shop", "type": "t.a", "time": TIME, **attributes}
    return CloudEvent(attributes, data)


def events():
    """Every kind of event a Python publisher sends, by content mode."""
    structured = event(
        "structured-json",
        {"total": 12, "items": ["a", "b"]},
        datacontenttype="application/json",
        subject="order 42",
        priority=5,
    )
    binary_json = event("binary-json", {"total": 7}, datacontenttype="application/json")
    binary_text = event(
        "binary-text",
        "héllo, wörld",
        datacontenttype="text/plain; charset=utf-8",
        subject='café "100%" au lait',
        city="zürich",
    )
    binary_bytes = event(
        "binary-bytes", b"\x00\x01\xfe\xff", datacontenttype="application/octet-stream"
    )
    batch = [
        event("batch-json", {"n": 1}, datacontenttype="application/json"),
        event("batch-text", "plain words", datacontenttype="text/plain"),
    ]
    return structured, [binary_json, binary_text, binary_bytes], batch


def request(mode, message):
    return {
        "mode": mode,
        "headers": message.headers,
        "body_b64": base64.b64encode(message.body).decode(),
    }


def build():
    structured, binaries, batch = events()
    requests = [request("structured", http.to_structured_event(structured))]
    requests += [request("binary", http.to_binary_event(e)) for e in binaries]
    # The SDK has no batch writer: a batch is a JSON array of events in the JSON format.
    fmt = JSONFormat()
    array = b"[" + b",".join(fmt.write(e) for e in batch) + b"]"
    requests.append(
        {
            "mode": "batch",
            "headers": {"content-type": "application/cloudevents-batch+json"},
            "body_b64": base64.b64encode(array).decode(),
        }
    )
    expected = [canonical(e) for e in [structured, *binaries, *batch]]
    return {"requests": requests, "expected": expected}


def canonical(e):
    attributes = {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in e.get_attributes().items()
        if v is not None
    }
    data = e.get_data()
    if data is None:
        shown = None
    elif isinstance(data, (bytes, bytearray)):
        shown = {"base64": base64.b64encode(data).decode()}
    elif isinstance(data, str):
        shown = {"text": data}
    else:
        shown = {"json": data}
    return {"attributes": attributes, "data": shown}


def parse(messages):
    parsed = []
    for m in messages:
        message = http.HTTPMessage(headers=m["headers"], body=base64.b64decode(m["body_b64"]))
        parsed.append(canonical(http.from_http_event(message)))
    return parsed


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        json.dump(build(), sys.stdout)
    elif sys.argv[1:] == ["parse"]:
        json.dump(parse(json.load(sys.stdin)), sys.stdout)
    else:
        sys.exit("usage: cloudevents_sdk.py build|parse")
