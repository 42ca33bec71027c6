"""The JSON Schemas of the spec kinds, and schema errors as located diagnostics."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.model.diagnostics import Diagnostic

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

    from reconciler.spec.yaml_source import Document

KINDS = ("Environment", "Model", "Image", "Deployment")
API_VERSION = "reconciler/v1"

# Why a field is required only in some cases (a schema's if/then cannot say it).
CONDITIONALLY_REQUIRED = {
    ("Environment", "spec.azure"): "required with provider: azure (the subscription, resource group, Azure ML "
                                   "workspace and IoT Hub to use)",
    ("Deployment", "spec.registry"): "required when a module uses an Image spec of this environment: name the "
                                     "registry devices pull it from (a key of spec.registries in environment.yaml)",
}


@cache
def schema_directory() -> Path:
    """The JSON Schemas. ``reconciler/schemas`` is a link to ``schemas/`` at the repository root, so that
    wheels carry them as package data: an installed edge-reconciler (the GitHub Action, the pre-commit
    hook, ``pip install .``) has no repository around it. A checkout without links has the root."""
    packaged = Path(__file__).resolve().parents[1] / "schemas"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "schemas"


def schema_path(kind: str) -> Path:
    return schema_directory() / f"{kind.lower()}.schema.json"


@cache
def load_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path(kind).read_text(encoding="utf-8"))
    return schema


@cache
def validator(kind: str) -> Draft202012Validator:
    """jsonschema is imported here, when a document needs it (not when the schema cache knows all)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(kind))


def subject_of(data: Any) -> str:
    """``kind/name`` of a document, as far as it can be read."""
    if not isinstance(data, dict):
        return ""
    kind = data.get("kind")
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if isinstance(kind, str) and isinstance(name, str):
        return f"{kind}/{name}"
    return kind if isinstance(kind, str) else ""


