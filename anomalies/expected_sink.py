"""Expected against observed consumption, written to InfluxDB for Grafana.

:func:`~anomalies.detect.detect` hands its ``on_expected`` hook one
:class:`~anomalies.detect.ExpectedSeries` per building × usage with a model.
:func:`expected_lines` encodes it as one point per hour that has an expected
value, in the measurement ``expected``::

    expected,building=<id>,usage=<usage> expected=<float>,observed=<float>,residual=<float> <ms>

- time: the start of the hour (UTC, milliseconds), as the hourly aggregates;
- ``expected``: what the building should have consumed in that hour (kWh,
  or m³ for water), from the model of :mod:`anomalies.detect`;
- ``observed``: what it consumed; ``residual`` = observed − expected. Both
  are left out of an hour whose consumption is unknown (a gap, or hours a
  quality rule blanked, such as a stuck counter), so that a sum over a day
  never counts an unknown hour as zero.

Tags are only ``building`` and ``usage``, and the time is the hour: writing
the same hours again (a second run of ``econome detect``, or a model that
changed its mind) overwrites the points, it never adds any. Hours with no
expected value (before the model's first fit) are not written.

:func:`write_expected` writes through any :mod:`streams.influx` writer, so
InfluxDB 1.x (v1 API) and 2.x/3.x (v2 API) both work, with the credentials
and TLS settings of ``ECONOME_INFLUX_*``.

Sample use (``econome detect`` does this with ``--influx``)::

    collected: list[ExpectedSeries] = []
    events = detect(inventory, readings, on_expected=collected.append)
    writer = make_writer(settings.influx())
    await write_expected(writer, collected)

>>> import numpy as np
>>> from inventory import Usage
>>> series = ExpectedSeries("mairie", Usage.HEATING, "kWh", np.array([0.0, 3600.0]),
...                         np.array([12.5, np.nan]), np.array([10.0, 11.0]))
>>> for line in expected_lines(series):
...     print(line)
expected,building=mairie,usage=heating expected=10.0,observed=12.5,residual=2.5 0
expected,building=mairie,usage=heating expected=11.0 3600000
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from anomalies.detect import ExpectedSeries
from streams.influx import InfluxWriter, escape_tag

__all__ = ["DEFAULT_BATCH_SIZE", "EXPECTED_MEASUREMENT", "expected_lines", "write_expected"]

EXPECTED_MEASUREMENT = "expected"
"""The measurement of expected against observed consumption, one point per building × usage × hour."""

DEFAULT_BATCH_SIZE = 5000
"""Points per write, as the pipeline's sink (``ECONOME_BATCH_SIZE``)."""


def expected_lines(series: ExpectedSeries) -> list[str]:
    """The line protocol of one series: one line per hour with a finite expected value.

    Args:
        series: the hourly observed and expected consumption of one building × usage.

    Returns:
        Lines in millisecond precision, in time order.
    """
    prefix = f"{EXPECTED_MEASUREMENT},building={escape_tag(series.building)},usage={escape_tag(series.usage.value)} "
    lines = []
    for t, obs, exp in zip(series.times_s.tolist(), series.observed.tolist(), series.expected.tolist(), strict=True):
        if not math.isfinite(exp):
            continue
        fields = f"expected={exp!r}"
        if math.isfinite(obs):
            fields += f",observed={obs!r},residual={obs - exp!r}"
        lines.append(f"{prefix}{fields} {round(t * 1000)}")
    return lines


async def write_expected(
    writer: InfluxWriter, series: Iterable[ExpectedSeries], *, batch_size: int = DEFAULT_BATCH_SIZE
) -> int:
    """Write expected against observed to InfluxDB; returns how many points.

    Args:
        writer: a :mod:`streams.influx` writer (v1 or v2).
        series: the series, as :func:`~anomalies.detect.detect` gave them.
        batch_size: most points per request.

    Raises:
        SinkError: the database refused a write or could not be reached.
    """
    count = 0
    batch: list[str] = []
    for one in series:
        for line in expected_lines(one):
            batch.append(line)
            if len(batch) >= batch_size:
                await writer.write(batch)
                count += len(batch)
                batch = []
    if batch:
        await writer.write(batch)
        count += len(batch)
    return count
