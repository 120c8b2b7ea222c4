"""The packages export exactly the names we mean to support (httpx's habit)."""

from __future__ import annotations

import subprocess
import sys

import brand_adapters
import hub


def test_hub_exports() -> None:
    assert hub.__all__ == [
        "MAX_PAYLOAD_BYTES",
        "PROTOCOL_VERSION",
        "Envelope",
        "FoyerError",
        "Manifest",
        "ProtocolError",
        "Topics",
        "decode",
        "encode",
        "new_id",
    ]
    for name in hub.__all__:
        assert name.isupper() or getattr(hub, name).__module__.startswith("hub.")


def test_brand_adapters_exports() -> None:
    assert brand_adapters.__all__ == [
        "ADAPTERS",
        "DEMO_BRANDS",
        "Answer",
        "BrandApp",
        "Incoming",
        "MessageHandler",
        "load_manifest",
        "manifests",
    ]


def test_importing_the_sdk_does_not_load_the_web_server_or_the_broker() -> None:
    code = (
        "import sys, brand_adapters.sdk; "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'amqtt') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
