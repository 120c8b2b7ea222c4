"""The protocol docs agree with ``hub/protocol.py``, the wire's source of truth.

``docs/asyncapi.yaml`` must list every message type, and must describe every
envelope, body and manifest model field for field: names, required fields,
types, limits and defaults. Every example in it and in ``docs/protocol.md`` must
be accepted by the code. Its topics must be the ones ``Topics`` builds. If the
code changes and the docs do not, or the other way round, a test here fails.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

import hub.errors
import hub.protocol
from hub.protocol import MAX_PAYLOAD_BYTES, MESSAGE_TYPES, Envelope, Manifest, Topics, decode

DOCS = Path(__file__).resolve().parent.parent / "docs"

# Fields the Python constructor fills in (so the model does not require them)
# but that every sender, in any language, must put on the wire.
WIRE_REQUIRED = {"Envelope": {"v", "id", "ts"}}

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


@pytest.mark.parametrize("message_type", MESSAGE_TYPES)
def test_message_payload_selects_the_body_the_code_uses(asyncapi: dict[str, Any], message_type: str) -> None:
    message = asyncapi["components"]["messages"][message_type]
    parts = message["payload"]["allOf"]
    assert {"$ref": SCHEMA_REF.format(model="Envelope")} in parts
    typed = [part for part in parts if "body" in part.get("properties", {})]
    assert len(typed) == 1, f"{message_type}: expected one allOf part that fixes the body"
    assert typed[0]["properties"]["type"] == {"const": message_type}
    body_ref = typed[0]["properties"]["body"]["$ref"]
    body_schema = _resolve(asyncapi, body_ref)

    assert message["examples"], f"{message_type}: give at least one example"
    for example in message["examples"]:
        envelope = decode(json.dumps(example["payload"]).encode())
        assert envelope.type == message_type
        body_model = type(envelope.body)
        assert _ref_name(body_ref) == body_model.__name__
        assert set(body_schema["properties"]) == set(body_model.model_fields)


def test_manifest_message_examples_validate(asyncapi: dict[str, Any]) -> None:
    message = asyncapi["components"]["messages"]["manifest"]
    assert message["payload"] == {"$ref": SCHEMA_REF.format(model="Manifest")}
    assert message["examples"]
    for example in message["examples"]:
        Manifest.model_validate_json(json.dumps(example["payload"]))


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
    assert required - model_required == WIRE_REQUIRED.get(name, set()), f"{name}: required"
    assert model_required <= required, f"{name}: the model requires more than the doc says"

    for field_name, field in model.model_fields.items():
        documented = schema["properties"][field_name]
        where = f"{name}.{field_name}"
        assert _constraints(documented) == _constraints(expected["properties"][field_name]), where
        if field_name in required:
            assert "default" not in documented, f"{where} is required; it has no default"
        else:
            assert "default" in documented, f"{where} is optional; document its default"
            default = field.get_default(call_default_factory=True)
            assert documented["default"] == to_jsonable_python(default), where


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


def test_protocol_md_envelope_examples_decode(protocol_md: str) -> None:
    types = set()
    for block in _json_blocks(protocol_md):
        if '"v": 1' in block:
            types.add(decode(block.encode()).type)
    assert types == set(MESSAGE_TYPES), "give a JSON example of every message type"


def test_protocol_md_manifest_examples_validate(protocol_md: str) -> None:
    # A ```json block that is not an envelope is taken as a manifest.
    manifests = [block for block in _json_blocks(protocol_md) if '"v": 1' not in block]
    for block in manifests:
        Manifest.model_validate_json(block)
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


def test_protocol_md_command_line_payloads_decode_on_their_topics(protocol_md: str) -> None:
    seen = 0
    for block in _fenced_blocks(protocol_md):
        text = block.replace("\\\n", " ")
        for topic, payload in re.findall(r"-t (\S+)\s+-m '([^']*)'", text):
            _check_topic(topic, decode(payload.encode()))
            seen += 1
        for topic, payload in re.findall(
            r"--will-topic (\S+).*?--will-payload '([^']*)'", text, flags=re.DOTALL
        ):
            envelope = decode(payload.encode())
            _check_topic(topic, envelope)
            assert envelope.body == hub.protocol.PresenceBody(status="offline")
            seen += 1
        for topic, payload in re.findall(r"^(foyer/v1/\S+) (\{.*\})$", text, flags=re.MULTILINE):
            _check_topic(topic, decode(payload.encode()))
            seen += 1
    assert seen, "the walk-through shows no payloads"


def test_protocol_md_states_the_limits_and_every_error_code(protocol_md: str) -> None:
    assert f"{MAX_PAYLOAD_BYTES:,} bytes" in protocol_md
    assert f"1–{hub.protocol.MAX_TEXT_CHARS} characters" in protocol_md
    for name in hub.errors.__all__:
        code = getattr(hub.errors, name).code
        assert f"`{code}`" in protocol_md, f"docs/protocol.md does not mention {code!r} ({name})"
