"""What the docs tell pad vendors and integrators is what the code does."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from drivers.pad import codec

REPO = Path(__file__).resolve().parents[1]


def _crc(data: bytes) -> int:
    """CRC-16/MODBUS written from the text of docs/pads.md, not the codec's."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_pad_protocol_examples_decode_and_check():
    text = (REPO / "docs" / "pads.md").read_text(encoding="utf-8")
    frames = re.findall(r"\| `(AA 55(?: [0-9A-F]{2})+)` \|", text)
    assert len(frames) >= 10
    assert _crc(b"123456789") == 0x4B37
    for hexes in frames:
        raw = bytes.fromhex(hexes.replace(" ", ""))
        assert raw[5] == len(raw) - 8, hexes
        crc = _crc(raw[2:-2])
        assert raw[-2:] == bytes([crc & 0xFF, crc >> 8]), hexes
        (frame,) = codec.FrameParser().feed(raw)
        message = codec.decode(frame)  # a payload the agent accepts
        assert codec.encode(frame.addr, frame.seq, message) == raw


def test_topic_examples_are_valid_json_and_name_every_event_type():
    from agent.envelope import EVENT_TYPES

    text = (REPO / "docs" / "topics.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        json.loads(block)
    for event_type in EVENT_TYPES:
        assert f"`{event_type}`" in text, event_type


def test_docs_do_not_send_readers_outside_the_repository():
    """A clone has no ../shared: the README and docs must carry what users need."""
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        assert "../shared" not in text, path.name
        # Relative links inside the repository resolve.
        for target in re.findall(r"\]\(((?!https?:)[^)#]+)", text):
            assert (path.parent / target).exists(), f"{path.name}: broken link {target}"


# A reference to a file of this repository: a path under one of its top-level folders, or an
# upper-case Markdown name (README.md). Lower-case bare names (agent.toml, outbox.db) are
# usually files on the installed device, not in the repository, and are not checked.
_TOP_DIRS = "docs|config|systemd|scripts|tests|bench|agent|central|contract|drivers|sync|\\.ci"
_REFERENCE = re.compile(
    rf"(?<![\w./-])((?:{_TOP_DIRS})/[\w./-]*\w)(\{{?)|(?<![\w./-])([A-Z][A-Z_]+\.md)\b"
)
# Paths that name a folder inside a downloaded archive, not this repository.
_OUTSIDE_REPOSITORY = {
    "tests/test_images"
}  # in face_recognition 1.3.0's sdist (docs/attendance.md)
_BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".xlsx", ".ico", ".gz", ".whl"}


def _resolves(ref: str, brace: str) -> bool:
    """A path, a module written without .py, a module's attribute (tests/mqttkit.Peer), or a
    brace list's prefix (tests/test_{camera,faces}.py)."""
    if brace:
        return any(REPO.glob(ref + "*"))
    candidates = [ref, ref + ".py", ref.rsplit(".", 1)[0] + ".py"]
    return any((REPO / c).exists() for c in candidates)


def _repository_text_files() -> list[Path]:
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    files = []
    for name in listed:
        path = REPO / name
        if path.suffix in _BINARY_SUFFIXES or "/vendor/" in name or not path.is_file():
            continue
        files.append(path)
    return files


def test_every_file_the_project_cites_is_in_the_repository():
    """Comments, docs and configs cite only files a clone has (docs/architecture.md)."""
    files = _repository_text_files()
    names = {path.name for path in files}
    missing = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            for match in _REFERENCE.finditer(line):
                ref, brace, upper = match.group(1), match.group(2), match.group(3)
                if upper is not None:
                    ok = upper in names
                    ref = upper
                else:
                    ok = ref in _OUTSIDE_REPOSITORY or _resolves(ref, brace)
                if not ok:
                    missing.append(f"{path.relative_to(REPO)}:{lineno}: {ref}")
    assert not missing, "references to files that are not in the repository:\n" + "\n".join(missing)


def test_the_reference_check_finds_a_missing_file():
    # Built from parts so that this file does not cite them itself.
    absent_upper, absent_doc, brace = "NOWHERE" + ".md", "docs/" + "nowhere.md", "tests/" + "test_"
    line = f"see {absent_upper} and {absent_doc}, docs/architecture.md, {brace}{{a,b}}.py"
    found = {m.group(1) or m.group(3): m.group(2) for m in _REFERENCE.finditer(line)}
    assert set(found) == {absent_upper, absent_doc, "docs/architecture.md", brace}
    assert not _resolves(absent_doc, "")
    assert _resolves("docs/architecture.md", "")
    assert _resolves(brace, found[brace])
    assert _resolves("tests/mqttkit.Peer", "")


def _readme_table(heading: str) -> list[list[str]]:
    """The rows of the README table whose header row starts with ``heading``, as cells."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {heading} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def _defined_names(path: Path) -> set[str]:
    """Module-level functions, classes and assigned names of a file (or of a package's files)."""
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    names: set[str] = set()
    for f in files:
        for node in ast.parse(f.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return names


def test_every_row_of_the_readme_where_table_is_true_to_the_code() -> None:
    """README "Layout": each file named exists, and each name given in brackets is defined in
    one of the row's files (not merely imported there)."""
    rows = _readme_table("where does … live")
    assert len(rows) > 20
    problems = []
    for what, where in rows:
        tokens = re.findall(r"`([^`]+)`", where)
        paths = [t for t in tokens if "/" in t]
        assert paths, f"row {what!r} names no file"
        for p in paths:
            if not (REPO / p).exists():
                problems.append(f"{what!r}: {p} does not exist")
        names = [t for t in tokens if "/" not in t]
        defined = set().union(*(_defined_names(REPO / p) for p in paths if (REPO / p).exists()))
        problems += [
            f"{what!r}: {n} is defined in none of {paths}" for n in names if n not in defined
        ]
    assert not problems, problems


def test_the_readme_lists_the_package_arrows_the_code_has() -> None:
    from tests.test_imports import PROJECT, _imports

    text = (REPO / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`(\w+) → (\w+)`", text))
    in_code = {(p, q) for p in PROJECT for names in _imports(p).values() for q in names}
    assert listed == in_code, f"README lists {sorted(listed)}, the code has {sorted(in_code)}"
