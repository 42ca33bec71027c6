"""Reading and normalising IoT Edge ``modulesContent``, base and layered alike.

A base deployment sets ``$edgeAgent`` -> ``properties.desired`` as one object; a layered one sets
dotted paths (``properties.desired.modules.<name>``, ``properties.desired.runtime.settings.
registryCredentials.<name>``) that merge on top of the device's base. Every reader here understands
both shapes. Rendering content from specs is the core's job (``core.manifest``).

Registry passwords: content the reconciler renders carries a placeholder per registry
(``password_placeholder``); providers fill the real password in right before they write
(``fill_passwords``), and content read back from a backend is redacted to the placeholders again
(``redact_passwords``) so that actual and desired content compare equal.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.hub import limits
from reconciler.model.specs import JSON

AGENT = "$edgeAgent"
DESIRED = "properties.desired"
CREDENTIALS_PREFIX = "properties.desired.runtime.settings.registryCredentials."


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def password_placeholder(registry: str) -> str:
    """The stand-in for a registry password inside rendered content."""
    return f"<secret:registry/{registry}/password>"


def create_options_chunks(options: dict[str, JSON], *, sort_keys: bool = True) -> list[str]:
    """Docker create options as IoT Edge wants them: minified JSON, split into twin-sized
    strings (``createOptions``, ``createOptions01``, ...). Keys sorted, or (``sort_keys=False``) in
    the order given, as the IoT Edge tools write them (JSON.stringify)."""
    if not sort_keys:
        text = json.dumps(options, separators=(",", ":"), ensure_ascii=False) if options else "{}"
    else:
        text = canonical_json(options) if options else "{}"
    size = limits.CREATE_OPTIONS_CHUNK
    return [text[i : i + size] for i in range(0, len(text), size)] or ["{}"]


def is_layered_content(content: dict[str, JSON]) -> bool:
    """IoT Hub's own test: a layered deployment sets dotted ``properties.desired.*`` paths."""
    agent = content.get(AGENT, {})
    return isinstance(agent, dict) and DESIRED not in agent


def _agent_entries(content: dict[str, JSON], *path: str) -> dict[str, dict[str, JSON]]:
    """The entries of the map at ``properties.desired.<path>`` of ``$edgeAgent``: base content holds the
    map nested, layered content holds one dotted key per entry (``properties.desired.<path>.<name>``;
    deeper dotted keys set a field of an entry and are not entries)."""
    agent = content.get(AGENT)
    if not isinstance(agent, dict):
        return {}
    node: Any = agent.get(DESIRED)
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    found = {k: v for k, v in node.items() if isinstance(v, dict)} if isinstance(node, dict) else {}
    prefix = ".".join((DESIRED, *path)) + "."
    for key, value in agent.items():
        name = key[len(prefix):]
        if key.startswith(prefix) and "." not in name and isinstance(value, dict):
            found[name] = value
    return found


def modules(content: dict[str, JSON]) -> dict[str, dict[str, JSON]]:
    """The custom modules ``$edgeAgent`` defines: name -> definition, base or layered."""
    return _agent_entries(content, "modules")


def module_image(definition: dict[str, JSON]) -> str:
    return str((definition.get("settings") or {}).get("image", ""))


def module_images(content: dict[str, JSON]) -> dict[str, str]:
    """Module name -> image reference, for base and layered content alike."""
    return {name: module_image(definition) for name, definition in sorted(modules(content).items())}


def registry_credentials(content: dict[str, JSON]) -> dict[str, dict[str, JSON]]:
    """Registry name -> ``{address, username, password}`` from base or layered content."""
    return _agent_entries(content, "runtime", "settings", "registryCredentials")


def create_options_text(settings: dict[str, JSON]) -> str:
    """A module's createOptions re-joined from its chunks (``createOptions``, ``createOptions01``, ...)."""
    parts = [settings.get("createOptions", "")]
    index = 1
    while f"createOptions{index:02d}" in settings:
        parts.append(settings[f"createOptions{index:02d}"])
        index += 1
    return "".join(str(part) for part in parts)


def fill_passwords(content: dict[str, JSON], passwords: dict[str, str]) -> dict[str, JSON]:
    """A copy of ``content`` with each registry placeholder replaced by its password.
    Only providers call this, right before they send the content to the backend."""
    text = canonical_json(content)
    for registry, password in passwords.items():
        text = text.replace(json.dumps(password_placeholder(registry)), json.dumps(password))
    filled: dict[str, JSON] = json.loads(text)
    return filled


def redact_passwords(content: dict[str, JSON]) -> dict[str, JSON]:
    """The inverse, for content read back from a backend: each registry credential's
    password becomes the placeholder again, so actual and desired content compare equal."""
    redacted: dict[str, JSON] = json.loads(canonical_json(content))
    agent = redacted.get(AGENT)
    if not isinstance(agent, dict):
        return redacted
    for key, value in agent.items():
        if key == DESIRED and isinstance(value, dict):
            credentials = value.get("runtime", {}).get("settings", {}).get("registryCredentials", {})
            for name, credential in credentials.items():
                credential["password"] = password_placeholder(name)
        elif key.startswith(CREDENTIALS_PREFIX) and isinstance(value, dict):
            value["password"] = password_placeholder(key.rsplit(".", 1)[-1])
    return redacted
