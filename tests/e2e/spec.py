"""Validating JSON against the schemas of OpenAI's official OpenAPI spec.

The spec (3 MB of YAML) lives in ``shared/reference/`` beside the clone; it is parsed once per
test session.  Its ``$ref``s point into ``#/components/schemas/...``, so the whole document is
registered as one ``referencing`` resource and each check is a ``$ref`` into it.

Two corrections are applied to the document, both where the spec contradicts its own examples
and the live API; everything else is checked as written:

* it declares OpenAPI 3.1 but keeps ~110 OpenAPI 3.0 ``nullable: true`` markers, which a 3.1
  validator ignores (so ``"finish_reason": null`` in every stream chunk would "fail");
  they are read as 3.0 meant them: ``anyOf: [schema, {type: "null"}]``;
* ``Response.usage`` is not nullable, yet the ``ResponseCreatedEvent`` example (and the API)
  send ``"usage": null`` while a response is in progress.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from jsonschema.exceptions import best_match
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[2].parent / "shared/reference/openai-openapi.yaml"
_URI = "urn:vmx-tests:openai-openapi"


@functools.cache
def spec() -> dict[str, Any]:
    with SPEC_PATH.open("rb") as f:
        document: dict[str, Any] = _nullable(yaml.load(f, Loader=yaml.CSafeLoader))
    response_props = document["components"]["schemas"]["Response"]["allOf"][2]["properties"]
    response_props["usage"] = {"anyOf": [response_props["usage"], {"type": "null"}]}
    return document


def _nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _nullable(value) for key, value in node.items() if not (key == "nullable" and value is True)}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _registry() -> Registry[Any]:
    # OpenAPI 3.1 schemas are JSON Schema 2020-12 (plus annotations the validator knows).
    return Registry().with_resource(_URI, Resource(contents=spec(), specification=DRAFT202012))


@functools.cache
def _validator(name: str) -> OAS31Validator:
    if name not in spec()["components"]["schemas"]:
        raise KeyError(f"no schema {name!r} in {SPEC_PATH.name}")
    return OAS31Validator({"$ref": f"{_URI}#/components/schemas/{name}"}, registry=_registry())


def validate(instance: Any, name: str) -> None:
    """Fail with the most relevant error when ``instance`` does not match schema ``name``."""
    error = best_match(_validator(name).iter_errors(instance))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        # For an anyOf, name why each branch failed: "not valid under any" alone says little.
        branches = "".join(
            f"\n  - {'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in error.context or []
        )
        raise AssertionError(f"not a valid {name} at {where}: {error.message}{branches}\n{instance!r}")


@functools.cache
def _response_event_schemas() -> dict[str, str]:
    """``ResponseStreamEvent`` is an ``anyOf`` discriminated by ``type``: map each type to its schema."""
    schemas = spec()["components"]["schemas"]
    out: dict[str, str] = {}
    for option in schemas["ResponseStreamEvent"]["anyOf"]:
        name = option["$ref"].rsplit("/", 1)[1]
        kind = schemas[name]["properties"]["type"]
        for value in kind.get("enum", [kind.get("const")]):
            out[value] = name
    return out


def validate_response_event(event: Any) -> str:
    """Validate one Responses stream event against the schema its ``type`` names; return that name."""
    assert isinstance(event, dict), event
    name = _response_event_schemas().get(event.get("type", ""))
    if name is None:
        raise AssertionError(f"{event.get('type')!r} is not a ResponseStreamEvent type in the spec")
    validate(event, name)
    return name
