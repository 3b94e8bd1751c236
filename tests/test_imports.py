"""The package boundaries of README.md "Layout": who may import whom, for every module.

- The arrows between the top-level packages point one way (:data:`ARROWS`): ``contract`` is
  the leaf and imports nothing of the project; ``drivers`` talk to hardware and import
  ``contract`` at most; ``sync`` is what both programs share on the wire and imports
  ``contract`` only; ``agent`` imports ``contract``, ``drivers`` and ``sync``, never
  ``central`` (each program prints its own config schema: ``hall-central config schema``);
  ``central`` imports ``contract`` and ``sync``: it runs on a server without the device's code
  (never ``agent`` or ``drivers``, and no device-only library: pyserial, sqlite-utils, cv2,
  dlib).
- Inside ``agent``: the device's infrastructure at the top (config, outbox, durable files,
  roster, schedule file, supervisor) imports none of the feature sub-packages; ``kiosk``,
  ``windows`` and ``link`` each import the infrastructure and themselves, never each other;
  only the entry points (agent/cli.py, agent/runtime.py, agent/checks.py) wire them together.
  ``sync`` is reached from ``link`` and the entry points (agent/kiosk/enroll.py is one).
- A window (pad-only) device never loads the vision stack, nor anything of the kiosk.
- The pad simulator imports nothing of the project: it is the second implementation the pad
  driver is tested against.
- The product and ``scripts/`` never import ``tests``: the Quick start runs on a kiosk install
  (``scripts/setup.sh --kiosk``), which has no pytest. ``bench/`` may: benchmarks are dev-only
  (they run in the dev install and reuse the tests' services and media).
- Entry points are not libraries: only the CLI's dispatch imports ``agent.kiosk.enroll``; what
  others need of enrolment is in ``agent/kiosk/enrolment.py``.

Every form counts: lazy imports inside functions, ``from agent import x``, and
``importlib.import_module`` / ``__import__`` with a literal name.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Who may import whom among the product's top-level packages.
ARROWS: dict[str, set[str]] = {
    "contract": set(),
    "drivers": {"contract"},
    "sync": {"contract"},
    "agent": {"contract", "drivers", "sync"},
    "central": {"contract", "sync"},
}
PROJECT = set(ARROWS)


def _imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every import in a file: statements (``from agent import kiosk``
    yields ``agent`` and ``agent.kiosk``), lazy ones included, and importlib.import_module /
    __import__ calls with a literal name."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            # A relative import would slip past every rule here, which match dotted names.
            assert not node.level, f"{path}:{node.lineno}: relative import; write the full path"
            assert node.module
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("importlib.import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names = [str(node.args[0].value)]
        for name in names:
            yield node.lineno, name


def _modules(root: Path, package: str) -> Iterator[tuple[str, Path]]:
    """(file relative to ``root``, path) of every module of a package, sub-packages included."""
    for path in sorted((root / package).rglob("*.py")):
        yield path.relative_to(root).as_posix(), path


def _imports(package: str) -> dict[str, set[str]]:
    """{module file: other project packages it imports}."""
    return {
        f: {name.split(".")[0] for _, name in _imported_names(path)} & PROJECT - {package}
        for f, path in _modules(ROOT, package)
    }


def test_every_product_package_has_its_arrows() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"scripts", "tests", "bench"}
    assert packages == PROJECT, "a new top-level package needs its line in ARROWS"


@pytest.mark.parametrize("package", sorted(ARROWS))
def test_static_imports_stay_inside_the_boundaries(package: str) -> None:
    allowed = ARROWS[package]
    bad = {f: sorted(names - allowed) for f, names in _imports(package).items() if names - allowed}
    assert not bad, f"{package} may import only {sorted(allowed)}: {bad}"


def test_the_package_arrows_point_one_way() -> None:
    """Counted from the code, not from ARROWS: no chain of imports leads back to its start."""
    graph = {p: set().union(*_imports(p).values()) for p in PROJECT}
    done: set[str] = set()

    def visit(package: str, path: tuple[str, ...]) -> None:
        assert package not in path, f"import cycle: {' -> '.join((*path, package))}"
        if package not in done:
            for target in sorted(graph[package]):
                visit(target, (*path, package))
            done.add(package)

    for package in sorted(graph):
        visit(package, ())


# agent/: infrastructure at the top, one sub-package per feature, and the entry points that wire
# them (README.md "Layout").
AGENT_FEATURES = {"kiosk", "windows", "link"}
AGENT_WIRING = {"agent/cli.py", "agent/runtime.py", "agent/checks.py"}
# The modules that run a command or wire workers may reach sync (agent/link/ always may).
AGENT_ENTRY_POINTS = AGENT_WIRING | {"agent/kiosk/enroll.py"}


def _agent_area(module: str) -> str:
    """``kiosk``, ``windows`` or ``link`` for a module of that sub-package, ``wiring`` for an
    entry point at the top, ``core`` for the infrastructure (``agent`` itself included)."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in AGENT_FEATURES:
        return parts[1]
    if len(parts) > 1 and f"agent/{parts[1]}.py" in AGENT_WIRING:
        return "wiring"
    return "core"


def _file_area(f: str) -> str:
    return _agent_area(f.removesuffix(".py").removesuffix("/__init__").replace("/", "."))


