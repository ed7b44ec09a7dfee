"""Capacity planning: design-space sweeps on the analytic fast path, Pareto frontiers, the SLO
planner, DES replay of chosen points, reports and the paper studies. See ``docs/planning.md``."""
