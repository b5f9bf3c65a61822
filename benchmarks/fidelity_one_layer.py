"""Each planned MiniLM layer alone on int4 (all others on full): measured vs predicted, per layer.

Reuses the folders of `benchmarks/fidelity.py --model minilm --out /tmp/acc/fid-mini`; writes
JSON lines (layer, measured 1 − mean cosine, pred_local, pred_fisher) to /tmp/acc/perlayer.jsonl.
"""
import json, sys
from pathlib import Path
import numpy as np, torch
sys.path.insert(0, "benchmarks")
torch.set_num_threads(1)
from fidelity import PlanBench
from halo_opt.calibration.models import load_model
from halo_opt.calibration.text import calibration_batch
ad = load_model("minilm")
ev = calibration_batch(ad.tokenizer, None, 16, 128, 1, part="test", max_length=ad.max_length)
b = PlanBench(ad, Path("/tmp/acc/fid-mini/costs"), Path("/tmp/acc/mini-calib"), list(ev.batches(8)))
layer_of = b.c.tiles["layer"].to_numpy()
bi = {n: i for i, n in enumerate(b.books)}
out = open("/tmp/acc/perlayer.jsonl", "a")
for name in dict.fromkeys(layer_of):
    cb = np.full(len(layer_of), bi["full"]); cb[layer_of == name] = bi["int4"]
    r = {"layer": name, "measured": b.measure(cb), **{f"pred_{k}": v for k, v in b.predict(cb).items()}}
    out.write(json.dumps(r) + "\n"); out.flush(); print(r, flush=True)
