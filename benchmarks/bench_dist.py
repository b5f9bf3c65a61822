"""One process vs several: calibration (Hessians + Fisher) and GPTQ execution of a random LLaMA-shaped model.

  OMP_NUM_THREADS=1 python benchmarks/bench_dist.py --hidden 512 --inter 1376 --layers 4 --sequences 32 --seq-len 128 --world 2

Builds a LLaMA config with random weights (MiniLM's tokenizer) in a temp folder, then times
``calibrate_world`` (the path of ``halo-opt calibrate --world N``) for world 1 and N, checks the two
folders are bitwise identical, and times GPTQ of every planned layer (``execute_plan`` through a
``QuantPool``, the path of ``halo-opt execute --world N``) on a synthetic plan, checking the codes are
identical. Prints one JSON object (wall seconds per stage and world).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def build(folder: Path, hidden: int, inter: int, layers: int) -> Path:
    import transformers as tf

    from halo_opt.calibration.models import minilm_path

    cfg = tf.LlamaConfig(vocab_size=30522, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                         num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 64),
                         max_position_embeddings=512)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        tf.LlamaForCausalLM(cfg).save_pretrained(folder)
    tf.AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(folder)
    return folder


def _gptq_flow(plan, costs_dir, calib, model):
    def flow(pool, device):
        from halo_opt.calibration import load_model
        from halo_opt.execute.inputs import load_costs, load_hessian
        from halo_opt.execute.run import execute_plan

        ad = load_model(model)
        W = {l.name: l.weight() for l in ad.linears}
        t = time.perf_counter()
        ex = execute_plan(plan, load_costs(costs_dir), W, lambda n: load_hessian(calib, n).H, "gptq", device, 128, False, pool)
        return ex, time.perf_counter() - t
    return flow


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--inter", type=int, default=1376)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--sequences", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--no-fisher", action="store_true")
    a = ap.parse_args()
    from calib_helpers import TEXT  # noqa: F401  (the same text helper the tests use)

    from halo_opt.calibration import load_hessian
    from halo_opt.calibration.distributed import calibrate_world, cli_inputs
    from halo_opt.execute import synthetic as syn
    from halo_opt.execute.distributed import with_pool

    tmp = Path(tempfile.mkdtemp(prefix="bench_dist_"))
    model = build(tmp / "model", a.hidden, a.inter, a.layers)
    inputs = {"model": str(model), "sequences": a.sequences, "seq_len": a.seq_len, "seed": 0}
    res: dict = {"args": vars(a), "threads": torch.get_num_threads()}
    for w in (1, a.world):
        t = time.perf_counter()
        calibrate_world(cli_inputs, inputs, tmp / f"calib{w}", w, "cpu", batch_size=a.batch_size, progress=False, fisher=not a.no_fisher)
        meta = json.loads((tmp / f"calib{w}" / "meta.json").read_text())
        res[f"calibrate_world{w}_s"] = round(time.perf_counter() - t, 2)
        res[f"calibrate_world{w}_rank0_timing_s"] = meta["timing_s"]
    layers = json.loads((tmp / "calib1" / "layers.json").read_text())
    same = all(torch.equal(x, y) for l in layers
               for x, y in zip(load_hessian(tmp / "calib1", l["name"]).values(), load_hessian(tmp / f"calib{a.world}", l["name"]).values()))
    if not a.no_fisher:
        from safetensors.torch import load_file

        fa, fb = load_file(str(tmp / "calib1/fisher.safetensors")), load_file(str(tmp / f"calib{a.world}/fisher.safetensors"))
        same = same and all(torch.equal(fa[k], fb[k]) for k in fa)
    res["calibration_bitwise_identical"] = same
    from halo_opt.calibration import load_model

    ad = load_model(str(model))
    W = {l.name: l.weight() for l in ad.linears}
    syn.write_costs(tmp / "costs", W, {k: load_hessian(tmp / "calib1", k)["H"] for k in W}, (128, 128), 0.01)
    plan = syn.make_plan(tmp / "costs", lambda g: ["full", "c9", "pow2"][g % 3])
    ex = {}
    for w in (1, a.world):
        t = time.perf_counter()
        ex[w], inner = with_pool(w, "cpu", tmp / "costs", tmp / "calib1", str(model), _gptq_flow(plan, tmp / "costs", tmp / "calib1", str(model)))
        res[f"gptq_world{w}_s"] = {"quantize": round(inner, 2), "with_startup": round(time.perf_counter() - t, 2)}
    res["gptq_bitwise_identical"] = all(torch.equal(ex[1].layers[n].q, ex[a.world].layers[n].q)
                                        and torch.equal(ex[1].layers[n].scales, ex[a.world].layers[n].scales) for n in ex[1].layers)
    res["planned_layers"] = len(layers)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
