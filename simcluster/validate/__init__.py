"""Validation against measured deployments.

* :mod:`simcluster.validate.silicon` — reading files in the ``silicon_sample`` format (one measured
  deployment per row);
* :mod:`simcluster.validate.mapping` — a row → the deployment and workload simcluster simulates, or the
  reason it cannot;
* :mod:`simcluster.validate.recipes` — the benchmark harness behind a row and the published recipe it
  ran (speculative decoding, worker counts, launch flags the export dropped);
* :mod:`simcluster.validate.simulate` — running those deployments fast (shared cost models, no files);
* :mod:`simcluster.validate.report` — MAPE per system, framework, model and mode;
* :mod:`simcluster.validate.fit` — the train / held-out split and the fit of the framework profiles.

See ``docs/validation.md``.
"""
