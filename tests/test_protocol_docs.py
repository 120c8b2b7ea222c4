"""The protocol docs agree with the code: ``hub/protocol.py``, ``hub/crypto.py`` and ``hub/wire.py``.

``docs/asyncapi.yaml`` must list every message type, and must describe every
envelope, body and manifest model field for field: names, required fields,
types, limits and defaults. Every example in it and in ``docs/protocol.md`` must
be accepted by the code: envelopes with a clear body decode, sealed ones have no
body, and since the examples are made with published example keys, every
signature must verify and every sealed body must open. Its topics must be the
ones ``Topics`` builds, and its channels, its examples and the tables of
``docs/protocol.md`` must agree on which type travels which way. The Python
program in ``docs/protocol.md`` must sign and seal exactly as ``hub.crypto``
does. If the code changes and the docs do not, or the other way round, a test
here fails.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.signing
import pytest
import yaml
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

import hub.crypto
import hub.errors
import hub.protocol
from hub.crypto import DEFAULT_FUTURE_SKEW_MS, DEFAULT_WINDOW_MS, Header, Identity, signature_input
from hub.protocol import MAX_PAYLOAD_BYTES, MESSAGE_TYPES, Envelope, Manifest, Topics, decode, parse
from hub.wire import SEALED_TYPES, Wire

DOCS = Path(__file__).resolve().parent.parent / "docs"

# Fields the Python constructor (or hub.wire, for ``sig``) fills in, so the model
# does not require them, but that every sender, in any language, must put on the wire.
WIRE_REQUIRED = {"Envelope": {"v", "id", "ts", "sig"}}

# Fields the model requires once a sealed body is opened, but that the wire may leave
# out: a sealed envelope carries its body in ``sealed``.
WIRE_OPTIONAL = {"Envelope": {"body"}}

# Where the docs state a stricter wire format than the pydantic model checks (hub.crypto
# and hub.wire check it instead): (constraints of the model the docs drop, constraints
# the docs add). Dropping ``null`` means "omit it": such a field documents no default.
B64URL_PATTERN = "^[A-Za-z0-9_-]+$"
SIG_PATTERN = "^[A-Za-z0-9_-]{86}$"
KEY_PATTERN = "^[A-Za-z0-9_-]{43}$"
NULL = ("type", "null")
WIRE_FORMAT: dict[tuple[str, str], tuple[set[tuple[str, str]], set[tuple[str, str]]]] = {
    ("Envelope", "sealed"): ({NULL}, {("pattern", json.dumps(B64URL_PATTERN))}),
    ("Envelope", "sig"): ({NULL}, {("pattern", json.dumps(SIG_PATTERN))}),
    ("Envelope", "keys"): ({NULL}, set()),
}

# The docs' examples are real: made with these throwaway identities, whose secrets
# docs/protocol.md §5 publishes (SHA-256 of "foyer docs example {id} sign|box").
EXAMPLE_HUB, EXAMPLE_BRAND = "home-7f3a", "acme"


def _example_secret(entity: str, part: str) -> bytes:
    return hashlib.sha256(f"foyer docs example {entity} {part}".encode()).digest()


def _example_identity(entity: str) -> Identity:
    return Identity.from_secrets(_example_secret(entity, "sign"), _example_secret(entity, "box"))


EXAMPLES = {entity: _example_identity(entity) for entity in (EXAMPLE_HUB, EXAMPLE_BRAND)}

# JSON Schema keywords that carry a constraint worth comparing with pydantic's schema.
CONSTRAINT_KEYWORDS = (
    "const",
    "enum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
)
SCHEMA_REF = "#/components/schemas/{model}"


def _models_on_the_wire() -> list[str]:
    """Envelope, Manifest and every model nested in them, as the code defines them."""
    names = {"Envelope", "Manifest"}
    for model in (Envelope, Manifest):
        names |= set(model.model_json_schema().get("$defs", {}))
    return sorted(names)


# --- loading --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    doc = yaml.safe_load((DOCS / "asyncapi.yaml").read_text(encoding="utf-8"))
    assert isinstance(doc, dict), "docs/asyncapi.yaml must hold a YAML mapping"
    return doc


@pytest.fixture(scope="module")
def protocol_md() -> str:
    return (DOCS / "protocol.md").read_text(encoding="utf-8")


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    """Follow a local JSON pointer such as ``#/components/schemas/Envelope``."""
    assert ref.startswith("#/"), f"only local $refs are used; got {ref!r}"
    node: Any = doc
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"$ref {ref!r} goes through a non-object at {key!r}"
        assert key in node, f"$ref {ref!r} does not resolve: no {key!r}"
        node = node[key]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _json_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```json\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def _fenced_blocks(markdown: str) -> list[str]:
    return re.findall(r"^ *```[a-z]*\n(.*?)^ *```", markdown, flags=re.MULTILINE | re.DOTALL)


def _open_example(payload: bytes) -> Envelope:
    """Check a wire example as a receiver would, with the example keys; the opened envelope.

    A clear body decodes with :func:`hub.protocol.decode` (which does not verify); a
    sealed one has no ``body`` and passes :func:`hub.protocol.parse`. Then the
    signature must verify and the sealed body must open and validate.
    """
    raw = parse(payload)
    assert isinstance(raw.get("sig"), str), f"{raw['id']}: every envelope on the wire is signed"
    if raw["type"] in SEALED_TYPES:
        assert "sealed" in raw, f"{raw['id']}: a {raw['type']} is sealed on the wire"
        assert "body" not in raw, f"{raw['id']}: a sealed envelope has no clear body"
    else:
        assert "sealed" not in raw, f"{raw['id']}: a {raw['type']} is signed, not sealed"
        decode(payload)
    hub_keys = EXAMPLES[EXAMPLE_HUB].public().as_dict()
    if raw["sender"] == EXAMPLE_HUB:
        assert raw.get("keys") == hub_keys, f"{raw['id']}: a hub's envelope carries its keys"
    else:
        assert "keys" not in raw, f"{raw['id']}: brands leave keys out"
    reader = EXAMPLES[raw.get("recipient") or EXAMPLE_HUB]
    opened = Wire(reader).decode(payload, lambda sender, _carried: EXAMPLES[sender].public())
    assert (opened.id, opened.type, opened.sender) == (raw["id"], raw["type"], raw["sender"])
    return opened


# --- the document itself ------------------------------------------------------------------


def test_asyncapi_is_version_3_0_0(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["info"]["title"]
    assert asyncapi["info"]["version"]
    assert {server["protocol"] for server in asyncapi["servers"].values()} >= {"mqtt"}


def test_every_ref_in_asyncapi_resolves(asyncapi: dict[str, Any]) -> None:
    refs = _refs(asyncapi)
    assert refs
    for ref in refs:
        _resolve(asyncapi, ref)


def test_operations_use_their_own_channel_messages(asyncapi: dict[str, Any]) -> None:
    for name, operation in asyncapi["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel_ref = operation["channel"]["$ref"]
        assert operation["messages"], f"operation {name} lists no messages"
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"{channel_ref}/messages/"), (
                f"operation {name} sends {message['$ref']}, which is not on {channel_ref}"
            )


def _channel_types(asyncapi: dict[str, Any]) -> dict[str, set[str]]:
    """The message types each channel carries: ``{"to_brand": {"message", …}, …}``."""
    return {name: set(channel["messages"]) for name, channel in asyncapi["channels"].items()}


def test_every_type_travels_on_a_channel_and_an_operation_uses_it(asyncapi: dict[str, Any]) -> None:
    channels = _channel_types(asyncapi)
    assert set().union(*channels.values()) == {*MESSAGE_TYPES, "manifest"}
    used = {
        message["$ref"] for operation in asyncapi["operations"].values() for message in operation["messages"]
    }
    for name, channel in asyncapi["channels"].items():
        for key, message in channel["messages"].items():
            assert message == {"$ref": f"#/components/messages/{key}"}, f"channel {name}: {key}"
            assert f"#/channels/{name}/messages/{key}" in used, f"no operation uses {key} on {name}"


def test_examples_travel_on_a_channel_that_carries_their_type(asyncapi: dict[str, Any]) -> None:
    """Hubs send on ``to_brand``, brands on ``to_hub`` (presence on ``status``), and every
    type a channel carries has an example sent on it."""
    channels = _channel_types(asyncapi)
    shown: dict[str, set[str]] = {name: set() for name in channels}
    for message in asyncapi["components"]["messages"].values():
        for example in message["examples"]:
            raw = example["payload"]
            if "v" not in raw:
                continue
            if raw["type"] == "presence":
                channel = "status"
            else:
                channel = "to_brand" if raw["sender"] == EXAMPLE_HUB else "to_hub"
            assert raw["type"] in channels[channel], f"{raw['id']}: {channel} does not carry {raw['type']}"
            shown[channel].add(raw["type"])
    for name, types in channels.items():
        assert types - {"manifest"} <= shown[name], f"give an example of each type sent on {name}"


def test_example_summaries_show_the_body_the_example_opens_to(asyncapi: dict[str, Any]) -> None:
    checked = 0
    for message in asyncapi["components"]["messages"].values():
        for example in message["examples"]:
            found = re.search(r"Opens to (\{.*\})\.$", example.get("summary", ""))
            if found is None:
                continue
            opened = _open_example(json.dumps(example["payload"]).encode())
            shown = type(opened.body).model_validate(json.loads(found.group(1)))
            assert shown == opened.body, f"{example['name']}: its summary shows another body"
            checked += 1
    assert checked


# --- messages and bodies --------------------------------------------------------------------


def test_component_messages_are_exactly_the_wire_types(asyncapi: dict[str, Any]) -> None:
    messages = asyncapi["components"]["messages"]
    assert "manifest" in messages
    assert set(messages) - {"manifest"} == set(MESSAGE_TYPES)
    for key, message in messages.items():
        assert message["name"] == key


def test_envelope_type_enum_lists_every_wire_type(asyncapi: dict[str, Any]) -> None:
    envelope = asyncapi["components"]["schemas"]["Envelope"]
    assert envelope["properties"]["type"]["enum"] == list(MESSAGE_TYPES)


def test_envelope_schema_says_which_types_are_sealed(asyncapi: dict[str, Any]) -> None:
    branches = asyncapi["components"]["schemas"]["Envelope"]["oneOf"]
    sealed = [b for b in branches if b.get("required") == ["sealed"]]
    signed = [b for b in branches if b.get("required") == ["body"]]
    assert len(branches) == 2
    assert len(sealed) == len(signed) == 1
    assert set(sealed[0]["properties"]["type"]["enum"]) == SEALED_TYPES
    assert sealed[0]["not"] == {"required": ["body"]}
    assert set(signed[0]["properties"]["type"]["enum"]) == set(MESSAGE_TYPES) - SEALED_TYPES
    assert signed[0]["not"] == {"required": ["sealed"]}


@pytest.mark.parametrize("message_type", MESSAGE_TYPES)
def test_message_payload_selects_the_body_the_code_uses(asyncapi: dict[str, Any], message_type: str) -> None:
    message = asyncapi["components"]["messages"][message_type]
    parts = message["payload"]["allOf"]
    assert {"$ref": SCHEMA_REF.format(model="Envelope")} in parts
    typed = [part for part in parts if "body" in part.get("properties", {})]
    assert len(typed) == 1, f"{message_type}: expected one allOf part that fixes the body"
    assert typed[0]["properties"]["type"] == {"const": message_type}
    body = typed[0]["properties"]["body"]
    body_ref = body["$ref"] if "$ref" in body else body["allOf"][0]["$ref"]
    body_schema = _resolve(asyncapi, body_ref)
    if message_type in SEALED_TYPES:  # the body schema describes what `sealed` holds
        assert "sealed" in typed[0]["required"], f"{message_type} is sealed"
        assert typed[0]["not"] == {"required": ["body"]}, f"{message_type} has no clear body"
    else:
        assert "body" in typed[0]["required"], f"{message_type} has its body in clear"

    assert message["examples"], f"{message_type}: give at least one example"
    for example in message["examples"]:
        missing = set(typed[0]["required"]) - set(example["payload"])
        assert not missing, f"{message_type} example {example['name']} lacks {missing}, which it requires"
        envelope = _open_example(json.dumps(example["payload"]).encode())
        assert envelope.type == message_type
        body_model = type(envelope.body)
        assert _ref_name(body_ref) == body_model.__name__
        assert set(body_schema["properties"]) == set(body_model.model_fields)


def test_last_will_example_is_a_signed_offline_presence(asyncapi: dict[str, Any]) -> None:
    will = asyncapi["servers"]["mqtt"]["bindings"]["mqtt"]["lastWill"]
    assert Topics.parse(will["topic"]) == ("status", EXAMPLE_BRAND, "")
    envelope = _open_example(will["message"].encode())
    assert envelope.body == hub.protocol.PresenceBody(status="offline")


def test_manifest_message_examples_validate(asyncapi: dict[str, Any]) -> None:
    message = asyncapi["components"]["messages"]["manifest"]
    assert message["payload"] == {"$ref": SCHEMA_REF.format(model="Manifest")}
    assert message["examples"]
    for example in message["examples"]:
        manifest = Manifest.model_validate_json(json.dumps(example["payload"]))
        assert manifest.keys == EXAMPLES[manifest.id].public().as_dict(), "publish the example keys"


# --- schemas against the pydantic models ---------------------------------------------------


def _constraints(schema: Any) -> set[tuple[str, str]]:
    """The types, $refs and limits of a schema, with nested array/map schemas prefixed."""
    if not isinstance(schema, dict):
        return set()
    found: set[tuple[str, str]] = set()
    types = schema.get("type", [])
    for kind in [types] if isinstance(types, str) else types:
        found.add(("type", kind))
    if "$ref" in schema:
        found.add(("$ref", _ref_name(schema["$ref"])))
    for keyword in CONSTRAINT_KEYWORDS:
        if keyword in schema:
            value = schema[keyword]
            if keyword == "enum":
                value = sorted(value, key=json.dumps)
            found.add((keyword, json.dumps(value, sort_keys=True)))
    for keyword in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(keyword, []):
            found |= _constraints(branch)
    for keyword in ("items", "additionalProperties", "propertyNames"):
        found |= {(f"{keyword}.{k}", v) for k, v in _constraints(schema.get(keyword))}
    return found


@pytest.mark.parametrize("name", _models_on_the_wire())
def test_schema_matches_model(asyncapi: dict[str, Any], name: str) -> None:
    schemas = asyncapi["components"]["schemas"]
    assert name in schemas, f"components/schemas lacks {name}, a model on the wire"
    schema = schemas[name]
    model = getattr(hub.protocol, name)
    assert isinstance(model, type)
    assert issubclass(model, BaseModel)
    expected = model.model_json_schema(ref_template=SCHEMA_REF)

    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False, f"{name} refuses unknown fields"
    assert set(schema["properties"]) == set(model.model_fields)

    model_required = {n for n, field in model.model_fields.items() if field.is_required()}
    required = set(schema.get("required", []))
    wire_optional = WIRE_OPTIONAL.get(name, set())
    assert required - model_required == WIRE_REQUIRED.get(name, set()), f"{name}: required"
    assert model_required - required == wire_optional, f"{name}: the model requires more than the doc says"

    for field_name, field in model.model_fields.items():
        documented = schema["properties"][field_name]
        where = f"{name}.{field_name}"
        dropped, added = WIRE_FORMAT.get((name, field_name), (set(), set()))
        model_constraints = _constraints(expected["properties"][field_name])
        assert dropped <= model_constraints, f"{where}: WIRE_FORMAT drops what the model does not have"
        assert not added & model_constraints, f"{where}: WIRE_FORMAT adds what the model already checks"
        assert _constraints(documented) == (model_constraints - dropped) | added, where
        if field_name in required or field_name in wire_optional or NULL in dropped:
            assert "default" not in documented, f"{where} is required or omitted; it has no default"
        else:
            assert "default" in documented, f"{where} is optional; document its default"
            default = field.get_default(call_default_factory=True)
            assert documented["default"] == to_jsonable_python(default), where


def test_documented_wire_formats_hold_for_every_example(asyncapi: dict[str, Any], protocol_md: str) -> None:
    """The patterns the docs add to the model (WIRE_FORMAT) are true of real envelopes."""
    properties = asyncapi["components"]["schemas"]["Envelope"]["properties"]
    assert properties["sealed"]["pattern"] == B64URL_PATTERN
    assert properties["sig"]["pattern"] == SIG_PATTERN
    for name in ("sign", "box"):
        assert properties["keys"]["properties"][name]["pattern"] == KEY_PATTERN
        manifest_keys = asyncapi["components"]["schemas"]["Manifest"]["properties"]["keys"]
        assert manifest_keys["properties"][name]["pattern"] == KEY_PATTERN
    payloads = [
        example["payload"]
        for message in asyncapi["components"]["messages"].values()
        for example in message["examples"]
        if "v" in example["payload"]
    ] + [raw for raw in map(json.loads, _json_blocks(protocol_md)) if "v" in raw]
    assert payloads
    for raw in payloads:
        assert re.fullmatch(SIG_PATTERN, raw["sig"]), raw["id"]
        if "sealed" in raw:
            assert re.fullmatch(B64URL_PATTERN, raw["sealed"]), raw["id"]
        for key in raw.get("keys", {}).values():
            assert re.fullmatch(KEY_PATTERN, key), raw["id"]


# --- topics ---------------------------------------------------------------------------------


def test_channel_addresses_are_the_topics_the_code_builds(asyncapi: dict[str, Any]) -> None:
    values = {"brand_id": "brand-x", "hub_id": "hub-y"}
    channels = asyncapi["channels"]
    assert channels
    for key, channel in channels.items():
        address = channel["address"]
        placeholders = re.findall(r"\{(\w+)\}", address)
        assert set(placeholders) == set(channel.get("parameters", {})), key
        topic = address.format(**values)
        kind, _, _ = Topics.parse(topic)
        assert kind == key, f"channel {key!r} is Topics' {kind!r} channel; name it so"
        build = getattr(Topics, kind)
        params = inspect.signature(build).parameters
        assert set(params) == set(placeholders), key
        assert build(**{param: values[param] for param in params}) == topic

    inbox = channels["to_brand"]["address"].format(brand_id="brand-x", hub_id="+")
    assert Topics.brand_inbox("brand-x") == inbox


# --- docs/protocol.md -----------------------------------------------------------------------


def _is_envelope(block: str) -> bool:
    return "v" in json.loads(block)


def _is_manifest(block: str) -> bool:
    return not _is_envelope(block) and "id" in json.loads(block)


def test_protocol_md_envelope_examples_decode(protocol_md: str) -> None:
    types = set()
    for block in filter(_is_envelope, _json_blocks(protocol_md)):
        types.add(_open_example(block.encode()).type)
    assert types == set(MESSAGE_TYPES), "give a JSON example of every message type"


def _table(markdown: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with ``header``, as cells."""
    lines = markdown.splitlines()
    [start] = [i for i, line in enumerate(lines) if line.startswith(header)]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    assert rows, f"the table {header!r} is empty"
    return rows


def _code_words(text: str) -> set[str]:
    return set(re.findall(r"`([a-z_]+)`", text))


DIRECTIONS = {
    "H → B": {"to_brand"},
    "B → H": {"to_hub"},
    "both": {"to_brand", "to_hub"},
    "B → all": {"status"},
}
TOPIC_ROWS = {"hub → brand": "to_brand", "brand → hub": "to_hub", "presence": "status"}


def test_protocol_md_tables_put_every_type_on_its_channels(
    protocol_md: str, asyncapi: dict[str, Any]
) -> None:
    """§2's topics, §4's ``type``, §5's sealing table and §6's summary agree with asyncapi.yaml."""
    channels = _channel_types(asyncapi)
    topics = {row[0]: row[-1] for row in _table(protocol_md, "| channel | topic |")}
    for label, channel in TOPIC_ROWS.items():
        assert _code_words(topics[label].split("envelope:", 1)[1]) == channels[channel], f"§2 {label}"

    summary = _table(protocol_md, "| `type` | direction |")
    assert [row[0].strip("`") for row in summary] == list(MESSAGE_TYPES), "§6: one row per type, in order"
    for row in summary:
        kind, direction = row[0].strip("`"), row[1]
        assert {name for name, types in channels.items() if kind in types} == DIRECTIONS[direction], kind
        assert row[3].startswith("sealed") == (kind in SEALED_TYPES), f"§6 {kind}: on the wire"
        assert ("`keys`" in row[3]) == (kind in channels["to_brand"]), f"§6 {kind}: a hub's envelope has keys"

    envelope_fields = _table(protocol_md, "| field | JSON type | required | constraints | meaning |")
    [type_row] = [row for row in envelope_fields if row[0] == "`type`"]
    assert _code_words(type_row[3]) == set(MESSAGE_TYPES), "§4: the values of type"
    sealing = _table(protocol_md, "| `type` | on the wire |")
    modes = {row[1].split(":")[0]: _code_words(row[0]) for row in sealing}
    signed = set(MESSAGE_TYPES) - SEALED_TYPES
    assert modes == {"**sealed and signed**": SEALED_TYPES, "**signed only**": signed}, "§5: what is sealed"
    [hub_sends] = re.findall(r"Every envelope a hub sends \(([^)]*)\)", protocol_md)
    assert _code_words(hub_sends) == channels["to_brand"], "§5: what a hub sends carries its keys"


