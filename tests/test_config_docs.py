"""docs/config-reference.md is generated from the config models and must be current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gen_config_docs.py"


def _script() -> ModuleType:
    """scripts/gen_config_docs.py imported as a module (scripts/ is not a package)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gen_config_docs

        return gen_config_docs
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_config_reference_is_current():
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_reference_names_every_section_and_key():
    from agent.config import AgentConfig
    from central.config import CentralConfig

    text = _script().render()
    for model in (AgentConfig, CentralConfig):
        for name, field in model.model_fields.items():
            assert f"[{name}]" in text or f"[[{name}]]" in text, name
            sub = field.annotation
            if getattr(sub, "model_fields", None) is None:  # list[PadSection], Optional[...]
                sub = next(
                    (a for a in getattr(sub, "__args__", ()) if hasattr(a, "model_fields")), None
                )
            fields = getattr(sub, "model_fields", None)
            schema = sub.model_json_schema() if sub is not None else {}
            for key in fields or {}:
                if key not in schema.get("properties", {}):
                    continue  # a retired key kept only to explain its removal (not documented)
                assert f"| `{key}` |" in text or f".{key}]" in text, f"{name}.{key}"


def test_check_fails_on_a_stale_file(tmp_path, monkeypatch):
    """The staleness check can fail: an edited copy is reported."""
    gen_config_docs = _script()
    stale = tmp_path / "config-reference.md"
    stale.write_text(gen_config_docs.render().replace("batch_size", "batch_sise"))
    monkeypatch.setattr(gen_config_docs, "OUT", stale)
    monkeypatch.setattr(gen_config_docs, "REPO", tmp_path)
    monkeypatch.setattr(sys, "argv", ["gen_config_docs.py", "--check"])
    assert gen_config_docs.main() == 1
