"""The sweep comparison report: `python -m trainspeed.report SWEEP_DIR`, or `build_report(sweep_dir)`.

The names below load on first use, so importing `trainspeed.report.hydra_callback` (which Hydra does in every
sweep) does not import matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainspeed.report.build import Report, build_report
    from trainspeed.report.collect import NoJobsError

__all__ = ["NoJobsError", "Report", "build_report"]


def __getattr__(name: str) -> Any:
    if name in ("Report", "build_report"):
        from trainspeed.report import build

        return getattr(build, name)
    if name == "NoJobsError":
        from trainspeed.report.collect import NoJobsError

        return NoJobsError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
