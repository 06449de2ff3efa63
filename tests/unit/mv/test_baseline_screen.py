"""The batched screen of the daily change-point search changes nothing: same candidate, same coefficients, bit for bit."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from mv.baseline import BaselineConfig, DailyChangePointBaseline, DailyObservations, DayType, _search_plan


class _EveryCandidate(DailyChangePointBaseline):
    """The search without the screen: every candidate fitted by ``_ols``, in order."""

    def _screen(self, y: np.ndarray, matrix: np.ndarray, cands: list[tuple[list[int], int]]) -> list[int]:
        return list(range(len(cands)))


def _series(seed: int, days: int, start_day: int) -> DailyObservations:
    rng = np.random.default_rng(seed)
    first = date(2025, 1, 1) + timedelta(days=start_day)
    ds = [first + timedelta(days=i) for i in range(days)]
    doy = np.arange(start_day, start_day + days)
    mean = 11 - 9 * np.cos(2 * np.pi * (doy - 20) / 365)
    temp = mean[:, None] + 4 * np.sin(2 * np.pi * np.arange(24) / 24)[None, :] + rng.normal(0, 1.5, (days, 24))
    types = [DayType.UNOCCUPIED if d.weekday() >= 5 else DayType.OCCUPIED for d in ds]
    occupied = np.array([t == DayType.OCCUPIED for t in types])
    hdd = np.maximum(0.0, rng.uniform(14, 19) - temp).mean(axis=1)
    cdd = np.maximum(0.0, temp - rng.uniform(20, 26)).mean(axis=1)
    energy = np.where(occupied, 60.0, 25.0) + rng.uniform(0, 8) * hdd + rng.uniform(0, 3) * cdd
    energy = energy + rng.normal(0, rng.uniform(0.5, 12), days)
    energy[rng.random(days) < 0.03] = np.nan
    temp[rng.random(temp.shape) < 0.01] = np.nan
    if seed % 3 == 0:
        energy = np.round(energy)  # integer meters give exact ties between balance points
    return DailyObservations.build(ds, energy, temp, types)


@pytest.mark.parametrize("seed", range(12))
def test_screened_search_is_the_exhaustive_one(seed: int) -> None:
    # Short winter windows (where several balance points fit alike), spring and a full year.
    days, start = [(21, 0), (28, 330), (60, 90), (365, 0)][seed % 4]
    obs = _series(seed, days, start)
    config = BaselineConfig(min_span=timedelta(days=14), min_coverage=0.5, min_days_per_type=3)
    fast = DailyChangePointBaseline(config).fit(obs)
    slow = _EveryCandidate(config).fit(obs)
    assert fast.params == slow.params
    assert fast.stats == slow.stats
    assert np.array_equal(fast.predict(obs), slow.predict(obs), equal_nan=True)


@pytest.mark.parametrize(("n_types", "heating", "cooling"), [(1, (8.0, 9.0, 10.0), ()), (2, (12.0, 13.0), (22.0, 24.0)),
                                                             (3, (), (22.0,)), (3, (15.0, 20.0), (12.0, 20.0, 26.0))])
def test_the_search_plan_holds_every_candidate_once_in_search_order(
    n_types: int, heating: tuple[float, ...], cooling: tuple[float, ...],
) -> None:
    """Issue 11 (speed): the candidates, built once per (day types, balance points with degree days), are still
    every split × heating balance × cooling balance at or above it, once each, in search order, each on the
    columns its terms name."""
    plan = _search_plan(n_types, heating, cooling)
    splits = ["none"] if n_types == 1 else ["none", "intercept"]
    expected = []
    for split in splits:
        expected += [(split, None, None)] + [(split, None, c) for c in cooling]
        for h in heating:
            for name in ["none"] if split == "none" else ["intercept", "intercept+heating"]:
                expected += [(name, h, None)] + [(name, h, c) for c in cooling if c >= h]
    assert [(split, hbp, cbp) for _, _, hbp, cbp, split in plan.candidates] == expected
    for cols, k, hbp, cbp, split in plan.candidates:
        sources = [plan.bank[c] for c in cols]
        base = [("one", 0.0, 0)] if split == "none" or n_types == 1 else [("type", 0.0, j) for j in range(n_types)]
        heat = ([] if hbp is None else [("hdd_type", hbp, j) for j in range(n_types)] if split == "intercept+heating"
                else [("hdd", hbp, 0)])
        assert sources == [*base, *heat, *([] if cbp is None else [("cdd", cbp, 0)])]
        assert k == len(base)
    assert len(set(plan.bank)) == len(plan.bank)  # each column once in the bank
    assert plan.screened == [(c[0], c[1]) for c in plan.candidates]
