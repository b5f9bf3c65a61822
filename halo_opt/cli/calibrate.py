"""`halo-opt calibrate`: layer-input Hessians of a model on calibration text (contract §3)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command("calibrate")
def calibrate_cmd(
    out: Path = typer.Option(..., "--out", help="run folder to write (resumed if interrupted)"),
    model: str = typer.Option("minilm", "--model", help="minilm (embedded), smollm2-135m (pulled) or a local HF folder"),
    text: Optional[list[Path]] = typer.Option(None, "--text", help="calibration text files/folders (default: stdlib docstrings)"),
    sequences: int = typer.Option(64, "--sequences", help="number of calibration sequences"),
    seq_len: int = typer.Option(128, "--seq-len", help="tokens per sequence (incl. special tokens)"),
    seed: int = typer.Option(0, "--seed", help="seed of the document order"),
    split_seed: int = typer.Option(0, "--split-seed", help="seed of the stdlib calibration/held-out module split"),
    heldout_frac: float = typer.Option(0.2, "--heldout-frac", help="fraction of stdlib modules held out for evaluation"),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:i]"),
    batch_size: int = typer.Option(8, "--batch-size", help="sequences per forward"),
    abits: int = typer.Option(8, "--abits", help="MAC activation bits (histogram grid)"),
    unsigned_acts: bool = typer.Option(False, "--unsigned-acts", help="unsigned activation grid [0, 2^b-1]"),
    include: Optional[str] = typer.Option(None, "--include", help="regex of planned linears (default: every linear in the blocks)"),
    exclude: Optional[str] = typer.Option(None, "--exclude", help="regex of linears to leave out"),
    layers: Optional[str] = typer.Option(None, "--layers", help="comma-separated explicit layer names"),
    max_hessian_gb: float = typer.Option(4.0, "--max-hessian-gb", help="memory for Hessians per pass (more layers -> more passes)"),
    hessian: str = typer.Option("auto", "--hessian", help="full (every layer's H, float64: GPTQ reads it) | blocks (only the "
                                "diagonal blocks cost tables need; GPTQ recomputes H per layer) | auto (full while all fit 4 GB)"),
    hessian_block: int = typer.Option(128, "--hessian-block", help="block width of --hessian blocks; cost tiles' columns must divide it"),
    hessian_dtype: str = typer.Option("float32", "--hessian-dtype", help="float32 | float64 storage of the blocks"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a run of other inputs in --out"),
    fisher: bool = typer.Option(True, "--fisher/--no-fisher", help="also collect output-channel loss sensitivities (backward passes) for --error-model fisher"),
    fisher_loss: Optional[str] = typer.Option(None, "--fisher-loss", help="nll (causal LMs) or embedding (encoders); default by model kind"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    world: int = typer.Option(1, "--world", help="processes on this host (CPU: gloo; --device cuda: one GPU each, NCCL); "
                              "layers' Hessians and Fisher batches are split, results are bitwise those of one process"),
) -> None:
    """Accumulate H = (2/n) Σ x xᵀ per planned linear layer (float64, streaming) + activation histograms.

    Example: halo-opt calibrate --model minilm --sequences 64 --seq-len 128 --seed 0 --out runs/calib

    Several processes: --world N (or torchrun --standalone --nproc-per-node N -m halo_opt calibrate ...).
    """
    from ..calibration.distributed import calibrate_world, cli_inputs

    inputs = {"model": model, "include": include, "exclude": exclude, "layers": layers.split(",") if layers else None,
              "text": [str(t) for t in text] if text else None, "sequences": sequences, "seq_len": seq_len, "seed": seed,
              "split_seed": split_seed, "heldout_frac": heldout_frac}
    res = calibrate_world(
        cli_inputs, inputs, out, world, device, batch_size=batch_size, abits=abits, asigned=not unsigned_acts,
        layout=hessian, block=hessian_block, block_dtype=hessian_dtype,
        max_hessian_bytes=int(max_hessian_gb * (1 << 30)), overwrite=overwrite, progress=progress, fisher=fisher,
        fisher_loss=fisher_loss)
    if res is None:  # another rank of torchrun: rank 0 reports
        return
    _, n_layers, name, n_tokens = res
    from ..calibration import load_calibration

    meta = load_calibration(out)[0]
    w = (meta.get("distributed") or {}).get("world", 1)
    typer.echo(f"calibrated {n_layers} layers of {name} on {n_tokens} tokens (model sha256 {meta['model_sha256'][:12]})"
               + (f" on {w} processes" if w > 1 else "") + f" -> {out}")
