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


# MARS10's 0-2 range, worked by hand: two raters, five targets (the five items of one anastomosis).
MARS_FIRST = [2, 1, 0, 2, 1]
MARS_SECOND = [2, 1, 1, 2, 0]


def test_quadratic_kappa_and_ordinal_alpha_on_a_0_to_2_scale_match_the_hand_computation() -> None:
    # Kappa, weights (i-j)^2: two of the five pairs are one point apart, observed 2 / 5 = 0.4; both
    # raters' marginals are (0.2, 0.4, 0.4), expected 2 * (0.08 * 1 + 0.08 * 4 + 0.16 * 1) = 1.12;
    # 1 - 0.4 / 1.12 = 9/14.
    assert reliability.kappa_quadratic(MARS_FIRST, MARS_SECOND, labels=[0, 1, 2]) == pytest.approx(9 / 14)
    # Alpha, ordinal: value counts n0 = 2, n1 = 4, n2 = 4 (n = 10); distances d(0,1) = 9, d(0,2) = 49,
    # d(1,2) = 16; observed 2 * 2 * 9 = 36, expected 2 * (8 * 9 + 8 * 49 + 16 * 16) = 1440;
    # 1 - (10 - 1) * 36 / 1440 = 0.775.
    assert reliability.alpha_ordinal([MARS_FIRST, MARS_SECOND], value_domain=[0, 1, 2]) == pytest.approx(0.775)
    # A 1-5 label range would drop every pair with a 0 (kappa 1.0) or refuse the data (alpha).
    assert reliability.kappa_quadratic(MARS_FIRST, MARS_SECOND, labels=[1, 2, 3, 4, 5]) == 1.0
    assert reliability.alpha_ordinal([MARS_FIRST, MARS_SECOND], value_domain=[1, 2, 3, 4, 5]) is None


@pytest.mark.django_db
def test_the_table_for_mars10_uses_its_0_to_2_range(
    performance: Any, recording: Any, trainee: Any, frank: Any, grace: Any, henry: Any
) -> None:
    import pandas as pd
    import pingouin

    mars = Instrument.objects.get(slug="mars10")
    keys = [i.key for i in mars.items.all()]
    for rater, values in ((frank, MARS_FIRST), (grace, MARS_SECOND)):
        assessment = services.assessment_assign(recording=recording, resident=trainee, rater=rater, instrument=mars, by=henry)
        services.assessment_score(assessment=assessment, user=rater, scores=dict(zip(keys, values, strict=True)))
        services.assessment_submit(assessment=assessment, user=rater)

    [table] = reliability.reliability_for(user=henry)
    overall = table.overall
    assert table.instrument == mars and overall.targets == 5 and overall.raters == 2
    [(_, _, kappa)] = overall.kappas
    assert kappa == pytest.approx(9 / 14)
    assert overall.alpha == pytest.approx(0.775)
    frame = pd.DataFrame(
        [(t, r, float(v)) for t, pair in enumerate(zip(MARS_FIRST, MARS_SECOND, strict=True)) for r, v in enumerate(pair)],
        columns=["target", "rater", "score"],
    )
    direct = pingouin.intraclass_corr(data=frame, targets="target", raters="rater", ratings="score").set_index("Type")
    assert overall.single is not None and overall.single.value == pytest.approx(float(direct.loc["ICC(A,1)", "ICC"]))
