"""Enrolment as a library: photos to encodings, encodings into the gallery, the roster prune.

Used by the ``hall-agent enroll`` command (agent/kiosk/enroll.py, an entry point), by the camera
enrolment (agent/kiosk/screen_enroll.py) and by the recognition process (agent/kiosk/recognition.py
applies the roster), so that none of them imports an entry point.

Only encodings are stored, never the photo (docs/topics.md; PIPL art. 28-29): a photo is read,
encoded in memory and dropped. Storing is all-or-nothing: nothing changes when the gallery
cannot take every person of a call. Faces are encoded by the kiosk's own engine, built from
the same ``[attendance]`` section by :func:`agent.kiosk.recognition.build_engine`, so a photo is
judged by the quality checks the kiosk applies to a face in front of it.

The roster (``<data_dir>/roster.json``, docs/topics.md roster payload written by the sync
downlink) names the staff; a person it no longer lists has their encodings deleted
(:func:`prune_to_roster`, run by ``gallery list`` and by the recognition process whenever
the roster file changes).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.roster import staff_by_id

if TYPE_CHECKING:  # numpy only where a gallery is opened
    from agent.kiosk.gallery_audit import LookAlike
    from drivers.face_models import DecisionRule

logger = logging.getLogger(__name__)

# Why a photo or a camera frame was refused (drivers/faces.py ``encode_photo``), for the
# technician.
REASONS = {
    "no_face": "no face found",
    "several_faces": "several faces in the photo (expected exactly one)",
    "too_small": "face too small (move closer or use a larger photo)",
    "blurred": "face too blurred",
    "turned": "face turned away (look straight into the camera)",
    "unreadable": "not a readable image file",
}


class EnrolmentError(Exception):
    """The gallery could not take the encodings; nothing was stored."""


def prune_to_roster(data_dir: Path) -> list[str]:
    """Delete the encodings of everyone the roster no longer lists; returns their ids."""
    from agent.kiosk.gallery import Gallery, locked

    roster = staff_by_id(data_dir)
    if roster is None:
        return []
    if not roster:
        # An empty roster is more likely a centre-side mistake than a hall without staff.
        logger.warning("roster lists nobody; keeping the gallery as it is")
        return []
    with locked(data_dir) as path:
        gallery = Gallery.load(path)
        gone = gallery.remove([p.staff_id for p in gallery.people() if p.staff_id not in roster])
        if gone:
            gallery.save(path)
    for sid in gone:
        logger.warning("staff %s left the roster: face encodings deleted", sid)
    return gone


def encode_photos(engine: Any, photos: list[Path]) -> tuple[list[Any], list[tuple[Path, str]]]:
    """(encodings of accepted photos, [(photo, refusal reason)])."""
    import cv2

    accepted = []
    refused: list[tuple[Path, str]] = []
    for photo in photos:
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        if image is None:
            refused.append((photo, "unreadable"))
            continue
        _, encoding, reason = engine.encode_photo(image)
        del image  # the photo itself is never kept
        if reason is not None:
            refused.append((photo, reason))
        else:
            accepted.append(encoding)
    return accepted, refused


def store_encodings(
    data_dir: Path,
    results: list[tuple[str, str, list[Any]]],
    append: bool,
    model: str,
    *,
    rule: DecisionRule | None = None,
) -> list[LookAlike]:
    """Add (or replace, unless ``append``) people's encodings, made by recognizer ``model``,
    under the gallery's lock. Returns, under the kiosk's decision ``rule``, the look-alike
    pairs that involve someone just stored (agent/kiosk/gallery_audit.py)."""
    import numpy as np

    from agent.kiosk.gallery import Gallery, GalleryError, GalleryModelError, locked
    from agent.kiosk.gallery_audit import lookalikes_of

    try:
        with locked(data_dir) as path:
            gallery = Gallery.load(path)
            gallery.require_model(model)  # before any change: all or nothing
            for staff_id, display, encodings in results:
                if staff_id in gallery and not append:
                    gallery.remove([staff_id])
                gallery.add(staff_id, display, np.vstack(encodings), model=model)
            gallery.save(path)
            return lookalikes_of(gallery, [sid for sid, _, _ in results], rule)
    except GalleryModelError as exc:
        raise EnrolmentError(f"{exc} Nothing stored.") from exc
    except GalleryError as exc:
        raise EnrolmentError(
            f"{exc}; nothing stored. Move the damaged file away and enrol everyone again "
            "(the agent keeps the people it loaded before)"
        ) from exc
    except OSError as exc:
        raise EnrolmentError(f"cannot write the gallery in {data_dir}: {exc}") from exc
