"""MiniLM forwards under load: OpenMP wait policy and thread count.

Runs 3 × 2 forwards of 8 × 128 held-out tokens through the embedded MiniLM and prints wall and
process CPU time with the machine's 1-minute load. Run each setting as its own process (the
OpenMP runtime reads OMP_WAIT_POLICY when torch loads; halo_opt sets PASSIVE unless it is set):

    for i in 1 2; do
      OMP_WAIT_POLICY=ACTIVE python benchmarks/bench_omp_wait.py 2
      python benchmarks/bench_omp_wait.py 1
      python benchmarks/bench_omp_wait.py 2          # halo_opt's default: PASSIVE
    done
"""

import os
import sys
import time

import halo_opt  # noqa: F401  first: sets OMP_WAIT_POLICY=PASSIVE unless set, before torch loads OpenMP
import torch
from halo_opt.calibration.models import load_model
from halo_opt.calibration.text import calibration_batch

n = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(n)
ad = load_model("minilm")
tb = calibration_batch(ad.tokenizer, None, 16, 128, 0, part="heldout", max_length=ad.max_length)
batches = list(tb.batches(8, "cpu"))
with torch.no_grad():
    ad._forward(ad.model, batches[0])
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(3):
        for b in batches:
            ad._forward(ad.model, b)
print(f"threads={n} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')} wall={time.perf_counter() - t0:.2f}s "
      f"cpu={time.process_time() - c0:.2f}s load1={os.getloadavg()[0]:.1f}", flush=True)
