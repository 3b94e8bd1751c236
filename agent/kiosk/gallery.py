"""The kiosk's face gallery: several 128-d encodings per person, one float32 matrix.

Matching (docs/architecture.md#faces): a face is accepted as person P only if
- its nearest enrolled encoding belongs to P at distance ≤ ``tolerance`` (default 0.5, stricter
  than face_recognition's 0.6, which admits false accepts, worse on East Asian faces), and
- the nearest encoding of any *other* person is at least ``margin`` further away,
and, in the pipeline, only after several frames of the same track agree (:class:`Vote`).

Model (docs/attendance.md "Recognizers"): the gallery records which recognizer's model made its
encodings (``model``, e.g. ``sface-2021dec``); distances between encodings of two models mean
nothing, so encodings of another model are refused (:class:`GalleryModelError`) and a kiosk
whose recognizer differs from its gallery's recognises nobody until its people are re-enrolled.
A file written before galleries recorded it was made by dlib.

Storage (docs/topics.md privacy, PIPL art. 28-29): ``<data_dir>/gallery/gallery.npz`` holds the
encodings, the staff ids and display names, nothing else: never a photo or a crop. It is
written durably (agent/durable.py: temporary file, fsync, rename, directory fsync) under an
advisory lock, so ``hall-agent enroll`` can run beside the agent, which reloads the file when
it changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import math
import os
import zipfile
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.durable import data_dir_owner, write_durably
from drivers.face_models import LEGACY_MODEL_ID

logger = logging.getLogger(__name__)

DIM = 128


@dataclass(frozen=True)
class Match:
    staff_id: str | None  # None: unknown (too far, or too close to a second person)
    distance: float | None  # nearest distance (any person); None for an empty gallery
    second: float | None  # nearest distance to a different person than the nearest
    nearest_id: str | None  # whose encoding was nearest, accepted or not


@dataclass(frozen=True)
class Person:
    staff_id: str
    name: str
    encodings: int


class Gallery:
    """Encodings sorted by person so that each person's rows are one contiguous slice."""

    def __init__(self, model: str | None = None) -> None:
        self.model = model  # the recognizer model of the encodings; None while empty
        self.names: dict[str, str] = {}
        self._ids: list[str] = []  # person index -> staff id
        self._starts = np.zeros(1, dtype=np.int64)  # rows of person i: starts[i]:starts[i+1]
        self._enc = np.zeros((0, DIM), dtype=np.float32)
        self._sq = np.zeros(0, dtype=np.float32)  # squared norms, precomputed
        self._owner = np.zeros(0, dtype=np.int32)

    # --- building ---------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        encodings: np.ndarray,
        owners: Iterable[str],
        names: dict[str, str] | None = None,
        model: str | None = None,
    ) -> Gallery:
        g = cls(model)
        g._set(np.asarray(encodings, dtype=np.float32).reshape(-1, DIM), list(owners), names or {})
        return g

    def _set(self, enc: np.ndarray, owners: list[str], names: dict[str, str]) -> None:
        if len(owners) != len(enc):
            raise ValueError(f"{len(enc)} encodings but {len(owners)} owners")
        order = np.argsort(np.asarray(owners, dtype=object), kind="stable") if owners else []
        enc = np.ascontiguousarray(enc[order]) if len(owners) else enc
        owners = [owners[i] for i in order]
        ids: list[str] = []
        starts: list[int] = []
        for row, sid in enumerate(owners):
            if not ids or ids[-1] != sid:
                ids.append(sid)
                starts.append(row)
        starts.append(len(owners))
        self._ids = ids
        self._starts = np.asarray(starts, dtype=np.int64)
        self._enc = enc.astype(np.float32, copy=False)
        self._sq = np.einsum("ij,ij->i", self._enc, self._enc)
        self._owner = np.repeat(np.arange(len(ids), dtype=np.int32), np.diff(self._starts))
        self.names = {sid: names.get(sid, sid) for sid in ids}

    def add(
        self, staff_id: str, name: str, encodings: np.ndarray, model: str | None = None
    ) -> None:
        """Add a person's encodings, made by ``model`` (None: the gallery's own)."""
        if model is not None:
            self.require_model(model)
            self.model = model
        new = np.asarray(encodings, dtype=np.float32).reshape(-1, DIM)
        owners = [self._ids[i] for i in self._owner] + [staff_id] * len(new)
        names = {**self.names, staff_id: name}
        self._set(np.vstack([self._enc, new]), owners, names)

    def remove(self, staff_ids: Iterable[str]) -> list[str]:
        gone = set(staff_ids) & set(self._ids)
        if not gone:
            return []
        keep = np.array([self._ids[i] not in gone for i in self._owner], dtype=bool)
        owners = [self._ids[i] for i in self._owner[keep]]
        self._set(self._enc[keep], owners, {k: v for k, v in self.names.items() if k not in gone})
        return sorted(gone)

    def require_model(self, model: str) -> None:
        """Raise :class:`GalleryModelError` when the encodings are another model's."""
        if self.rows and self.model is not None and self.model != model:
            raise GalleryModelError(self.model, model, len(self))

    def people(self) -> list[Person]:
        counts = np.diff(self._starts)
        return [
            Person(sid, self.names.get(sid, sid), int(n))
            for sid, n in zip(self._ids, counts, strict=True)
        ]

    def arrays(self) -> tuple[np.ndarray, list[str]]:
        """(encodings, the staff id of each row): copies, for analysis
        (agent/kiosk/gallery_audit.py)."""
        return self._enc.copy(), [self._ids[i] for i in self._owner]

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, staff_id: object) -> bool:
        return staff_id in self.names

    @property
    def rows(self) -> int:
        return len(self._enc)

    # --- matching ---------------------------------------------------------------------

    def distances(self, encoding: np.ndarray) -> np.ndarray:
        """Euclidean distances to every row: ‖a‖² - 2a·q + ‖q‖² is one matrix-vector product."""
        d2 = self._squared(encoding)
        return np.sqrt(np.maximum(d2, 0.0, out=d2), out=d2)

    def _squared(self, encoding: np.ndarray) -> np.ndarray:
        q = np.asarray(encoding, dtype=np.float32).reshape(DIM)
        d2 = self._enc @ q  # one BLAS matrix-vector product; the rest is in place
        d2 *= -2.0
        d2 += self._sq
        d2 += float(q @ q)
        return d2

    def match(self, encoding: np.ndarray, tolerance: float, margin: float) -> Match:
        """Nearest person under the rule; ``tolerance`` and ``margin`` are on the scale of
        the gallery's model (drivers/face_models.py), so they have no defaults here."""
        if not len(self._enc):
            return Match(None, None, None, None)
        d2 = self._squared(encoding)  # squared distances: the square root only for two values
        best = int(np.argmin(d2))
        person = int(self._owner[best])
        nearest = math.sqrt(max(float(d2[best]), 0.0))
        a, b = self._starts[person], self._starts[person + 1]
        second = None
        if len(self._ids) > 1:
            # The nearest other person: the minimum outside this person's contiguous slice.
            left = float(d2[:a].min()) if a > 0 else math.inf
            right = float(d2[b:].min()) if b < len(d2) else math.inf
            second = math.sqrt(max(min(left, right), 0.0))
        sid = self._ids[person]
        ok = nearest <= tolerance and (second is None or second - nearest >= margin)
        return Match(sid if ok else None, nearest, second, sid)

    # --- storage ----------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the gallery durably (agent/durable.py): a reader sees the old file or the
        new, owner-only (biometric data), owned by the data directory's owner."""
        path.parent.mkdir(parents=True, exist_ok=True)
        owners = np.asarray([self._ids[i] for i in self._owner], dtype=str)
        ids = np.asarray(list(self.names), dtype=str)
        names = np.asarray([self.names[i] for i in self.names], dtype=str)
        buf = io.BytesIO()
        np.savez(
            buf,
            encodings=self._enc,
            owners=owners,
            ids=ids,
            names=names,
            model=np.str_(self.model or ""),
            version=np.int32(2),
        )
        write_durably(path, buf.getvalue(), mode=0o600, owner=data_dir_owner(path.parent.parent))

    @classmethod
    def load(cls, path: Path) -> Gallery:
        try:
            path.stat()
        except FileNotFoundError:
            return cls()  # nobody enrolled yet
        except OSError as exc:  # not ours (sudo enroll), a symlink loop, …: not "empty"
            raise GalleryError(f"{path}: not a readable gallery file ({exc})") from exc
        try:
            with np.load(path, allow_pickle=False) as z:
                enc = z["encodings"]
                owners = [str(x) for x in z["owners"]]
                names = {str(k): str(v) for k, v in zip(z["ids"], z["names"], strict=True)}
                model = str(z["model"]) if "model" in z.files else None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            # An empty file is EOFError, a truncated one BadZipFile:
            # every damaged file is one GalleryError, which the callers handle.
            raise GalleryError(f"{path}: not a readable gallery file ({exc})") from exc
        if enc.ndim != 2 or enc.shape[1] != DIM:
            raise GalleryError(f"{path}: encodings have shape {enc.shape}, expected (N, {DIM})")
        if not model:
            model = LEGACY_MODEL_ID if len(enc) else None
        return cls.from_arrays(enc, owners, names, model)


