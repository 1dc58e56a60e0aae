"""schemathesis hooks for floe's tests.

- Every generated request that carries an Idempotency-Key gets a fresh UUIDv7, as the
  Iceberg spec requires of clients ("MUST generate a new key for a different operation");
  otherwise the spec's single example key is reused across operations and every later one
  is, rightly, a 422. floe's own tests cover invalid and reused keys.
- schemathesis 4.32.5 puts `?` and `#` of generated path parameters into the URL as they
  are, so the server receives another operation than the one schemathesis validates the
  answer against (`/namespaces/a?b/views/v` is a drop of namespace `a`). Such characters
  become `_`; every other character is still fuzzed. (The stateful phase takes names from
  responses without this hook, so the official-spec run leaves that phase out.)"""

import os
import time
import uuid

import schemathesis


def uuid7():
    ms = int(time.time() * 1000)
    b = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    b[6] = (b[6] & 0x0F) | 0x70
    b[8] = (b[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(b)))


@schemathesis.hook
def before_call(context, case, **kwargs):
    if case.path_parameters:
        for name, value in list(case.path_parameters.items()):
            if isinstance(value, str):
                case.path_parameters[name] = value.replace("?", "_").replace("#", "_")
    if case.headers:
        for name in list(case.headers):
            if name.lower() == "idempotency-key":
                case.headers[name] = uuid7()
