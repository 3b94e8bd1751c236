#!/usr/bin/env python3
"""Write docs/config-reference.md from the config models' JSON schema (agent/config.py).

    .venv/bin/python scripts/gen_config_docs.py           # rewrite the file
    .venv/bin/python scripts/gen_config_docs.py --check   # exit 1 if it is stale

tests/test_config_docs.py runs the check, so a key added to the models without regenerating
the reference fails the suite.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.config import agent_schema  # noqa: E402
from central.config import central_schema  # noqa: E402

OUT = REPO / "docs" / "config-reference.md"

HEADER = """# Config reference

Generated from the config models (`agent/config.py`) by `scripts/gen_config_docs.py`; do not
edit by hand (`tests/test_config_docs.py` fails when this file is stale). How the files are
read, the error format and the secrets rule: [config.md](config.md). Unknown keys are errors.
Keys without a default are required (when their section is present); a default of "—" is
computed (an empty list, or a table of its own defaults).
"""


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref:
        return schema["$defs"][ref.rsplit("/", 1)[1]]
    return node


def _unwrap(schema: dict[str, Any], node: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the non-null alternative, nullable) of an ``anyOf`` with null."""
    options = node.get("anyOf")
    if not options:
        return _resolve(schema, node), False
    real = [o for o in options if o.get("type") != "null"]
    nullable = len(real) < len(options)
    if len(real) == 1:
        return _resolve(schema, real[0]), nullable
    return {"anyOf": real}, nullable


def _type(schema: dict[str, Any], node: dict[str, Any]) -> str:
    node, nullable = _unwrap(schema, node)
    if "enum" in node:
        text = " | ".join(json.dumps(v, ensure_ascii=False) for v in node["enum"])
    elif "const" in node:
        text = json.dumps(node["const"], ensure_ascii=False)
    elif node.get("type") == "array":
        text = f"list of {_type(schema, node.get('items', {}))}"
    elif "anyOf" in node:
        text = " or ".join(_type(schema, o) for o in node["anyOf"])
    else:
        text = {
            "string": "string",
            "integer": "integer",
            "number": "number",
            "boolean": "boolean",
            "object": "table",
        }.get(node.get("type", ""), node.get("type", "any"))
        fmt = node.get("format")
        if fmt in ("path", "date"):
            text = fmt
    return text + (" or null" if nullable else "")


def _limits(schema: dict[str, Any], node: dict[str, Any]) -> str:
    node, _ = _unwrap(schema, node)
    parts = []
    for key, word in (
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
        ("exclusiveMaximum", "<"),
    ):
        if key in node:
            parts.append(f"{word} {node[key]}")
    if "pattern" in node:
        parts.append(f"`{node['pattern']}`")
    if "maxLength" in node:
        parts.append(f"≤ {node['maxLength']} chars")
    if node.get("type") == "array":
        items = _resolve(schema, node.get("items", {}))
        inner = _limits(schema, items)
        if inner:
            parts.append(f"each {inner}")
    return ", ".join(parts)


def _default(field: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in field:
        return "—"
    return "`" + json.dumps(field["default"], ensure_ascii=False).replace("|", "\\|") + "`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _section(schema: dict[str, Any], model: dict[str, Any], path: str, out: list[str]) -> None:
    rows, nested = [], []
    required = set(model.get("required", []))
    for key, field in model.get("properties", {}).items():
        target, _ = _unwrap(schema, field)
        if target.get("type") == "object" and "properties" in target:
            nested.append((key, target, False))
            continue
        if target.get("type") == "array":
            items = _resolve(schema, target.get("items", {}))
            if items.get("type") == "object" and "properties" in items:
                nested.append((key, items, True))
                continue
        rows.append(
            "| `{}` | {} | {} | {} | {} |".format(
                key,
                _cell(_type(schema, field)),
                _default(field, key in required),
                _cell(_limits(schema, field)),
                _cell(field.get("description", "")),
            )
        )
    if rows:
        out += [
            "| key | type | default | allowed | description |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    for key, sub, is_list in nested:
        name = f"{path}.{key}" if path else key
        title = f"[[{name}]]" if is_list else f"[{name}]"
        out.append(f"### `{title}`")
        out.append("")
        if sub.get("description"):
            out += [sub["description"].strip(), ""]
        if is_list:
            out += ["One table per item; the keys:", ""]
        _section(schema, sub, name, out)


def render() -> str:
    out = [HEADER]
    for schema, heading in (
        (agent_schema(), "## Device: `agent.toml`"),
        (central_schema(), "## Collector: `central.toml`"),
    ):
        out += [heading, ""]
        _section(schema, schema, "", out)
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(
                f"{OUT.relative_to(REPO)} is stale: run scripts/gen_config_docs.py", file=sys.stderr
            )
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