class GalleryError(Exception):
    """The gallery file is damaged or foreign."""


class GalleryModelError(GalleryError):
    """Encodings of one recognizer model offered to a gallery of another."""

    def __init__(self, gallery_model: str, model: str, people: int):
        self.gallery_model, self.model = gallery_model, model
        super().__init__(
            f"the gallery's {people} people were enrolled with the {gallery_model} model, the "
            f"kiosk now uses {model}: encodings of two models cannot be compared. "
            + reenrol_hint(gallery_model)
        )


def reenrol_hint(gallery_model: str) -> str:
    """How to get out of a model mismatch (docs/attendance.md "Changing the recognizer")."""
    return (
        "Re-enrol everyone with the new model: `hall-agent gallery reset` (keeps the old file "
        "as gallery.npz.<model>.bak), then `hall-agent enroll --from-dir PHOTOS` or "
        "`hall-agent enroll --camera --staff-id ID` for each person; or keep the old model "
        f'with [attendance] recognizer = "{_recognizer_name(gallery_model)}".'
    )


def _recognizer_name(model_id: str) -> str:
    from drivers.face_models import spec_for_model

    spec = spec_for_model(model_id)
    return spec.name if spec is not None else model_id


def _give_to_data_dir_owner(path: Path, data_dir: Path) -> None:
    """Hand ``path`` (the lock, the gallery directory) to the data directory's owner."""
    owner = data_dir_owner(data_dir)
    if owner is None:
        return
    st = os.stat(path)
    if (st.st_uid, st.st_gid) != owner:
        os.chown(path, *owner)


