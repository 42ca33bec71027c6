"""The JSON Schemas of the spec kinds, and schema errors as located diagnostics."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from reconciler.model.diagnostics import Diagnostic
from reconciler.spec.yaml_source import Document

KINDS = ("Environment", "Model", "Image", "Deployment")
API_VERSION = "reconciler/v1"


def schema_directory() -> Path:
    """``schemas/`` at the repository root (the package is installed in editable mode)."""
    return Path(__file__).resolve().parents[2] / "schemas"


def schema_path(kind: str) -> Path:
    return schema_directory() / f"{kind.lower()}.schema.json"


@cache
def load_schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_path(kind).read_text(encoding="utf-8"))
    return schema


@cache
def validator(kind: str) -> Draft202012Validator:
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
        where = document.location(("kind",)) if "kind" in data else document.location(())
        got = f" (got {kind!r})" if kind is not None else ""
        return [Diagnostic(where, "", "kind", f"must be one of {', '.join(KINDS)}{got}")]
    errors = sorted(validator(kind).iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    return [_diagnostic(document, subject, error) for error in errors]


def _diagnostic(document: Document, subject: str, error: ValidationError) -> Diagnostic:
    if error.context:  # oneOf / anyOf: report the branch that came closest
        error = best_match(error.context)
    path = tuple(error.absolute_path)
    message = _message(error)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extras = sorted(k for k in error.instance if k not in allowed)
        if extras:
            field_path = (*path, extras[0])
            names = ", ".join(sorted(allowed)) or "none"
            return Diagnostic(document.location(field_path, key=True), subject, dotted(field_path),
                              f"unknown field (allowed here: {names})")
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return Diagnostic(document.location(path, key=True), subject, dotted((*path, missing)) if missing
                          else dotted(path), "required field is missing")
    return Diagnostic(document.location(path), subject, dotted(path), message)


def _message(error: ValidationError) -> str:
    validator_name = error.validator
    value = error.instance
    if validator_name == "type":
        expected = error.validator_value
        names = expected if isinstance(expected, list) else [expected]
        return f"must be {' or '.join(_article(n) for n in names)} (got {_json_type(value)} {_short(value)})"
    if validator_name == "enum":
        return f"must be one of {', '.join(map(str, error.validator_value))} (got {_short(value)})"
    if validator_name == "const":
        return f"must be {error.validator_value!r} (got {_short(value)})"
    if validator_name == "pattern":
        description = error.schema.get("description", "")
        hint = f": {description.split('.')[0]}" if description else ""
        return f"{_short(value)} is not allowed{hint} (pattern {error.validator_value})"
    if validator_name in ("minimum", "exclusiveMinimum"):
        return f"must be at least {error.validator_value} (got {value})"
    if validator_name in ("maximum", "exclusiveMaximum"):
        return f"must be at most {error.validator_value} (got {value})"
    if validator_name == "maxLength":
        return f"is {len(value)} characters long; at most {error.validator_value} are allowed"
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
