"""Schemathesis hooks for Herald's OpenAPI document (used by scripts/api-contract-check).

They teach the generator the few rules JSON Schema cannot state, each read from the document
itself, so nothing here knows an operation by name:
- `format`s whose values a generator cannot guess: `herald-json-object` (a string holding a JSON
  object), `herald-template` (Mustache text; plain text without braces is a valid template),
  `pem-certificate` (a real certificate);
- `x-unique-items-by: <key>` on an array: no two items with the same value of that key;
- `x-herald-opaque: true` on a parameter or property: a token only the API gives out (a page
  token); valid requests leave it out, as a first page does;
- `x-herald-future: <days>` on a date-time: a moment in the future, within that many days;
- `x-herald-generate: herald-csv | herald-ndjson` on a body: an import document (a header naming
  email, then rows), made from what was generated.
Length limits above what Hypothesis can generate (GENERATED_LENGTH_LIMIT) are left out of the
document schemathesis reads. Invalid requests (negative mode) are left as they are, except for two
kinds that are not invalid at all:
- a text body (CSV, JSON lines) "made invalid" by generating a non-string for it: it reaches the
  API as text anyway;
- a JSON body whose only "violation" is a value schemathesis cannot check against one of the
  formats above (it counts every value of a format it does not know as a violation): the body is
  checked against the document with those formats read as the API reads them, and skipped when
  nothing else is wrong with it.
"""

from __future__ import annotations

import datetime
import json
import os

import jsonschema_rs
import schemathesis
from hypothesis import strategies as st
from schemathesis.core import NOT_SET
from schemathesis.core.jsonschema import FANCY_REGEX_OPTIONS
from schemathesis.core.parameters import ParameterLocation

DOCUMENT = json.load(open(os.environ["HERALD_OPENAPI_DOCUMENT"]))

# A self-signed certificate (CN=herald-test), for fields that must hold one.
CERTIFICATE = os.environ.get("HERALD_TEST_CERTIFICATE_PEM", "")

_json_scalars = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.none(),
)
_json_objects = st.dictionaries(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12),
    st.recursive(
        _json_scalars,
        lambda inner: st.lists(inner, max_size=3)
        | st.dictionaries(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8), inner, max_size=3),
        max_leaves=6,
    ),
    max_size=4,
).map(lambda value: json.dumps(value, ensure_ascii=False))

schemathesis.openapi.format("herald-json-object", _json_objects)
schemathesis.openapi.format(
    "herald-template",
    st.text(alphabet=st.characters(codec="ascii", categories=["L", "N", "Zs", "P"], exclude_characters="{}\\"), min_size=1, max_size=60)
    .map(str.strip)
    .filter(bool),
)
def _clean(text: str) -> str:
    return "".join(c for c in text if c.isalnum())[:6]


def _csv(seed: str) -> str:
    """A CSV import made from a generated string: an email column, a first_name, some rows."""
    tag = abs(hash(seed)) % 100000
    rows = [f"row{i}-{tag}@example.com,{_clean(seed[i:])}" for i in range(len(seed) % 4)]
    return "\n".join(["email,first_name"] + rows) + "\n"


def _ndjson(seed: str) -> str:
    lines = [json.dumps({"email": f"line{i}-{abs(hash(seed)) % 100000}@example.com", "first_name": seed[i:i + 6]}) for i in range(1 + len(seed) % 3)]
    return "\n".join(lines) + "\n"


GENERATORS = {"herald-csv": _csv, "herald-ndjson": _ndjson}

if CERTIFICATE:
    schemathesis.openapi.format("pem-certificate", st.just(CERTIFICATE))


def resolve(schema):
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 20:
        target = DOCUMENT
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        schema = target
        seen += 1
    return schema if isinstance(schema, dict) else {}


def keeps_rules(schema, value) -> bool:
    """Whether `value` keeps the rules above, walking `schema` (with `allOf`, `anyOf`, `oneOf`)."""
    schema = resolve(schema)
    for part in schema.get("allOf", []):
        if not keeps_rules(part, value):
            return False
    if isinstance(value, list):
        key = schema.get("x-unique-items-by")
        if key is not None:
            seen = [item.get(key) for item in value if isinstance(item, dict) and key in item]
            if any(seen.count(item) > 1 for item in seen):
                return False
        items = schema.get("items")
        if items is not None and not all(keeps_rules(items, item) for item in value):
            return False
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name, item in value.items():
            rule = resolve(properties.get(name, {}))
            if rule.get("x-herald-opaque"):
                return False
            if name in properties and not keeps_rules(properties[name], item):
                return False
    return True


def body_schema(operation, media_type="application/json"):
    content = operation.definition.raw.get("requestBody", {}).get("content", {})
    return content.get(media_type, {}).get("schema")


# Hypothesis generates strings of a few thousand characters at most: a length limit above this
# cannot be stepped over by a generated invalid value (negating it asks for a longer string,
# which fails the run as "minimum possible example is too large"), and no valid one comes near
# it. Such limits are left out of what schemathesis reads; the gateway's own tests cover them.
GENERATED_LENGTH_LIMIT = 4096


def _without_long_limits(node):
    if isinstance(node, list):
        for item in node:
            _without_long_limits(item)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("maxLength"), int) and node["maxLength"] > GENERATED_LENGTH_LIMIT:
        del node["maxLength"]
    for value in node.values():
        _without_long_limits(value)
    # A branch left empty accepts everything, and so does the `anyOf` holding it.
    if isinstance(node.get("anyOf"), list) and any(branch == {} for branch in node["anyOf"]):
        del node["anyOf"]