def gallery_path(data_dir: Path) -> Path:
    return Path(data_dir) / "gallery" / "gallery.npz"


@contextlib.contextmanager
def locked(data_dir: Path) -> Iterator[Path]:
    """Hold the gallery's advisory lock (read-modify-write by enroll, remove, roster prune)."""
    path = gallery_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    _give_to_data_dir_owner(path.parent, Path(data_dir))
    with open(path.parent / ".lock", "a") as lock:
        _give_to_data_dir_owner(path.parent / ".lock", Path(data_dir))
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class Vote:
    """Agreement of several encodings of one track before a decision.

    The last ``window`` = 2·needed-1 votes are kept; a person is decided when at least
    ``needed`` of them name that person, "unknown" when at least ``needed`` are unknown.
    """

    def __init__(self, needed: int = 3):
        self.needed = max(1, needed)
        self.votes: deque[tuple[str | None, float | None]] = deque(maxlen=2 * self.needed - 1)

    def add(self, match: Match) -> None:
        self.votes.append((match.staff_id, match.distance))

    def decision(self) -> tuple[str | None, bool]:
        """(staff_id or None, decided)."""
        counts = Counter(sid for sid, _ in self.votes)
        if not counts:
            return None, False
        sid, n = counts.most_common(1)[0]
        if n >= self.needed:
            return sid, True
        return None, False

    def distance(self, staff_id: str | None) -> float | None:
        ds = [d for sid, d in self.votes if sid == staff_id and d is not None]
        return float(np.median(ds)) if ds else None
