"""The numeric executor: apply a plan to the real model and validate it (never re-plans).

* :mod:`.inputs`   read plan / cost folder / Hessians, cross-check hashes and timing compat;
* :mod:`.apply`    per-tile RTN to the plan's codebooks (integer codes + per-row-and-tile scales);
* :mod:`.gptq`     GPTQ restricted to per-tile codebooks;
* :mod:`.run`      quantize every planned layer, uniform INT8/INT4 baselines, dequantized model;
* :mod:`.evaluate` perplexity (causal) / embedding cosine + top-1 retrieval (encoder), targets;
* :mod:`.validate` predicted vs measured layer error, Spearman ρ, timing of the codes used;
* :mod:`.export`   compressed-tensors (pack-quantized, group = tile width) and plain safetensors;
* :mod:`.tune`     closed loop: largest budget meeting an accuracy target (planner passed in);
* :mod:`.pipeline` / :mod:`.report` compose the above and write the validation report.
"""

from .run import Execution, dequantized_model, execute_plan, uniform_baseline

__all__ = ["Execution", "dequantized_model", "execute_plan", "uniform_baseline"]