def _reaching_past_their_area(root: Path) -> dict[str, list[str]]:
    """{agent module file: the agent modules it imports outside its own area and the core}."""
    bad: dict[str, list[str]] = {}
    for f, path in _modules(root, "agent"):
        area = _file_area(f)
        if area == "wiring":
            continue
        wrong = {
            name
            for _, name in _imported_names(path)
            if name.split(".")[0] == "agent" and _agent_area(name) not in {"core", area}
        }
        if wrong:
            bad[f] = sorted(wrong)
    return bad


def test_agent_features_import_only_the_infrastructure_and_themselves() -> None:
    bad = _reaching_past_their_area(ROOT)
    assert not bad, f"agent modules reaching past their own area and agent's core: {bad}"


def test_the_area_scan_finds_a_feature_reaching_another(tmp_path: Path) -> None:
    files = {
        "agent/outbox.py": "def later():\n    from agent.link import uplink\n",
        "agent/cli.py": "from agent.kiosk import enroll\nfrom agent.windows.state import X\n",
        "agent/kiosk/screen.py": "from agent.config import C\nfrom agent.kiosk import gallery\n",
        "agent/windows/state.py": "from agent import kiosk\nimport agent.kiosk.gallery\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _reaching_past_their_area(tmp_path) == {
        "agent/outbox.py": ["agent.link", "agent.link.uplink"],
        "agent/windows/state.py": ["agent.kiosk", "agent.kiosk.gallery"],
    }


def test_every_top_level_agent_module_is_core_or_wiring() -> None:
    """A new module at agent/'s top is infrastructure unless it is listed as wiring: the
    feature rule then holds it to the core. This test names what the areas look like now."""
    areas = {f: _file_area(f) for f, _ in _modules(ROOT, "agent")}
    assert {a for a in areas.values()} == {"core", "wiring", *AGENT_FEATURES}
    assert all((ROOT / f).is_file() for f in AGENT_ENTRY_POINTS), AGENT_ENTRY_POINTS
    assert _agent_area("agent.windows") == "windows"  # from agent import windows
    assert _agent_area("agent") == _agent_area("agent.outbox.Outbox") == "core"


def test_agent_reaches_sync_only_from_its_entry_points_and_link() -> None:
    bad = sorted(
        f
        for f, names in _imports("agent").items()
        if "sync" in names and f not in AGENT_ENTRY_POINTS and _file_area(f) != "link"
    )
    assert not bad, f"agent modules importing sync outside the entry points and link: {bad}"


def test_the_pad_simulator_imports_nothing_of_the_project() -> None:
    path = ROOT / "agent" / "windows" / "simulator.py"
    found = sorted({n for _, n in _imported_names(path) if n.split(".")[0] in PROJECT})
    assert not found, f"the simulator must not share code with the pad driver: {found}"
    assert "drivers" not in _loaded_after("import agent.windows.simulator")


def _loaded_after(code: str) -> set[str]:
    """The modules loaded after ``code`` in a fresh interpreter: their full names, and each
    top-level package name too."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    names = set(json.loads(out.splitlines()[-1]))
    return names | {name.split(".")[0] for name in names}


def test_the_central_program_loads_no_device_code() -> None:
    loaded = _loaded_after(
        "import central.cli, central.collector, central.store, central.config\n"
        "central.cli.build_parser()"
    )
    assert not loaded & {"agent", "drivers", "serial", "sqlite_utils", "cv2", "dlib"}, loaded


def test_a_pad_only_agent_loads_no_vision_stack() -> None:
    loaded = _loaded_after(
        "import agent.cli, agent.runtime, agent.windows.state, drivers.pad.link\n"
        "import agent.link.uplink, agent.link.ping\n"
        "agent.cli.build_parser()"
    )
    assert not loaded & {"cv2", "dlib", "face_recognition", "central", "agent.kiosk"}, loaded


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
    """{file: line numbers} of every import of ``module`` or a module under it."""
    found: dict[str, list[int]] = {}
    for package in packages:
        for f, path in _modules(root, package):
            lines = sorted(
                {
                    line
                    for line, name in _imported_names(path)
                    if name == module or name.startswith(f"{module}.")
                }
            )
            if lines:
                found[f] = lines
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


# ``hall-agent enroll`` is an entry point, not a library: its work is in agent/kiosk/enrolment.py
# and agent/kiosk/screen_enroll.py, which the recognition process, the camera enrolment and the
# tests import instead. Everywhere, the tests and the benchmarks included.
EVERYWHERE = (*NO_TESTS_HERE, "bench", "tests")


def test_only_the_cli_dispatch_imports_the_enroll_command() -> None:
    found = _imports_of(ROOT, EVERYWHERE, "agent.kiosk.enroll")
    bad = {f: lines for f, lines in found.items() if f != "agent/cli.py"}
    assert not bad, (
        f"agent/kiosk/enroll.py is an entry point; import agent/kiosk/enrolment.py: {bad}"
    )
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
        "from agent.kiosk.enrolment import REASONS\n"  # the library: allowed
        "from agent.kiosk import enroll\n"
        "def later():\n"
        "    from agent.kiosk.enroll import main_enroll\n"
        "    import agent.kiosk.enroll\n"
        "    importlib.import_module('agent.kiosk.enroll')\n"
        "from agent.kiosk import enrolment, gallery\n"
    )
    found = _imports_of(tmp_path, ("agent",), "agent.kiosk.enroll")
    assert found == {lib.relative_to(tmp_path).as_posix(): [2, 4, 5, 6]}
