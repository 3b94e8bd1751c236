"""``hall-agent gallery audit``: judge a kiosk's gallery against the decision rule in force.

A face is accepted as person P when its nearest enrolled encoding is P's within ``tolerance``
and the nearest encoding of anybody else is at least ``margin`` further (agent/kiosk/gallery.py).
The audit asks what that rule makes of the gallery itself (docs/attendance.md "Calibration at
the hall: gallery audit"):

- **look-alike pairs**: two people whose closest encodings (one of each) are nearer than
  ``tolerance + margin``: a photo of one could be taken for the other, or the margin test
  fails and the kiosk refuses both;
- **weak enrolments**: fewer than :data:`MIN_ENCODINGS` encodings; a person's own encodings
  spread wider than ``tolerance`` (a poor photo, or somebody else's); an encoding that, left
  out, is not accepted as its owner by the rest of the gallery;
- **the operating point**: leave-one-out over every encoding (genuine accepts) and every
  person left out in turn (their photos taken for somebody else: a stranger estimate).

These numbers are estimates from the enrolment photos themselves, not a measurement at the
kiosk's camera: a handful of photos per person is a small sample, and enrolment photos are
better than a camera's frames. numpy only: no vision library is loaded.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.kiosk.gallery import Gallery
    from drivers.face_models import DecisionRule

MIN_ENCODINGS = 3  # fewer photos than this: "too few photos"


@dataclass(frozen=True)
class LookAlike:
    a: str  # staff ids (a < b in an audit's report)
    b: str
    distance: float  # smallest distance between an encoding of a and one of b


@dataclass(frozen=True)
class WeakEnrolment:
    staff_id: str
    encodings: int
    problems: tuple[str, ...]  # human text, English


@dataclass(frozen=True)
class OperatingPoint:
    genuine_accepted: int  # encodings that, left out, are still accepted as their owner
    genuine_total: int
    stranger_accepted: int  # encodings of a left-out person accepted as somebody else
    stranger_total: int
    closest: LookAlike | None  # the two different people nearest each other

    @property
    def genuine_rate(self) -> float | None:
        return _share(self.genuine_accepted, self.genuine_total)

    @property
    def stranger_rate(self) -> float | None:
        return _share(self.stranger_accepted, self.stranger_total)


@dataclass(frozen=True)
class AuditReport:
    model: str | None
    tolerance: float
    margin: float
    votes: int
    names: dict[str, str]  # staff id -> display name (the staff id when none was given)
    encodings: dict[str, int]  # staff id -> number of encodings
    lookalikes: tuple[LookAlike, ...]  # closest first
    weak: tuple[WeakEnrolment, ...]
    point: OperatingPoint

    @property
    def clean(self) -> bool:
        return not self.lookalikes and not self.weak

    def who(self, staff_id: str) -> str:
        name = self.names.get(staff_id, staff_id)
        return staff_id if name == staff_id else f"{staff_id} ({name})"

    def lines(self) -> list[str]:
        rows = sum(self.encodings.values())
        out = [
            f"gallery: {len(self.encodings)} people, {rows} encodings, model {self.model or '-'}",
            f"rule:    tolerance {self.tolerance:.2f}, margin {self.margin:.2f}, "
            f"votes {self.votes}; look-alike below {self.tolerance + self.margin:.2f}",
            "",
        ]
        out.append(f"look-alike pairs: {len(self.lookalikes) or 'none'}")
        width = max((len(self.who(p.a)) for p in self.lookalikes), default=0)
        for p in self.lookalikes:
            out.append(f"  {p.distance:.3f}  {self.who(p.a):<{width}}  ~  {self.who(p.b)}")
        out.append(f"weak enrolments: {len(self.weak) or 'none'}")
        width = max((len(self.who(w.staff_id)) for w in self.weak), default=0)
        for w in self.weak:
            out.append(f"  {self.who(w.staff_id):<{width}}  {'; '.join(w.problems)}")
        pt = self.point
        out += [
            "operating point (estimates from the enrolment photos themselves):",
            f"  genuine accept   {_ratio(pt.genuine_accepted, pt.genuine_total)}"
            "  (each encoding left out, still matched to its owner)",
            f"  stranger accept  {_ratio(pt.stranger_accepted, pt.stranger_total)}"
            "  (each person left out, their encodings taken for somebody else)",
            "  closest people   "
            + (
                f"{pt.closest.distance:.3f}  {self.who(pt.closest.a)} ~ {self.who(pt.closest.b)}"
                if pt.closest is not None
                else "-"
            ),
            "",
        ]
        if self.clean:
            out.append("result: clean")
        else:
            out.append(
                f"result: {_count(len(self.lookalikes), 'look-alike pair')}, "
                f"{_count(len(self.weak), 'weak enrolment')}; see docs/attendance.md "
                '"Calibration at the hall"'
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        pt = self.point
        return {
            "model": self.model,
            "rule": {"tolerance": self.tolerance, "margin": self.margin, "votes": self.votes},
            "people": len(self.encodings),
            "encodings": sum(self.encodings.values()),
            "clean": self.clean,
            "lookalikes": [_rounded_pair(p) for p in self.lookalikes],
            "weak": [
                {"staff_id": w.staff_id, "encodings": w.encodings, "problems": list(w.problems)}
                for w in self.weak
            ],
            "operating_point": {
                "estimate_from": "enrolment photos",
                "genuine_accepted": pt.genuine_accepted,
                "genuine_total": pt.genuine_total,
                "genuine_rate": pt.genuine_rate,
                "stranger_accepted": pt.stranger_accepted,
                "stranger_total": pt.stranger_total,
                "stranger_rate": pt.stranger_rate,
                "closest": _rounded_pair(pt.closest) if pt.closest is not None else None,
            },
        }


# --- the analysis ------------------------------------------------------------------------


def audit(gallery: Gallery, rule: DecisionRule) -> AuditReport:
    """The whole report for ``gallery`` under ``rule`` (pure: the gallery is not changed)."""
    ids, owner, dist = _distances(gallery)
    closest = _closest_pairs(dist, owner, ids)
    pairs = tuple(p for p in closest if p.distance < rule.tolerance + rule.margin)
    genuine = _leave_one_out(dist, owner, rule)  # per row: accepted as its owner
    strangers = _strangers(dist, owner, rule)  # per row: accepted as somebody else
    weak = tuple(
        w
        for i, sid in enumerate(ids)
        if (w := _weakness(sid, dist[np.ix_(owner == i, owner == i)], genuine[owner == i], rule))
    )
    point = OperatingPoint(
        genuine_accepted=int(genuine.sum()),
        genuine_total=len(genuine),
        stranger_accepted=int(strangers.sum()) if len(ids) > 1 else 0,
        stranger_total=len(strangers) if len(ids) > 1 else 0,
        closest=closest[0] if closest else None,
    )
    return AuditReport(
        model=gallery.model,
        tolerance=rule.tolerance,
        margin=rule.margin,
        votes=rule.votes,
        names=dict(gallery.names),
        encodings={p.staff_id: p.encodings for p in gallery.people()},
        lookalikes=pairs,
        weak=weak,
        point=point,
    )


def lookalikes_of(
    gallery: Gallery, staff_ids: list[str], rule: DecisionRule | None
) -> list[LookAlike]:
    """Look-alike pairs that involve one of ``staff_ids`` (just enrolled), closest first;
    ``a`` is the one of ``staff_ids`` in each.

    Nothing when there is no rule, or when the rule's tolerance is off the scale of the
    model that made the gallery's encodings (a kiosk configured for another recognizer: it
    refuses such a gallery anyway, agent/kiosk/gallery.py GalleryModelError)."""
    if rule is None or not rule_fits(gallery, rule):
        return []
    wanted = set(staff_ids)
    ids, owner, dist = _distances(gallery)
    return [
        p if p.a in wanted else LookAlike(p.b, p.a, p.distance)
        for p in _closest_pairs(dist, owner, ids)
        if p.distance < rule.tolerance + rule.margin and ({p.a, p.b} & wanted)
    ]


def warn_lookalikes(pairs: list[LookAlike]) -> None:
    """After enrolment: name each look-alike pair on stderr, and what a technician can do."""
    for p in pairs:
        print(
            f"warning: {p.a}, just enrolled, and {p.b} look alike to the recognizer: "
            f"their closest photos are at distance {p.distance:.3f}, below tolerance + "
            "margin. The kiosk may refuse both, or take one for the other, when they stand "
            "near the threshold. Enrol more and better photos of both (other days, light, "
            "glasses on and off), or accept that the kiosk may refuse them; "
            "`hall-agent gallery audit` judges the whole gallery (docs/attendance.md)",
            file=sys.stderr,
        )


def rule_fits(gallery: Gallery, rule: DecisionRule) -> bool:
    """Is ``rule``'s tolerance on the distance scale of the gallery's model?"""
    from drivers.face_models import spec_for_model

    spec = spec_for_model(gallery.model) if gallery.model else None
    if spec is None:
        return True  # empty gallery, or a model this version does not know: no opinion
    low, high = spec.distance_range
    return low <= rule.tolerance <= high


def _distances(gallery: Gallery) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(staff ids, the person index of each row, distances between every two rows)."""
    enc, owners = gallery.arrays()
    ids = [p.staff_id for p in gallery.people()]
    index = {sid: i for i, sid in enumerate(ids)}
    owner = np.asarray([index[o] for o in owners], dtype=np.int64)
    return ids, owner, _pairwise(enc)