@schemathesis.hook
def before_load_schema(context, raw_schema):
    _without_long_limits(raw_schema)


def is_text_body(media_type) -> bool:
    """A body that is text on the wire (CSV, JSON lines): whatever value is generated for it is
    sent as its text, so it is always a string of that media type."""
    media_type = (media_type or "application/json").split(";")[0].strip().lower()
    return media_type.startswith("text/") or media_type == "application/x-ndjson"


def _is_name(text: str) -> bool:
    return 0 < len(text.encode()) <= 100 and (text[0].isascii() and (text[0].isalpha() or text[0] == "_")) and all(
        c.isascii() and (c.isalnum() or c == "_") for c in text
    )


def template_may_be_valid(text: str) -> bool:
    """False when the campaign service certainly refuses `text` as a template, by the syntax rules
    of its tag reader (MessageTemplate.usedNames): a `{{` never closed, an empty tag, a partial,
    block, delimiter change or pragma, a tag that is not a variable name. Anything else (an
    undeclared variable, a section swift-mustache finds unbalanced) may be valid here."""
    rest = text
    while "{{" in rest:
        rest = rest[rest.index("{{") + 2:]
        triple = rest.startswith("{")
        if triple:
            rest = rest[1:]
        close = "}}}" if triple else "}}"
        if close not in rest:
            return False
        tag = rest[:rest.index(close)].strip()
        rest = rest[rest.index(close) + len(close):]
        if not tag:
            return False
        if tag[0] == "!":
            continue
        if tag[0] in "><$=%":
            return False
        if tag[0] in "#^/&":
            tag = tag[1:].strip()
        if "(" in tag and tag.endswith(")"):
            tag = tag[tag.index("(") + 1:-1]
        if tag != "." and not _is_name(tag):
            return False
    return True


def _json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


# The custom formats as the API reads them, leaning to "may be valid" where only a stored value
# (a declared variable, a real certificate) decides.
FORMAT_CHECKS = {
    "herald-template": template_may_be_valid,
    "herald-json-object": _json_object,
    "pem-certificate": lambda text: "-----BEGIN CERTIFICATE-----" in text,
}


# One validator per body schema, built at first use; kept with the schema it was built for, so
# that a reused id() never finds another schema's validator.
_validators: dict[int, tuple[dict, jsonschema_rs.Validator]] = {}


def may_be_valid_body(schema, body) -> bool:
    """Whether `body` may be valid against the document's `schema` for it, custom formats read by
    FORMAT_CHECKS (schemathesis counts every value of them as a violation)."""
    built = _validators.get(id(schema))
    if built is None or built[0] is not schema:
        built = (schema, jsonschema_rs.Draft202012Validator(
            {**schema, "components": DOCUMENT.get("components", {})},
            formats=FORMAT_CHECKS,
            validate_formats=True,
            pattern_options=FANCY_REGEX_OPTIONS,
        ))
        _validators[id(schema)] = built
    try:
        return built[1].is_valid(body)
    except (TypeError, ValueError):
        # Not a JSON value (bytes, say): not valid as JSON.
        return False


@schemathesis.hook
def filter_case(context, case):
    if case.meta is None:
        return True
    if not case.meta.generation.mode.is_positive:
        # An invalid text body is one the schema refuses as text (too short, say); a number or an
        # object "in place of the string" reaches the API as text too, so it is not invalid.
        media_type = getattr(case, "media_type", None)
        if is_text_body(media_type):
            # (None too: it goes out as the text "null".)
            return case.body is NOT_SET or isinstance(case.body, str)
        # A body that is the only invalid part, yet valid once the custom formats are read as the
        # API reads them, is not an invalid request.
        invalid = [location for location, info in case.meta.components.items() if not info.mode.is_positive]
        schema = body_schema(context.operation, media_type or "application/json")
        if invalid == [ParameterLocation.BODY] and schema is not None and case.body is not NOT_SET:
            return not may_be_valid_body(schema, case.body)
        return True
    operation = context.operation
    parameters = operation.definition.raw.get("parameters", [])
    for parameter in parameters:
        parameter = resolve(parameter)
        if parameter.get("in") == "query" and (case.query or {}).get(parameter["name"]) is not None:
            if resolve(parameter.get("schema", {})).get("x-herald-opaque"):
                return False
    schema = body_schema(operation)
    if schema is not None and case.body is not None and case.body is not NOT_SET:
        return keeps_rules(schema, case.body)
    return True


@schemathesis.hook
def map_case(context, case):
    """A date-time that must lie ahead (`x-herald-future: <days>`) is moved into that window."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return case
    media_type = getattr(case, "media_type", None) or "application/json"
    raw = body_schema(context.operation, media_type) or {}
    generator = GENERATORS.get(raw.get("x-herald-generate", ""))
    if generator is not None and isinstance(case.body, str):
        case.body = generator(case.body)
        return case
    schema = body_schema(context.operation)
    if schema is None or not isinstance(case.body, dict):
        return case
    properties = resolve(schema).get("properties", {})
    for name, rule in properties.items():
        days = resolve(rule).get("x-herald-future")
        if days and name in case.body:
            moment = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1 + abs(hash(str(case.body[name]))) % max(1, days - 2))
            case.body[name] = moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return case
