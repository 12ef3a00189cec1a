"""Schemathesis hooks for consentgate's NDJSON media type (loaded by
.ci/schemathesis.sh through SCHEMATHESIS_HOOKS).

- Requests: `POST /v1/checks/stream` takes `application/x-ndjson`; the generated
  value (one `CheckStreamLine`) is sent as one JSON line.
- Responses: `POST /v1/checks/stream` and `GET /v1/audit/export` answer
  `application/x-ndjson`. Every line must be JSON (a line that is not fails the
  run); the first line is what schemathesis validates against the declared
  line schema. An empty stream (an export of an empty range) has no line to
  validate and is skipped.
"""

import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def serialize_ndjson(ctx, value):
    if isinstance(value, (bytes, bytearray)):
        return {"data": bytes(value)}
    return {"data": (json.dumps(value) + "\n").encode("utf-8")}


@schemathesis.deserializer("application/x-ndjson")
def deserialize_ndjson(ctx, response):
    lines = [line for line in response.content.decode("utf-8").split("\n") if line.strip()]
    values = [json.loads(line) for line in lines]
    if not values:
        raise NotImplementedError("an empty stream has no line to validate")
    return values[0]
