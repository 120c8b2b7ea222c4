"""The explicit registry of brand adapters shipped with Foyer.

Each adapter is a folder ``brand_adapters/<id>/`` holding ``manifest.json``
(whose ``id`` is the folder name) and an ``__init__.py`` with a
``setup(app)``/``teardown(app)`` pair. Adapters are listed here by hand, never
discovered by scanning: what runs is what was reviewed.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from hub.errors import ManifestError, UnknownBrand
from hub.protocol import Manifest

__all__ = [
    "ADAPTERS",
    "DEMO_BRANDS",
    "TEST_BRANDS",
    "adapter_dir",
    "load_adapter",
    "load_manifest",
    "manifests",
]

ADAPTERS: dict[str, str] = {
    "sportissimo": "brand_adapters.sportissimo",
    "energie_claire": "brand_adapters.energie_claire",
    "instant": "brand_adapters.instant",
    "offhours": "brand_adapters.offhours",
}

DEMO_BRANDS: tuple[str, ...] = ("sportissimo", "energie_claire")
TEST_BRANDS: frozenset[str] = frozenset({"instant", "offhours"})  # in the directory only when asked for


def adapter_dir(adapter_id: str) -> Path:
    if adapter_id not in ADAPTERS:
        raise UnknownBrand(f"no brand adapter named {adapter_id!r}; known: {', '.join(sorted(ADAPTERS))}")
    return Path(__file__).parent / adapter_id


def load_manifest(adapter_id: str) -> Manifest:
    path = adapter_dir(adapter_id) / "manifest.json"
    manifest = Manifest.from_json(path.read_bytes(), source=str(path))
    if manifest.id != adapter_id:
        raise ManifestError(f"{path}: id {manifest.id!r} must equal the folder name {adapter_id!r}")
    return manifest


def load_adapter(adapter_id: str) -> ModuleType:
    adapter_dir(adapter_id)
    module = importlib.import_module(ADAPTERS[adapter_id])
    for name in ("setup", "teardown"):
        if not callable(getattr(module, name, None)):
            raise ManifestError(f"adapter {adapter_id!r} has no {name}(app) function")
    return module


def manifests(*, with_test: Iterable[str] = ()) -> list[Manifest]:
    """The hub's built-in brand directory: every registered adapter's manifest.

    Test brands (``TEST_BRANDS``) are left out unless named in ``with_test``.
    """
    wanted = set(with_test)
    return [
        load_manifest(adapter_id)
        for adapter_id in ADAPTERS
        if adapter_id not in TEST_BRANDS or adapter_id in wanted
    ]
