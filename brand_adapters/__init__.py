"""What brands run to join the Foyer network: the SDK, the registered adapters and their runner."""

from brand_adapters.registry import ADAPTERS, DEMO_BRANDS, load_manifest, manifests
from brand_adapters.sdk import Answer, BrandApp, Incoming, MessageHandler

__all__ = [
    "ADAPTERS",
    "DEMO_BRANDS",
    "Answer",
    "BrandApp",
    "Incoming",
    "MessageHandler",
    "load_manifest",
    "manifests",
]
