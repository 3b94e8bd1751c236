"""``hall-agent enroll`` and ``hall-agent gallery``: the commands on the kiosk's face gallery.

An entry point: the arguments, the roster's say on who may be enrolled, the messages and exit
codes. The work is in agent/kiosk/enrolment.py (photos to encodings, storing, the roster prune) and
agent/kiosk/screen_enroll.py (from the kiosk's camera): other modules import those, never this one.

Enrolment of a person is all-or-nothing: when one of their photos is refused (no face,
several faces, too small / blurred / turned) nothing is stored for them and the reason is
printed, so a re-run never leaves half a person behind. Enrolling a staff id again replaces
their encodings unless ``--append``. When the roster from the centre exists, only staff it
lists can be enrolled.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import AgentConfig
from agent.kiosk.enrolment import (
    REASONS,
    EnrolmentError,
    encode_photos,
    prune_to_roster,
    store_encodings,
)
from agent.roster import staff_by_id
from contract import is_staff_id

if TYPE_CHECKING:  # numpy only where a gallery is opened
    from agent.kiosk.gallery import Person
    from drivers.faces import FaceEngine

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _cli_error(message: str, code: int = 1) -> Exception:
    from sync.cli_common import CliError

    return CliError(message, code)


def _engine(cfg: AgentConfig) -> FaceEngine:
    """The kiosk's own engine (the factory the recognition process uses), so enrolment
    honours every option of ``[attendance]`` the kiosk does."""
    from agent.kiosk.recognition import build_engine

    assert cfg.attendance is not None
    return build_engine(cfg.attendance)


def _model(cfg: AgentConfig) -> str:
    from agent.kiosk.recognition import model_id

    assert cfg.attendance is not None
    return model_id(cfg.attendance)


def _progress(done: int, total: int, label: str) -> None:
    width = 30
    filled = width * done // max(total, 1)
    bar = "#" * filled + "." * (width - filled)
    end = "\n" if done == total else ""
    if sys.stderr.isatty():
        print(f"\r[{bar}] {done}/{total} {label[:30]:<30}", end=end, file=sys.stderr, flush=True)
    else:
        print(f"[{bar}] {done}/{total} {label}", file=sys.stderr, flush=True)


def _photos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def main_enroll(cfg: AgentConfig, args: argparse.Namespace) -> int:
    if cfg.attendance is None:
        raise _cli_error("enroll: this device has no [attendance] section (not a kiosk)", 2)
    data_dir = cfg.device.data_dir
    if getattr(args, "camera", False):
        return enroll_from_camera(cfg, args)
    jobs: list[tuple[str, str | None, list[Path]]] = []
    if args.from_dir is not None:
        if args.staff_id or args.photos:
            raise _cli_error("enroll: use either --from-dir DIR or --staff-id ID PHOTO…", 2)
        if not args.from_dir.is_dir():
            raise _cli_error(f"enroll --from-dir: {args.from_dir} is not a directory", 2)
        for sub in sorted(p for p in args.from_dir.iterdir() if p.is_dir()):
            jobs.append((sub.name, None, _photos_in(sub)))
        if not jobs:
            raise _cli_error(
                f"enroll --from-dir: no sub-folders (one per staff id) in {args.from_dir}", 2
            )
    else:
        if not args.staff_id or not args.photos:
            raise _cli_error(
                "enroll: expected --staff-id ID --name NAME PHOTO… or --from-dir DIR", 2
            )
        missing = [str(p) for p in args.photos if not p.is_file()]
        if missing:
            raise _cli_error(f"enroll: photo not found: {', '.join(missing)}", 2)
        jobs.append((args.staff_id, args.name, list(args.photos)))

    roster = staff_by_id(data_dir)
    engine = _engine(cfg)
    total = sum(len(photos) for _, _, photos in jobs)
    done = 0
    failures = 0
    results: list[tuple[str, str, list[Any]]] = []
    for staff_id, name, photos in jobs:
        problem = None
        if not is_staff_id(staff_id):
            problem = f"staff id {staff_id!r} is not valid (letters, digits, _ . -; at most 64)"
        elif roster is not None and staff_id not in roster:
            problem = (
                f"staff id {staff_id} is not in the roster from the centre ({data_dir}/roster.json)"
            )
        elif not photos:
            problem = "no photos (.jpg, .jpeg, .png, .bmp, .webp)"
        if problem:
            print(f"refused {staff_id}: {problem}", file=sys.stderr)
            failures += 1
            done += len(photos)
            continue
        display = name or (roster or {}).get(staff_id, {}).get("name") or staff_id
        accepted, refused = [], []
        for photo in photos:
            a, r = encode_photos(engine, [photo])
            accepted += a
            refused += r
            done += 1
            if args.from_dir is not None:
                _progress(done, total, staff_id)
        if refused:
            failures += 1
            for photo, reason in refused:
                print(
                    f"refused {staff_id}: {photo}: {REASONS.get(reason, reason)}", file=sys.stderr
                )
            print(
                f"{staff_id}: nothing stored; replace or remove the refused photos", file=sys.stderr
            )
            continue
        results.append((staff_id, display, accepted))

    if results:
        _store(cfg, results, getattr(args, "append", False))
    if failures:
        print(f"{failures} of {len(jobs)} people refused", file=sys.stderr)
        return 1
    return 0


def _store(cfg: AgentConfig, results: list[tuple[str, str, list[Any]]], append: bool) -> None:
    """Store under the kiosk's rule, then say who was enrolled and who looks alike."""
    from agent.kiosk.gallery_audit import warn_lookalikes

    assert cfg.attendance is not None
    try:
        lookalikes = store_encodings(
            cfg.device.data_dir, results, append, _model(cfg), rule=cfg.attendance.rule()
        )
    except EnrolmentError as exc:
        raise _cli_error(f"enroll: {exc}") from exc
    for staff_id, display, encodings in results:
        named = f" ({display})" if display != staff_id else ""
        print(f"enrolled {staff_id}{named}: {len(encodings)} encodings")
    warn_lookalikes(lookalikes)


