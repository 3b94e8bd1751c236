"""The package boundaries of README.md "Layout": who may import whom.

- ``contract`` is the leaf: it imports nothing of the project.
- ``drivers`` talk to hardware only: they import ``contract`` at most.
- ``agent`` reaches ``sync`` only from its entry points (they wire the uplink's workers), and
  never ``central``: each program prints its own config schema (``hall-central config schema``).
- ``central`` runs on a server without the device's code: never ``agent`` (not even through
  ``sync``), and no device-only library (pyserial, sqlite-utils, cv2, dlib).
- A window (pad-only) device never loads the vision stack.
- The product and ``scripts/`` never import ``tests``: the Quick start runs on a kiosk install
  (``scripts/setup.sh --kiosk``), which has no pytest. ``bench/`` may: benchmarks are dev-only
  (they run in the dev install and reuse the tests' services and media).
- Entry points are not libraries: only the CLI's dispatch imports ``agent.enroll``; what
  others need of enrolment is in ``agent/enrolment.py``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"agent", "central", "contract", "drivers", "sync"}


def _imports(package: str) -> dict[str, set[str]]:
    """{module file: project packages it imports}, statically, lazy imports included."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names & PROJECT - {package}
    return found


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("contract", set()),
        ("drivers", {"contract"}),
        ("agent", {"contract", "drivers", "sync"}),
        ("central", {"contract", "sync"}),
    ],
)
def test_static_imports_stay_inside_the_boundaries(package: str, allowed: set[str]) -> None:
    bad = {f: sorted(names - allowed) for f, names in _imports(package).items() if names - allowed}
    assert not bad, f"{package} may import only {sorted(allowed)}: {bad}"


# The entry points of the device: they wire workers or run a command (README.md "Layout").
AGENT_ENTRY_POINTS = {"agent/cli.py", "agent/runtime.py", "agent/checks.py", "agent/enroll.py"}


def test_agent_reaches_sync_only_from_its_entry_points() -> None:
    bad = sorted(
        f
        for f, names in _imports("agent").items()
        if "sync" in names and f not in AGENT_ENTRY_POINTS
    )
    assert not bad, f"agent modules importing sync outside the entry points: {bad}"


def _loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}


def test_the_central_program_loads_no_device_code() -> None:
    loaded = _loaded_after(
        "import central.cli, central.collector, central.store, central.config\n"
        "central.cli.build_parser()"
    )
    assert not loaded & {"agent", "drivers", "serial", "sqlite_utils", "cv2", "dlib"}, loaded


def test_a_pad_only_agent_loads_no_vision_stack() -> None:
    loaded = _loaded_after(
        "import agent.cli, agent.runtime, agent.windows, drivers.pad.link, sync.uplink\n"
        "agent.cli.build_parser()"
    )
    assert not loaded & {"cv2", "dlib", "face_recognition", "central"}, loaded


def test_the_central_install_pulls_no_device_library() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    central = " ".join(project["dependencies"] + extras["central"] + extras["postgres"]).lower()
    for device_only in ("pyserial", "sqlite-utils", "opencv", "dlib", "face_recognition"):
        assert device_only not in central, device_only
    assert any(d.startswith("pyserial") for d in extras["device"])


# Everything that runs on an install without the dev extra (README.md "Quick start").
NO_TESTS_HERE = ("agent", "central", "contract", "drivers", "sync", "scripts")


def _imports_of(root: Path, packages: tuple[str, ...], module: str) -> dict[str, list[int]]:
    """{file: line numbers} of every import of ``module`` or a module under it: statements
    (``from agent import enroll`` too), lazy ones included, and importlib.import_module /
    __import__ calls with a literal name."""
    found: dict[str, list[int]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            lines = []
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif (
                    isinstance(node, ast.Call)
                    and ast.unparse(node.func) in ("importlib.import_module", "__import__")
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    names = [str(node.args[0].value)]
                if any(name == module or name.startswith(f"{module}.") for name in names):
                    lines.append(node.lineno)
            if lines:
                found[str(path.relative_to(root))] = lines
    return found


def test_the_product_and_scripts_never_import_tests() -> None:
    bad = _imports_of(ROOT, NO_TESTS_HERE, "tests")
    assert not bad, f"imports of tests/ where the dev extra is not installed: {bad}"


def test_the_demo_loads_nothing_of_tests() -> None:
    """Through any chain of imports, not only its own statements (``scripts/`` modules may
    import each other and the product)."""
    loaded = _loaded_after(
        "import scripts.demo, scripts.sample_media, scripts.local_broker, scripts.loopback"
    )
    assert "tests" not in loaded and "bench" not in loaded, loaded


# ``hall-agent enroll`` is an entry point, not a library: its work is in agent/enrolment.py
# and agent/screen_enroll.py, which the recognition process, the camera enrolment and the
# tests import instead. Everywhere, the tests and the benchmarks included.
EVERYWHERE = (*NO_TESTS_HERE, "bench", "tests")


def test_only_the_cli_dispatch_imports_the_enroll_command() -> None:
    found = _imports_of(ROOT, EVERYWHERE, "agent.enroll")
    bad = {f: lines for f, lines in found.items() if f != "agent/cli.py"}
    assert not bad, f"agent/enroll.py is an entry point; import agent/enrolment.py: {bad}"
    assert found.get("agent/cli.py"), "the scan no longer sees the CLI's dispatch"


def test_the_tests_import_scan_finds_every_form(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    tool = tmp_path / "scripts" / "tool.py"
    tool.write_text(
        "import os\n"
        "from tests import media\n"
        "def later():\n"
        "    import tests.support\n"
        "    from tests.media import Actor\n"
        "    importlib.import_module('tests.conftest')\n"
        "    __import__('tests')\n"
        "from testsuite import x\n"  # another package: not ours
    )
    found = _imports_of(tmp_path, ("scripts",), "tests")
    assert found == {tool.relative_to(tmp_path).as_posix(): [2, 4, 5, 6, 7]}


def test_the_enroll_import_scan_finds_every_form(tmp_path: Path) -> None:
    (tmp_path / "agent").mkdir()
    lib = tmp_path / "agent" / "lib.py"
    lib.write_text(
        "from agent.enrolment import REASONS\n"  # the library: allowed
        "from agent import enroll\n"
        "def later():\n"
        "    from agent.enroll import main_enroll\n"
        "    import agent.enroll\n"
        "    importlib.import_module('agent.enroll')\n"
        "from agent import config, enrolment\n"
    )
    found = _imports_of(tmp_path, ("agent",), "agent.enroll")
    assert found == {lib.relative_to(tmp_path).as_posix(): [2, 4, 5, 6]}