def _pairwise(enc: np.ndarray) -> np.ndarray:
    """Euclidean distances between every two rows (float64; the diagonal is 0)."""
    x = enc.astype(np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(np.maximum(d2, 0.0))


def _closest_pairs(dist: np.ndarray, owner: np.ndarray, ids: list[str]) -> list[LookAlike]:
    """Every pair of people with the smallest distance between their encodings, closest
    first (ties by staff id, so the order is stable)."""
    if len(ids) < 2:
        return []
    # A gallery's rows are grouped by person (agent/kiosk/gallery.py): the block minima of the
    # distance matrix, one reduction along each axis, are the person-to-person minima.
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    block = np.minimum.reduceat(np.minimum.reduceat(dist, starts, axis=0), starts, axis=1)
    pairs = []
    for i, j in zip(*np.triu_indices(len(ids), k=1), strict=True):
        a, b = sorted((ids[i], ids[j]))
        pairs.append(LookAlike(a, b, float(block[i, j])))
    pairs.sort(key=lambda p: (p.distance, p.a, p.b))
    return pairs


def _accepted_as(
    d: np.ndarray, owner: np.ndarray, keep: np.ndarray, rule: DecisionRule
) -> int | None:
    """The person index a query with distances ``d`` to every row is accepted as, among the
    rows in ``keep`` only; None when it is refused. The rule of Gallery.match: the nearest
    row's person, within tolerance, and every other person at least margin further."""
    if not keep.any():
        return None
    masked = np.where(keep, d, np.inf)
    best = int(np.argmin(masked))
    person = int(owner[best])
    nearest = float(masked[best])
    others = keep & (owner != person)
    if nearest > rule.tolerance:
        return None
    if others.any() and float(d[others].min()) - nearest < rule.margin:
        return None
    return person


def _leave_one_out(dist: np.ndarray, owner: np.ndarray, rule: DecisionRule) -> np.ndarray:
    """Per row: is it accepted as its owner by the gallery without that row?"""
    out = np.zeros(len(owner), dtype=bool)
    for r in range(len(owner)):
        keep = np.ones(len(owner), dtype=bool)
        keep[r] = False
        out[r] = _accepted_as(dist[r], owner, keep, rule) == int(owner[r])
    return out


def _strangers(dist: np.ndarray, owner: np.ndarray, rule: DecisionRule) -> np.ndarray:
    """Per row: with its owner left out entirely, is it accepted as somebody else?"""
    out = np.zeros(len(owner), dtype=bool)
    for r in range(len(owner)):
        out[r] = _accepted_as(dist[r], owner, owner != owner[r], rule) is not None
    return out


def _weakness(
    staff_id: str, own: np.ndarray, self_match: np.ndarray, rule: DecisionRule
) -> WeakEnrolment | None:
    """A person's enrolment problems: ``own`` is the distance matrix of their encodings,
    ``self_match`` whether each of them, left out, is still accepted as them."""
    n = len(own)
    problems = []
    if n < MIN_ENCODINGS:
        problems.append(f"too few photos ({n}, at least {MIN_ENCODINGS})")
    spread = float(own.max()) if n > 1 else 0.0
    if spread > rule.tolerance:
        problems.append(
            f"own photos spread {spread:.3f} > tolerance {rule.tolerance:.2f} "
            "(a poor photo, or someone else's)"
        )
    failed = int((~self_match).sum())
    if failed:
        problems.append(f"{failed} of {n} encodings, left out, not recognised as them")
    return WeakEnrolment(staff_id, n, tuple(problems)) if problems else None


def _share(part: int, total: int) -> float | None:
    return round(part / total, 4) if total else None


def _ratio(part: int, total: int) -> str:
    if not total:
        return f"{'-':>4}{'':<16}"
    return f"{part:>4} of {total:<4} {100 * part / total:5.1f} %"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _rounded_pair(p: LookAlike) -> dict[str, Any]:
    return {**asdict(p), "distance": round(p.distance, 4)}


# --- hall-agent gallery audit ------------------------------------------------------------


class AuditError(Exception):
    """The gallery cannot be judged (the command exits 2): the message says why."""


def main_audit(cfg: AgentConfig, as_json: bool = False) -> int:
    """Print the report for the kiosk's gallery under its rule in force; 0 clean, 1 look-alike
    pairs or weak enrolments. Raises :class:`AuditError` when it cannot be judged."""
    from agent.kiosk.gallery import Gallery, GalleryError, gallery_path, reenrol_hint
    from drivers.face_models import RECOGNIZERS

    att = cfg.attendance
    if att is None:
        raise AuditError("this device has no [attendance] section (not a kiosk)")
    path = gallery_path(cfg.device.data_dir)
    try:
        gallery = Gallery.load(path)
    except GalleryError as exc:
        raise AuditError(str(exc)) from exc
    model = RECOGNIZERS[att.recognizer].model_id
    if gallery.rows and gallery.model != model:
        # Distances of two models are on different scales: the rule means nothing here.
        raise AuditError(
            f"{path} was enrolled with the {gallery.model} model, the kiosk is configured for "
            f"{att.recognizer} ({model}): its decision rule does not apply to these "
            "encodings. " + reenrol_hint(gallery.model or "")
        )
    report = audit(gallery, att.rule())
    if as_json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    elif not gallery.rows:
        print(f"{path}: nobody enrolled; nothing to audit")
    else:
        print("\n".join(report.lines()))
    return 0 if report.clean else 1
