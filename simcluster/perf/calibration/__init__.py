"""Calibrated op costs: measured per-op latencies (NVIDIA aiconfigurator, Apache-2.0), condensed.

* :mod:`.load` reads the measurement tree and picks one implementation per op;
* :mod:`.condense` turns it into the shipped artefacts (``simcluster/data/calibration``) and back;
* :mod:`.grid`, :mod:`.tables` interpolate; :mod:`.work` is the roofline they normalise by;
* :mod:`.collectives` and :mod:`.efficiency` are the fitted models used outside the tables;
* :mod:`.ops` is the public face: :class:`CalibratedOps`.

See ``docs/calibration.md``.
"""

from simcluster.perf.calibration.grid import SOURCE_LABELS, source_label
from simcluster.perf.calibration.ops import CalibratedOps

__all__ = ["CalibratedOps", "SOURCE_LABELS", "source_label"]