def test_protocol_md_sealed_bodies_are_what_the_next_example_seals(protocol_md: str) -> None:
    """A ```json block that is neither an envelope nor a manifest is a body, shown before
    the sealed envelope that carries it; and every sealed example shows its body first."""
    blocks = _json_blocks(protocol_md)
    sealed_seen = 0
    for index, block in enumerate(blocks):
        if not _is_envelope(block) or "sealed" not in json.loads(block):
            continue
        sealed_seen += 1
        before = blocks[index - 1]
        assert not _is_envelope(before), f"show the body of {json.loads(block)['id']} before it"
        assert not _is_manifest(before), f"show the body of {json.loads(block)['id']} before it"
        opened = _open_example(block.encode())
        assert type(opened.body).model_validate(json.loads(before)) == opened.body
    bodies = [b for b in blocks if not _is_envelope(b) and not _is_manifest(b)]
    assert sealed_seen == len(bodies) >= len(SEALED_TYPES)


def test_protocol_md_manifest_examples_validate(protocol_md: str) -> None:
    manifests = list(filter(_is_manifest, _json_blocks(protocol_md)))
    for block in manifests:
        manifest = Manifest.model_validate_json(block)
        assert manifest.keys == EXAMPLES[manifest.id].public().as_dict(), "publish the example keys"
    complete = [block for block in manifests if set(json.loads(block)) == set(Manifest.model_fields)]
    assert complete, "give a manifest example that shows every field"


