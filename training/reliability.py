"""Inter-rater reliability of the assessments, per instrument and per item, across the recordings
that two or more raters scored: ICC (pingouin), quadratic-weighted kappa for each pair of raters
(scikit-learn) and Krippendorff's alpha, ordinal (krippendorff). Called by the training pages.

What is a target (the thing rated): for an item, one assessed performance (a recording's
resident, or a part of it); for an instrument as a whole, one item of one performance. Raters
for the ICC's two-way model are the first, second... rater of each performance in the order they
submitted (the faculty vary across recordings, so ICC(1) is shown beside the two-way values);
kappa and alpha use the actual raters (alpha tolerates missing ratings). Never reads drafts.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .models import Assessment, Instrument
from .services import programmes_taught_by, training_allowed

# Koo & Li 2016.
ICC_READING = ((0.5, "poor"), (0.75, "moderate"), (0.9, "good"))
ICC_TYPES = ("ICC(1,1)", "ICC(A,1)", "ICC(C,1)", "ICC(1,k)", "ICC(A,k)", "ICC(C,k)")


def icc_reading(value: float | None) -> str:
    """< 0.5 poor, 0.5-0.75 moderate, 0.75-0.9 good, > 0.9 excellent."""
    if value is None:
        return "not enough data"
    for limit, word in ICC_READING:
        if value < limit:
            return word
    return "excellent"


def alpha_reading(value: float | None) -> str:
    """Krippendorff: >= 0.8 reliable, >= 0.667 tentative conclusions only, below that unreliable."""
    if value is None:
        return "not enough data"
    return "reliable" if value >= 0.8 else "tentative" if value >= 0.667 else "unreliable"


@dataclass(frozen=True)
class Icc:
    kind: str
    value: float
    low: float
    high: float


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def icc_all(matrix: Sequence[Sequence[float]]) -> dict[str, Icc]:
    """The six Shrout & Fleiss ICCs (pingouin's names) with 95 % CIs, for a complete matrix of
    targets (rows) by raters (columns). Empty when it has fewer than 2 targets or 2 raters, or no
    variance to compare."""
    if len(matrix) < 2 or min(len(row) for row in matrix) < 2:
        return {}
    if len({round(sum(row) / len(row), 9) for row in matrix}) == 1:
        return {}  # no variance between targets (each scored alike): nothing for an ICC to compare
    import pandas as pd
    import pingouin

    frame = pd.DataFrame(
        [(t, r, float(v)) for t, row in enumerate(matrix) for r, v in enumerate(row)], columns=["target", "rater", "score"]
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = pingouin.intraclass_corr(data=frame, targets="target", raters="rater", ratings="score")
    except (AssertionError, ValueError, ZeroDivisionError):
        return {}
    result = {}
    for _, row in table.iterrows():
        value = _finite(row["ICC"])
        low, high = (float(x) for x in row["CI95"])
        if value is None or not (math.isfinite(low) and math.isfinite(high)):
            continue
        result[str(row["Type"])] = Icc(str(row["Type"]), value, low, high)
    return result


def kappa_quadratic(first: list[int], second: list[int], *, labels: list[int]) -> float | None:
    """Cohen's kappa with quadratic weights between two raters' scores of the same targets."""
    if len(first) < 2 or len(first) != len(second):
        return None
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _finite(cohen_kappa_score(first, second, labels=labels, weights="quadratic"))


def alpha_ordinal(reliability_data: list[list[float | None]], *, value_domain: list[int] | None = None) -> float | None:
    """Krippendorff's alpha, ordinal, for raters (rows) by units (columns); None marks a missing rating."""
    import krippendorff
    import numpy as np

    data = np.array([[np.nan if v is None else float(v) for v in row] for row in reliability_data], dtype=float)
    if data.shape[0] < 2 or data.shape[1] < 1:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal", value_domain=value_domain)
    except (ValueError, ZeroDivisionError):
        return None
    return _finite(value)


# ---------------------------------------------------------------- the table


@dataclass
class Agreement:
    """Reliability of one instrument or one item."""

    name: str
    targets: int
    raters: int
    icc: dict[str, Icc] = field(default_factory=dict)
    kappas: list[tuple[str, str, float]] = field(default_factory=list)
    alpha: float | None = None

    @property
    def single(self) -> Icc | None:
        return self.icc.get("ICC(A,1)")

    @property
    def one_way(self) -> Icc | None:
        return self.icc.get("ICC(1,1)")

    @property
    def average(self) -> Icc | None:
        return self.icc.get("ICC(A,k)")

    @property
    def reading(self) -> str:
        return icc_reading(self.single.value if self.single else None)

    @property
    def alpha_reading(self) -> str:
        return alpha_reading(self.alpha)


@dataclass
class InstrumentReliability:
    instrument: Instrument
    performances: int
    overall: Agreement
    items: list[Agreement]

    @property
    def rows(self) -> list[Agreement]:
        return [self.overall, *self.items]


Unit = tuple[int, int, float | None, float | None]


def _agreement(name: str, units: list[tuple[Any, dict[int, int]]], names: dict[int, str], labels: list[int]) -> Agreement:
    """``units``: (target key, {rater id: score}) for targets with >= 2 raters, each dict in
    submission order."""
    k = min((len(ratings) for _, ratings in units), default=0)
    matrix = [list(ratings.values())[:k] for _, ratings in units]
    raters = sorted({r for _, ratings in units for r in ratings})
    agreement = Agreement(name=name, targets=len(units), raters=len(raters), icc=icc_all(matrix) if k >= 2 else {})
    for i, a in enumerate(raters):
        for b in raters[i + 1:]:
            pairs = [(ratings[a], ratings[b]) for _, ratings in units if a in ratings and b in ratings]
            kappa = kappa_quadratic([p[0] for p in pairs], [p[1] for p in pairs], labels=labels)
            if kappa is not None:
                agreement.kappas.append((names[a], names[b], kappa))
    if len(units) >= 2:  # one unit alone says nothing about agreement beyond chance
        agreement.alpha = alpha_ordinal([[ratings.get(r) for _, ratings in units] for r in raters], value_domain=labels)
    return agreement


def reliability_for(*, user: Any) -> list[InstrumentReliability]:
    """Per instrument the programmes ``user`` teaches in used, the agreement of its raters over
    the performances two or more of them scored and submitted (recordings still consented for
    training only)."""
    programmes = list(programmes_taught_by(user=user))
    if not programmes:
        return []
    submitted = (
        Assessment.objects.filter(programme__in=programmes, submitted_at__isnull=False)
        .select_related("instrument", "rater", "recording", "recording__session")
        .prefetch_related("scores__item", "instrument__items")
        .order_by("submitted_at")
    )
    by_instrument: dict[int, dict[Unit, list[Assessment]]] = defaultdict(lambda: defaultdict(list))
    instruments: dict[int, Instrument] = {}
    allowed: dict[int, bool] = {}
    for assessment in submitted:
        if assessment.recording_id not in allowed:
            allowed[assessment.recording_id] = training_allowed(assessment.recording)
        if not allowed[assessment.recording_id]:
            continue
        instruments[assessment.instrument_id] = assessment.instrument
        unit = (assessment.recording_id, assessment.resident_id, assessment.part_start, assessment.part_end)
        by_instrument[assessment.instrument_id][unit].append(assessment)
    result = []
    for instrument_id, units in by_instrument.items():
        instrument = instruments[instrument_id]
        rated = {u: a for u, a in units.items() if len(a) >= 2}
        if not rated:
            continue
        items = list(instrument.items.all())
        labels = list(range(min(i.min_score for i in items), max(i.max_score for i in items) + 1))
        names = {a.rater_id: a.rater.get_full_name() or a.rater.username for group in rated.values() for a in group}
        scores = {a.pk: {s.item_id: s.score for s in a.scores.all()} for group in rated.values() for a in group}
        per_item = []
        overall_units: list[tuple[Any, dict[int, int]]] = []
        for item in items:
            item_units = [
                (unit, {a.rater_id: scores[a.pk][item.pk] for a in group if item.pk in scores[a.pk]}) for unit, group in rated.items()
            ]
            item_units = [(u, r) for u, r in item_units if len(r) >= 2]
            overall_units.extend(((u, item.pk), r) for u, r in item_units)
            per_item.append(_agreement(item.name, item_units, names, labels))
        result.append(InstrumentReliability(
            instrument=instrument, performances=len(rated),
            overall=_agreement(f"{instrument.short_name} (all items)", overall_units, names, labels), items=per_item,
        ))
    return sorted(result, key=lambda r: r.instrument.short_name)
