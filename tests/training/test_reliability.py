"""Reliability statistics against published values, and the table built from real assessments."""

from __future__ import annotations

from typing import Any

import pytest

from training import reliability, services
from training.models import Instrument

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]

# Krippendorff, "Computing Krippendorff's alpha-reliability" (2011): 4 observers, 12 units, missing values.
KRIPPENDORFF = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def test_icc_matches_shrout_and_fleiss() -> None:
    icc = reliability.icc_all(SHROUT_FLEISS)
    assert round(icc["ICC(1,1)"].value, 2) == 0.17
    assert round(icc["ICC(A,1)"].value, 2) == 0.29
    assert round(icc["ICC(C,1)"].value, 2) == 0.71
    assert round(icc["ICC(C,k)"].value, 2) == 0.91
    single = icc["ICC(A,1)"]
    assert single.low < single.value < single.high


def test_krippendorff_alpha_ordinal_matches_the_published_example() -> None:
    assert round(reliability.alpha_ordinal(KRIPPENDORFF) or 0, 3) == 0.815


def test_quadratic_kappa_rewards_near_misses_more_than_far_ones() -> None:
    labels = [1, 2, 3, 4, 5]
    near = reliability.kappa_quadratic([1, 2, 3, 4, 5], [2, 2, 3, 4, 4], labels=labels)
    far = reliability.kappa_quadratic([1, 2, 3, 4, 5], [5, 2, 3, 4, 1], labels=labels)
    assert near is not None and far is not None and near > 0.8 > far
    assert reliability.kappa_quadratic([3, 4], [3, 4], labels=labels) == 1.0


@pytest.mark.parametrize(("value", "word"), [(0.3, "poor"), (0.5, "moderate"), (0.8, "good"), (0.95, "excellent"), (None, "not enough data")])
def test_icc_is_read_as_koo_and_li_advise(value: float | None, word: str) -> None:
    assert reliability.icc_reading(value) == word


def test_too_little_data_gives_no_icc() -> None:
    assert reliability.icc_all([[3, 4]]) == {}
    # Every target scored alike by each rater: no variance between targets, no ICC to read.
    assert reliability.icc_all([[4, 3], [4, 3], [4, 3]]) == {}


@pytest.mark.django_db
def test_the_table_covers_recordings_with_two_raters_and_ignores_drafts(
    performance: Any, recording: Any, trainee: Any, frank: Any, grace: Any, henry: Any, osats: Instrument, ivan: Any
) -> None:
    first = services.assessment_assign(recording=recording, resident=trainee, rater=frank, instrument=osats, by=henry)
    second = services.assessment_assign(recording=recording, resident=trainee, rater=grace, instrument=osats, by=henry)
    a = [4, 3, 4, 2, 5, 3, 4]
    b = [4, 3, 5, 2, 4, 3, 4]
    keys = [i.key for i in osats.items.all()]
    services.assessment_score(assessment=first, user=frank, scores=dict(zip(keys, a, strict=True)))
    services.assessment_submit(assessment=first, user=frank)
    services.assessment_score(assessment=second, user=grace, scores=dict(zip(keys, b, strict=True)))
    assert reliability.reliability_for(user=henry) == []  # grace's is still a draft
    services.assessment_submit(assessment=second, user=grace)

    [table] = reliability.reliability_for(user=henry)
    assert table.instrument == osats and table.performances == 1
    overall = table.overall
    assert overall.targets == 7 and overall.raters == 2
    expected = reliability.icc_all([list(p) for p in zip(a, b, strict=True)])
    assert overall.single is not None and overall.single.value == pytest.approx(expected["ICC(A,1)"].value)
    assert overall.average is not None and overall.reading in ("poor", "moderate", "good", "excellent")
    assert [(x, y) for x, y, _ in overall.kappas] == [("Frank Faculty", "Grace Faculty")]
    assert overall.alpha is not None
    # One recording: an item has one target, too few for an ICC or an alpha.
    assert all(item.single is None and item.alpha is None for item in table.items)
    assert reliability.reliability_for(user=ivan) == []