def _check_topic(topic: str, envelope: Envelope) -> None:
    channel, owner, sender = Topics.parse(topic)
    if channel == "status":
        assert envelope.type == "presence"
        assert envelope.sender == owner
    else:
        assert channel in ("to_brand", "to_hub"), topic
        assert envelope.sender == sender, f"{envelope.id}: sender does not match {topic}"
        assert envelope.recipient == owner, f"{envelope.id}: recipient does not match {topic}"


# --- the walk-through and its Python program --------------------------------------------------

PROGRAM = "foyer_envelope.py"


def _program(markdown: str) -> str:
    [source] = [
        b
        for b in re.findall(r"^```python\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)
        if PROGRAM in b.split("\n", 1)[0]
    ]
    return str(source)


@pytest.fixture(scope="module")
def program(protocol_md: str) -> dict[str, Any]:
    """The walk-through's program, loaded as a module (its command line part does not run)."""
    namespace: dict[str, Any] = {"__name__": "foyer_envelope"}
    exec(compile(_program(protocol_md), PROGRAM, "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def _example_secrets(entity: str) -> tuple[nacl.signing.SigningKey, nacl.public.PrivateKey]:
    """The example identity's secret keys as PyNaCl objects, as the program uses them."""
    sign, box = _example_secret(entity, "sign"), _example_secret(entity, "box")
    return nacl.signing.SigningKey(sign), nacl.public.PrivateKey(box)


def test_the_program_seals_the_types_hub_wire_seals(program: dict[str, Any]) -> None:
    assert program["SEALED_TYPES"] == SEALED_TYPES


def test_the_program_builds_the_signature_input_of_hub_crypto(program: dict[str, Any]) -> None:
    headers = [
        {
            "v": 1,
            "id": "01a207e5-f24a-7f92-8ce1-8a2990d028e7",
            "type": "presence",
            "sender": "acme",
            "ts": 1795428840010,
        },
        {
            "v": 1,
            "id": "abcdefgh",
            "type": "reply",
            "sender": "acme",
            "recipient": "home-7f3a",
            "conversation": "conv-éà",
            "ref": "",
            "ts": 0,
        },
        {"v": 1, "id": "abcdefgh", "type": "error", "sender": "acme", "recipient": None, "ts": 2**63 - 1},
    ]
    for env in headers:
        for mode in ("sealed", "signed"):
            expected = signature_input(Header.from_mapping(env), mode, b"payload \x00\xff")
            assert program["signature_input"](env, mode, b"payload \x00\xff") == expected
    body = {"status": "online", "humans_available": True, "note": "é\n"}
    assert program["canonical"](body) == hub.crypto.canonical_json(body)


def test_the_program_encodes_base64url_like_hub_crypto(program: dict[str, Any]) -> None:
    for data in (b"", b"\xfb", b"\xfb\xff", bytes(range(64))):
        assert program["b64"](data) == hub.crypto.b64encode(data)
        assert program["unb64"](hub.crypto.b64encode(data)) == data
    for bad in ("A", "AB=", "AB==", "+/8", "-_9", "ab cd"):
        with pytest.raises(ValueError, match="base64"):
            hub.crypto.b64decode(bad)
        with pytest.raises(ValueError, match="base64"):
            program["unb64"](bad)


def test_what_the_program_makes_the_hub_accepts_and_the_other_way_round(program: dict[str, Any]) -> None:
    sign, box = _example_secrets(EXAMPLE_BRAND)
    hub_wire = Wire(EXAMPLES[EXAMPLE_HUB])
    brand_keys = EXAMPLES[EXAMPLE_BRAND].public()
    hub_keys = EXAMPLES[EXAMPLE_HUB].public()

    def keys_of(_sender: str, _carried: dict[str, str] | None) -> hub.crypto.PublicKeys:
        return brand_keys

    reply_body = {"text": "Un technicien passe demain.", "author": {"kind": "human", "name": "Paul"}}
    reply = program["make"](
        sign,
        "reply",
        reply_body,
        hub_keys.box,
        recipient=EXAMPLE_HUB,
        conversation="conversation-1",
        ref="message-1",
    )
    assert "body" not in reply
    opened = hub_wire.decode(json.dumps(reply).encode(), keys_of)
    assert opened.body == hub.protocol.ReplyBody.model_validate(reply_body)
    signed = [
        program["make"](sign, "receipt", {"status": "received"}, recipient=EXAMPLE_HUB, ref="message-1"),
        program["make"](sign, "receipt", {}, recipient=EXAMPLE_HUB, ref="message-1"),
        program["make"](sign, "presence", {"status": "online", "humans_available": True}),
    ]
    for made in signed:
        assert "sealed" not in made
        assert hub_wire.decode(json.dumps(made).encode(), keys_of).type == made["type"]

    message = Envelope(
        type="message",
        sender=EXAMPLE_HUB,
        recipient=EXAMPLE_BRAND,
        conversation="conversation-1",
        body=hub.protocol.MessageBody(text="Où est ma commande ?", lang="fr"),
    )
    on_wire = json.loads(hub_wire.encode(message, brand_keys, with_keys=True))
    assert program["check"](on_wire, on_wire["keys"]["sign"], box) == {
        "data": {},
        "lang": "fr",
        "text": "Où est ma commande ?",
    }
    tampered = {**on_wire, "conversation": "conversation-2"}
    with pytest.raises(nacl.exceptions.BadSignatureError):
        program["check"](tampered, on_wire["keys"]["sign"], box)
    assert program["fingerprint"](brand_keys.as_dict()) == brand_keys.fingerprint()


def test_the_program_command_line_works_as_the_walk_through_says(protocol_md: str, tmp_path: Path) -> None:
    (tmp_path / PROGRAM).write_text(_program(protocol_md), encoding="utf-8")

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, PROGRAM, *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        )
        return done.stdout

    keys_line, fingerprint = run("keys").splitlines()
    brand = hub.crypto.PublicKeys.from_dict(json.loads(keys_line))
    assert fingerprint == brand.fingerprint()
    key_file = tmp_path / "acme.keys.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    hub_wire = Wire(EXAMPLES[EXAMPLE_HUB])
    message = Envelope(
        type="message",
        sender=EXAMPLE_HUB,
        recipient=EXAMPLE_BRAND,
        conversation="conversation-1",
        body=hub.protocol.MessageBody(text="Où est ma commande ?", lang="fr"),
    )
    opened = json.loads(run("open", hub_wire.encode(message, brand, with_keys=True).decode()))
    assert opened == {"data": {}, "lang": "fr", "text": "Où est ma commande ?"}

    reply = run(
        "reply",
        '{"text":"Elle arrive.","author":{"kind":"bot","name":"A"}}',
        f"recipient={EXAMPLE_HUB}",
        "conversation=conversation-1",
        f"ref={message.id}",
    )
    envelope = hub_wire.decode(reply.encode(), lambda _sender, _carried: brand)
    assert (envelope.type, envelope.ref, envelope.body.text) == ("reply", message.id, "Elle arrive.")  # type: ignore[union-attr]
    presence = run("presence", '{"status":"offline","humans_available":false}')
    assert hub_wire.decode(presence.encode(), lambda _sender, _carried: brand).type == "presence"


def test_protocol_md_command_line_payloads_decode_on_their_topics(
    protocol_md: str, program: dict[str, Any]
) -> None:
    sign, _ = _example_secrets(EXAMPLE_BRAND)
    hub_box = EXAMPLES[EXAMPLE_HUB].public().box
    shown: set[str] = set()
    made: set[str] = set()
    for block in _fenced_blocks(protocol_md):
        text = block.replace("\\\n", " ")
        for topic, payload in re.findall(r"-t (\S+)\s+-m '([^']*)'", text):
            _check_topic(topic, _open_example(payload.encode()))
        for topic, payload in re.findall(r"^(foyer/v1/\S+) (\{.*\})$", text, flags=re.MULTILINE):
            envelope = _open_example(payload.encode())
            _check_topic(topic, envelope)
            shown.add(envelope.type)
        # What the program makes, as the commands call it, must be accepted on the topic used.
        commands = re.findall(
            rf"python3 {re.escape(PROGRAM)} (\w+) '([^']*)'((?:\s+\w+=\S+)*)(.*?)-t (\S+)",
            text,
            flags=re.DOTALL,
        )
        for kind, body, fields, _between, topic in commands:
            args = dict(arg.split("=", 1) for arg in fields.split())
            box = hub_box if kind in SEALED_TYPES else None
            envelope = program["make"](sign, kind, json.loads(body), box, **args)
            _check_topic(topic, _open_example(json.dumps(envelope).encode()))
            made.add(kind)
        for topic, kind, body in re.findall(
            rf"--will-topic (\S+).*?--will-payload \"\$\(python3 {re.escape(PROGRAM)} (\w+) '([^']*)'\)\"",
            text,
            flags=re.DOTALL,
        ):
            envelope = _open_example(json.dumps(program["make"](sign, kind, json.loads(body))).encode())
            _check_topic(topic, envelope)
            assert envelope.body == hub.protocol.PresenceBody(status="offline")
            made.add("will")
    assert shown >= {"message", "reply", "notification", "receipt", "presence"}, (
        "the walk-through shows payloads"
    )
    assert made >= {"reply", "notification", "receipt", "presence", "will"}, "the walk-through's commands"


def test_protocol_md_states_the_limits_and_every_error_code(protocol_md: str) -> None:
    assert f"{MAX_PAYLOAD_BYTES:,} bytes" in protocol_md
    assert f"1–{hub.protocol.MAX_TEXT_CHARS} characters" in protocol_md
    for module in (hub.errors, hub.crypto):
        for name in module.__all__:
            code = getattr(getattr(module, name), "code", None)
            if isinstance(code, str):
                assert f"`{code}`" in protocol_md, f"docs/protocol.md does not mention {code!r} ({name})"
    for code in ("bad_signature", "cannot_open", "unknown_key", "expired", "replayed"):
        assert re.search(rf"^\| `{code}` \|", protocol_md, re.MULTILINE), f"the error table lacks {code}"


def test_protocol_md_states_the_security_rules(protocol_md: str) -> None:
    assert "foyer-envelope-sig-v1" in protocol_md
    assert hub.crypto._SIG_CONTEXT.decode() == "foyer-envelope-sig-v1"
    layout = hub.crypto.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in layout.splitlines()]
    assert [line.strip() for line in protocol_md.splitlines() if line.strip() in lines] == lines, (
        "copy the signature input layout from hub/crypto.py's docstring, line for line"
    )
    assert "base64url without padding" in protocol_md
    assert f"{DEFAULT_WINDOW_MS:,} ms" in protocol_md
    assert "**7 days**" in protocol_md
    assert f"{DEFAULT_FUTURE_SKEW_MS:,} ms" in protocol_md
    assert "**5 minutes**" in protocol_md
    assert "/api/brands/{brand_id}/approve-keys" in protocol_md
    assert "`foyer docs example {id} sign`" in protocol_md, "say how the example keys are made"
    assert "`foyer docs example {id} box`" in protocol_md, "say how the example keys are made"
    for entity, identity in EXAMPLES.items():
        public = identity.public()
        assert public.sign in protocol_md, f"publish {entity}'s example keys"
        assert public.box in protocol_md, f"publish {entity}'s example keys"
        assert public.fingerprint() in protocol_md, f"show {entity}'s example fingerprint"
