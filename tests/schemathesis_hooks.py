"""schemathesis hooks for tests/integration/openapi.rs.

Generated requests never carry a `callback_url`: a fuzzer's URLs name real hosts on the internet,
and the ingress would deliver letters to them. The property is taken out of the document as
schemathesis loads it; the webhook path has its own integration tests
(tests/integration/webhooks.rs) against a receiver on loopback.
"""

import schemathesis


@schemathesis.hook
def before_load_schema(context, raw_schema):
    for name in ("CoverLetterJson", "CoverLetterForm"):
        raw_schema["components"]["schemas"][name]["properties"].pop("callback_url")
