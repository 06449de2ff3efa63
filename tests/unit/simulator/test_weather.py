from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from simulator.weather import Weather


def _hours(year: int) -> np.ndarray:
    start = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    return start + 3600.0 * np.arange(365 * 24, dtype=np.float64)


def test_seasonal_cycle_of_central_france() -> None:
    temps = Weather(seed=2).temperature_c(_hours(2026)).reshape(365, 24)
    daily = temps.mean(axis=1)
    assert 0 < daily[:31].mean() < 6  # January
    assert 17 < daily[181:212].mean() < 24  # July
    assert -15 < temps.min()
    assert temps.max() < 38


def test_diurnal_minimum_at_dawn_and_maximum_in_afternoon() -> None:
    profile = Weather(seed=2).temperature_c(_hours(2026)).reshape(365, 24).mean(axis=0)
    assert int(profile.argmin()) in {5, 6}  # UTC, solar time is UTC+5 min here
    assert int(profile.argmax()) in {14, 15}


def test_same_seed_same_weather_whatever_the_first_time_asked() -> None:
    t = _hours(2026)[1000:1100]
    assert np.array_equal(Weather(seed=5).temperature_c(t), Weather(seed=5).temperature_c(t))
    assert not np.array_equal(Weather(seed=5).temperature_c(t), Weather(seed=6).temperature_c(t))


@pytest.mark.parametrize(
    ("day", "sunrise_utc", "sunset_utc"),
    [(date(2026, 12, 21), (7, 42), (16, 8)), (date(2026, 6, 21), (3, 56), (19, 54))],
)
def test_sun_times_at_47_5_north(day: date, sunrise_utc: tuple[int, int], sunset_utc: tuple[int, int]) -> None:
    sunrise, sunset = Weather().sun_times(day)
    assert abs((sunrise.hour * 60 + sunrise.minute) - (sunrise_utc[0] * 60 + sunrise_utc[1])) <= 15
    assert abs((sunset.hour * 60 + sunset.minute) - (sunset_utc[0] * 60 + sunset_utc[1])) <= 15


def test_no_daylight_at_night() -> None:
    weather = Weather()
    midnight = np.array([datetime(2026, 6, 21, 23, tzinfo=UTC).timestamp()])
    noon = np.array([datetime(2026, 6, 21, 12, tzinfo=UTC).timestamp()])
    assert weather.illuminance_lx(midnight)[0] == 0
    assert weather.solar_elevation_deg(noon)[0] == pytest.approx(90 - 47.5 + 23.44, abs=1.5)


def test_naive_datetime_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Weather().temperature_at(datetime(2026, 1, 1))  # noqa: DTZ001