def enroll_from_camera(cfg: AgentConfig, args: argparse.Namespace) -> int:
    """``enroll --staff-id ID --camera``: a few good frames from the kiosk's own camera,
    encodings only (agent/kiosk/screen_enroll.py)."""
    from agent.kiosk.screen_enroll import capture_encodings, start_page

    if not args.staff_id or args.photos or args.from_dir is not None:
        raise _cli_error(
            "enroll --camera: expected --staff-id ID (and no photos, no --from-dir)", 2
        )
    staff_id = args.staff_id
    if not is_staff_id(staff_id):
        raise _cli_error(f"enroll: staff id {staff_id!r} is not valid", 2)
    data_dir = cfg.device.data_dir
    roster = staff_by_id(data_dir)
    if roster is not None and staff_id not in roster:
        raise _cli_error(
            f"enroll: staff id {staff_id} is not in the roster from the centre "
            f"({data_dir}/roster.json)"
        )
    display = args.name or (roster or {}).get(staff_id, {}).get("name") or staff_id
    hub, server = start_page(cfg)
    try:
        encodings, problem = capture_encodings(cfg, staff_id, display, engine=_engine(cfg), hub=hub)
    finally:
        if server is not None:
            server.stop()
    if problem:
        print(f"refused {staff_id}: {problem}; nothing stored", file=sys.stderr)
        return 1
    _store(cfg, [(staff_id, display, encodings)], getattr(args, "append", False))
    return 0


def _known_name(person: Person, roster: dict[str, dict[str, Any]] | None) -> str | None:
    """The person's name, or None when nobody gave one: enrolment stores the staff id as the
    gallery's display name then (the kiosk screen shows it), which is not a name to list."""
    if person.name and person.name != person.staff_id:
        return person.name
    return (roster or {}).get(person.staff_id, {}).get("name") or None


def main_gallery(cfg: AgentConfig, args: argparse.Namespace) -> int:
    from agent.kiosk.gallery import Gallery, GalleryError, locked

    data_dir = cfg.device.data_dir
    try:
        if args.gallery_command == "list":
            pruned = prune_to_roster(data_dir)
            gallery = Gallery.load(_gallery_file(data_dir))
            roster = staff_by_id(data_dir)
            people = gallery.people()
            if getattr(args, "json", False):
                print(
                    json.dumps(
                        [
                            {
                                "staff_id": p.staff_id,
                                "name": _known_name(p, roster),
                                "encodings": p.encodings,
                                "role": (roster or {}).get(p.staff_id, {}).get("role"),
                            }
                            for p in people
                        ],
                        ensure_ascii=False,
                    )
                )
                return 0
            for sid in pruned:
                print(f"removed {sid}: no longer in the roster")
            for p in people:
                role = (roster or {}).get(p.staff_id, {}).get("role", "-")
                name = _known_name(p, roster) or "-"
                print(f"{p.staff_id}\t{name}\t{p.encodings} encodings\t{role}")
            print(f"{len(people)} people, {gallery.rows} encodings")
            return 0
        if args.gallery_command == "audit":
            from agent.kiosk.gallery_audit import AuditError, main_audit

            try:
                return main_audit(cfg, getattr(args, "json", False))
            except AuditError as exc:
                raise _cli_error(f"gallery audit: {exc}", 2) from exc
        if args.gallery_command == "reset":
            with locked(data_dir) as path:
                gallery = Gallery.load(path)
                if not gallery.rows:
                    print("the gallery is empty: nothing to set aside")
                    return 0
                # A second reset must not overwrite the first one's backup.
                stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
                backup = path.with_name(f"{path.name}.{gallery.model}.{stamp}.bak")
                n = 1
                while backup.exists():
                    n += 1
                    backup = path.with_name(f"{path.name}.{gallery.model}.{stamp}-{n}.bak")
                path.replace(backup)
            print(
                f"moved the gallery ({len(gallery)} people, model {gallery.model}) to {backup}; "
                "enrol everyone again (`hall-agent enroll --from-dir DIR` or "
                "`hall-agent enroll --camera --staff-id ID`)"
            )
            return 0
        if args.gallery_command == "remove":
            with locked(data_dir) as path:
                gallery = Gallery.load(path)
                if args.staff_id not in gallery:
                    raise _cli_error(f"gallery remove: {args.staff_id} is not enrolled")
                gallery.remove([args.staff_id])
                gallery.save(path)
            print(f"removed {args.staff_id}")
            return 0
    except (GalleryError, OSError) as exc:
        raise _cli_error(f"gallery: {exc}") from exc
    raise _cli_error(f"gallery: unknown action {args.gallery_command}", 2)


def _gallery_file(data_dir: Path) -> Path:
    from agent.kiosk.gallery import gallery_path

    return gallery_path(data_dir)
