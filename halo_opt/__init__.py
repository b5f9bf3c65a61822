"""halo-opt: hardware-aware quantization planning for LLMs.

Stages (each a function from artifacts to artifacts, see DESIGN in README):
characterize -> codebooks -> calibrate -> costs -> plan -> execute -> report.
"""

import os as _os

__version__ = "0.1.0"

# OpenMP threads that wait at a barrier sleep instead of spinning. On a shared machine (other jobs
# on the same cores) spinning threads burn the cores the working thread needs: MiniLM forwards
# took 2.2x the wall time and CPU time with the default policy at load 12-15 on 2 cores
# (benchmarks/README.md). Same thread count and partitioning, so results are unchanged. It must
# be set before torch loads its OpenMP runtime; an explicit OMP_WAIT_POLICY is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