def dotted(path: tuple[str | int, ...] | list[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validate_document(document: Document) -> list[Diagnostic]:
    """Check the envelope, then the document against its kind's schema."""
    data = document.data
    subject = subject_of(data)
    if not isinstance(data, dict):
        return [Diagnostic(document.location(()), "", "", "a spec document must be a mapping with apiVersion, kind, "
                                                             "metadata and spec")]
    kind = data.get("kind")
    if kind not in KINDS:
        if "kind" not in data:
            return [Diagnostic(document.location(()), "", "kind",
                               f"required field is missing: set it to one of {', '.join(KINDS)}")]
        return [Diagnostic(document.location(("kind",)), "", "kind",
                           f"must be one of {', '.join(KINDS)} (got {_short(kind)}){_did_you_mean(kind, KINDS)}")]
    errors = list(validator(kind).iter_errors(data))
    # A value of the wrong type fails the other keywords too (`not: {required: ...}` holds for
    # null): report only the type.
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    errors = [e for e in errors if e.validator == "type" or tuple(e.absolute_path) not in mistyped]
    errors.sort(key=lambda e: [str(p) for p in e.absolute_path])
    return [diagnostic for error in errors for diagnostic in _diagnostics(document, kind, subject, error)]


def _diagnostics(document: Document, kind: str, subject: str, error: ValidationError) -> list[Diagnostic]:
    path = tuple(error.absolute_path)
    if error.validator == "anyOf" and all(isinstance(branch, dict) and set(branch) == {"required"}
                                          for branch in error.validator_value):
        names = [name for branch in error.validator_value for name in branch["required"]]
        return [Diagnostic(document.location(path, key=True), subject, dotted(path),
                           f"required field is missing: give {' or '.join(names)}")]
    if error.context:  # oneOf / anyOf: report the branch that came closest
        from jsonschema.exceptions import best_match

        error = best_match(error.context)
        path = tuple(error.absolute_path)
    if "propertyNames" in error.absolute_schema_path:  # a bad key: point at the key itself
        key = str(error.instance)
        field_path = (*path, key)
        rule = error.schema.get("description", error.message)
        return [Diagnostic(document.location(field_path, key=True), subject, dotted(field_path),
                           f"{_short(key)} is not allowed here: {rule}")]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        extras = [k for k in error.instance if k not in allowed]
        if extras:
            listed = ", ".join(allowed) or "none"
            return [Diagnostic(document.location((*path, extra), key=True), subject, dotted((*path, extra)),
                               f"unknown field{_did_you_mean(extra, allowed)} (allowed here: {listed})")
                    for extra in extras]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        field = dotted((*path, missing)) if missing else dotted(path)
        return [Diagnostic(document.location(path, key=True), subject, field,
                           CONDITIONALLY_REQUIRED.get((kind, field), "required field is missing"))]
    if error.validator == "not" and isinstance(error.instance, dict):
        # `not: {required: [a, b]}` (exclusive fields): point at the offending field given last.
        present = [name for name in _required_names(error.validator_value) if name in error.instance]
        if present:
            last = max(present, key=lambda name: document.location((*path, name), key=True))
            return [Diagnostic(document.location((*path, last), key=True), subject, dotted((*path, last)),
                               _message(error))]
    return [Diagnostic(document.location(path), subject, dotted(path), _message(error))]


def _required_names(schema: Any) -> list[str]:
    """The field names a schema requires, through anyOf / allOf / oneOf."""
    if not isinstance(schema, dict):
        return []
    names = [name for name in schema.get("required", []) if isinstance(name, str)]
    for combinator in ("anyOf", "allOf", "oneOf"):
        for branch in schema.get(combinator, []):
            names += _required_names(branch)
    return names


def _did_you_mean(word: object, choices: Any) -> str:
    import difflib  # only for a misspelt name: validate imports this module on every run

    match = difflib.get_close_matches(str(word), list(choices), n=1)
    return f"; did you mean {match[0]}?" if match else ""


def _first_sentence(text: str) -> str:
    """Up to the first full stop that ends a sentence (not the one in "e.g." or a host name)."""
    return re.split(r"(?<!e\.g)(?<!i\.e)\.(?=\s|$)", text, maxsplit=1)[0]


def _is_secret(error: ValidationError) -> bool:
    """Whether the value sits where a secret reference belongs: it may be a pasted secret."""
    in_reference = bool(error.absolute_path) and error.absolute_path[-1] == "fromEnv"
    return in_reference or "fromEnv" in error.schema.get("properties", {})


def _message(error: ValidationError) -> str:
    validator_name = error.validator
    value = error.instance
    description = error.schema.get("description", "")
    hint = f": {_first_sentence(description)}" if isinstance(description, str) and description else ""
    if _is_secret(error):  # never echo the value
        if validator_name == "type" and "fromEnv" in error.schema.get("properties", {}):
            return ("must name the environment variable that holds the secret, never the secret itself: write "
                    "{fromEnv: VARIABLE_NAME} and set VARIABLE_NAME where the reconciler runs "
                    "(the value is not shown: it may be a secret)")
        return f"is not allowed{hint} (the value is not shown: it may be a secret)"
    if validator_name == "type":
        expected = error.validator_value
        names = expected if isinstance(expected, list) else [expected]
        got = "an empty value" if value is None else f"{_json_type(value)} {_short(value)}"
        return f"must be {' or '.join(_article(n) for n in names)} (got {got})"
    if validator_name == "enum":
        return f"must be one of {', '.join(map(str, error.validator_value))} (got {_short(value)})"
    if validator_name == "const":
        return f"must be {error.validator_value!r} (got {_short(value)})"
    if validator_name == "pattern":
        shown = _short(value)
        if isinstance(value, str) and shown != repr(value):  # cut short: say how long it is
            shown += f" ({len(value)} characters)"
        return f"{shown} is not allowed{hint} (pattern {error.validator_value})"
    if validator_name in ("minimum", "exclusiveMinimum"):
        return f"must be at least {error.validator_value} (got {value})"
    if validator_name in ("maximum", "exclusiveMaximum"):
        return f"must be at most {error.validator_value} (got {value})"
    if validator_name == "maxLength":
        return f"is {len(value)} characters long; at most {error.validator_value} are allowed{hint}"
    if validator_name == "minLength":
        if error.validator_value == 1:
            return "must not be empty"
        return f"needs at least {error.validator_value} characters"
    if validator_name == "maxProperties":
        return f"has {len(value)} entries; at most {error.validator_value} are allowed"
    if validator_name == "maxItems":
        return f"has {len(value)} items; at most {error.validator_value} are allowed"
    if validator_name == "minItems":
        return f"needs at least {error.validator_value} item{'s' if error.validator_value != 1 else ''}"
    if validator_name == "uniqueItems":
        return "items must be unique"
    if validator_name == "not":
        return str(error.schema.get("description", error.message))
    return str(error.message)


def _article(type_name: str) -> str:
    return {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
            "number": "a number", "boolean": "true or false", "null": "null"}.get(type_name, type_name)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return "null"


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
