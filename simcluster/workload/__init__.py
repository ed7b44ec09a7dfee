"""Workloads: request traces and synthetic arrivals and lengths.

The engine consumes a :class:`Workload`; everything here produces or transforms one.
See ``docs/workloads.md``.
"""

from simcluster.workload.spec import (
    SyntheticWorkloadSpec,
    TraceWorkloadSpec,
    WorkloadSpec,
    build_workload,
    parse_workload_spec,
)
from simcluster.workload.synthetic import (
    ConstantArrivals,
    EmpiricalLength,
    FixedLength,
    GammaArrivals,
    LengthTable,
    LognormalLength,
    PoissonArrivals,
    QuantileLength,
    UniformLength,
    azure_conversation_like,
    load_preset,
    preset_length,
    synthetic_workload,
)
from simcluster.workload.traces import (
    TRACE_FORMATS,
    WRITE_FORMATS,
    detect_format,
    read_length_table,
    read_trace,
    write_trace,
    write_trace_parquet,
)
from simcluster.workload.workload import Workload, head, scale_rate, time_window, workload_stats

__all__ = [
    "Workload",
    "head",
    "scale_rate",
    "time_window",
    "workload_stats",
    "TRACE_FORMATS",
    "WRITE_FORMATS",
    "detect_format",
    "read_trace",
    "read_length_table",
    "write_trace",
    "write_trace_parquet",
    "ConstantArrivals",
    "GammaArrivals",
    "PoissonArrivals",
    "FixedLength",
    "UniformLength",
    "LognormalLength",
    "LengthTable",
    "EmpiricalLength",
    "QuantileLength",
    "load_preset",
    "preset_length",
    "azure_conversation_like",
    "synthetic_workload",
    "WorkloadSpec",
    "TraceWorkloadSpec",
    "SyntheticWorkloadSpec",
    "parse_workload_spec",
    "build_workload",
]
