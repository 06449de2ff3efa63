"""Deterministic synthetic weather of central France: outdoor temperature and sunlight.

The outdoor temperature is a seasonal sinusoid (daily mean about 3 °C in mid
January, about 21 °C in late July) plus a seeded AR(1) day-to-day anomaly and a
diurnal swing with its minimum near 06:00 and its maximum near 15:00 solar time.
Sunlight comes from the solar elevation at the site's latitude (47.5° N by
default) and a seeded daily clearness index.

Every function takes times as float seconds since the Unix epoch (UTC) in a
numpy array, so the building model can evaluate a year at once. The same seed
always gives the same weather, whatever the first time asked for.

>>> from datetime import UTC, date, datetime
>>> weather = Weather(seed=1)
>>> january = weather.temperature_at(datetime(2026, 1, 15, 6, tzinfo=UTC))
>>> july = weather.temperature_at(datetime(2026, 7, 25, 15, tzinfo=UTC))
>>> january < 10 < july
True
>>> sunrise, sunset = weather.sun_times(date(2026, 6, 21))
>>> 15 < (sunset - sunrise).total_seconds() / 3600 < 17
True
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from functools import cache

import numpy as np
import numpy.typing as npt

__all__ = ["Weather"]

FloatArray = npt.NDArray[np.float64]

_DAY_S = 86_400.0
_EPOCH_DAY = date(2000, 1, 1)
_EPOCH_S = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
_TABLE_DAYS = (date(2101, 1, 1) - _EPOCH_DAY).days
_YEAR_DAYS = 365.2425

# Climate normals of the Loire valley (Blois/Tours): annual mean 12 °C, a 9 K
# seasonal half-amplitude, coldest daily mean around 20 January.
_ANNUAL_MEAN_C = 12.0
_SEASONAL_AMPLITUDE_C = 9.0
_COLDEST_DAY = 19.0  # days after 1 January
_AR_PHI = 0.75
_AR_SIGMA_C = 1.6
_MAX_IRRADIANCE_W_M2 = 1000.0
_LUX_PER_W_M2 = 110.0  # luminous efficacy of daylight, ~110 lm/W


@cache
def _daily_tables(seed: int) -> tuple[FloatArray, FloatArray]:
    """Daily temperature anomaly (AR(1)) and clearness index, 2000-01-01 to 2100-12-31."""
    rng = np.random.default_rng([seed, 0x5EA7])
    shocks = rng.standard_normal(_TABLE_DAYS) * _AR_SIGMA_C
    anomaly = np.empty(_TABLE_DAYS)
    previous = 0.0
    for day, shock in enumerate(shocks.tolist()):
        previous = _AR_PHI * previous + shock
        anomaly[day] = previous
    # Clear days are warmer in summer and colder in winter; the link is left out
    # on purpose: the anomaly already carries the day-to-day variability.
    clearness = 0.15 + 0.85 * rng.beta(2.2, 1.4, _TABLE_DAYS)
    return anomaly, clearness


class Weather:
    """Synthetic weather for one site.

    Args:
        seed: seed of the day-to-day noise.
        latitude_deg: latitude of the site, north positive.
        longitude_deg: longitude, east positive (sets solar noon).
    """

    def __init__(self, seed: int = 0, latitude_deg: float = 47.5, longitude_deg: float = 1.33) -> None:
        self.seed = seed
        self.latitude_deg = latitude_deg
        self.longitude_deg = longitude_deg
        self._lat = math.radians(latitude_deg)

    def _day_index(self, epoch_s: FloatArray) -> FloatArray:
        days: FloatArray = (epoch_s - _EPOCH_S) / _DAY_S
        if days.size and (days.min() < 0.5 or days.max() >= _TABLE_DAYS - 1.5):
            msg = "the synthetic weather covers 2000-01-02 to 2100-12-30 only"
            raise ValueError(msg)
        return days

    def daily_mean_c(self, epoch_s: FloatArray) -> FloatArray:
        """Daily mean outdoor temperature, interpolated between day centres.

        Args:
            epoch_s: UTC times in seconds since the Unix epoch.

        Returns:
            Temperatures in °C, same shape as ``epoch_s``.
        """
        days = self._day_index(epoch_s)
        anomaly, _ = _daily_tables(self.seed)
        centre = days - 0.5
        index = np.floor(centre).astype(np.int64)
        frac = centre - index
        noise = anomaly[index] * (1.0 - frac) + anomaly[index + 1] * frac
        seasonal = _ANNUAL_MEAN_C - _SEASONAL_AMPLITUDE_C * np.cos(2 * np.pi * (days - _COLDEST_DAY) / _YEAR_DAYS)
        result: FloatArray = seasonal + noise
        return result

    def clearness(self, epoch_s: FloatArray) -> FloatArray:
        """Daily clearness index in [0.15, 1] (1 = cloudless), constant over a UTC day."""
        days = self._day_index(epoch_s)
        _, clear = _daily_tables(self.seed)
        result: FloatArray = clear[np.floor(days).astype(np.int64)]
        return result

    def _solar_hour(self, epoch_s: FloatArray) -> FloatArray:
        hours: FloatArray = np.mod(epoch_s / 3600.0 + self.longitude_deg / 15.0, 24.0)
        return hours

    def temperature_c(self, epoch_s: FloatArray) -> FloatArray:
        """Outdoor air temperature.

        Args:
            epoch_s: UTC times in seconds since the Unix epoch.

        Returns:
            Temperatures in °C: daily mean plus a diurnal swing, larger on clear
            days and in summer, lowest at 06:00 and highest at 15:00 solar time.
        """
        days = self._day_index(epoch_s)
        hour = self._solar_hour(epoch_s)
        rising = (hour >= 6.0) & (hour < 15.0)
        shape = np.where(rising, -np.cos(np.pi * (hour - 6.0) / 9.0), np.cos(np.pi * np.mod(hour - 15.0, 24.0) / 15.0))
        summer = 0.5 - 0.5 * np.cos(2 * np.pi * (days - _COLDEST_DAY) / _YEAR_DAYS)
        half_swing = (2.5 + 2.0 * summer) * (0.45 + 0.55 * self.clearness(epoch_s))
        result: FloatArray = self.daily_mean_c(epoch_s) + half_swing * shape
        return result

    def solar_elevation_deg(self, epoch_s: FloatArray) -> FloatArray:
        """Elevation of the sun above the horizon, in degrees (negative at night)."""
        days = self._day_index(epoch_s)
        declination = np.radians(23.44) * np.sin(2 * np.pi * (days - 80.0) / _YEAR_DAYS)
        hour_angle = np.radians(15.0 * (self._solar_hour(epoch_s) - 12.0))
        sin_elev = np.sin(self._lat) * np.sin(declination) + np.cos(self._lat) * np.cos(declination) * np.cos(
            hour_angle
        )
        result: FloatArray = np.degrees(np.arcsin(np.clip(sin_elev, -1.0, 1.0)))
        return result

    def irradiance_w_m2(self, epoch_s: FloatArray) -> FloatArray:
        """Global horizontal irradiance, W/m²."""
        sin_elev = np.sin(np.radians(self.solar_elevation_deg(epoch_s)))
        result: FloatArray = _MAX_IRRADIANCE_W_M2 * np.clip(sin_elev, 0.0, None) * self.clearness(epoch_s)
        return result

    def illuminance_lx(self, epoch_s: FloatArray) -> FloatArray:
        """Outdoor horizontal illuminance, lux (about 100 klx at noon on a clear summer day)."""
        result: FloatArray = self.irradiance_w_m2(epoch_s) * _LUX_PER_W_M2
        return result

    def temperature_at(self, moment: datetime) -> float:
        """Outdoor temperature at one aware datetime, °C."""
        return float(self.temperature_c(np.array([_epoch(moment)]))[0])

    def sun_times(self, day: date) -> tuple[datetime, datetime]:
        """Sunrise and sunset (UTC) of a day, from the solar elevation.

        Args:
            day: the calendar day.

        Returns:
            ``(sunrise, sunset)``, to the minute, as aware UTC datetimes.
        """
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        minutes = _epoch(start) + 60.0 * np.arange(24 * 60, dtype=np.float64)
        above = np.flatnonzero(self.solar_elevation_deg(minutes) > -0.833)
        if above.size == 0:
            return start, start
        return start + timedelta(minutes=int(above[0])), start + timedelta(minutes=int(above[-1]) + 1)


def _epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        msg = "datetimes must be timezone-aware"
        raise ValueError(msg)
    return moment.timestamp()
