"""Hardware model: MAC netlists, per-code timing and energy, DVFS, codebooks.

Knows nothing of models or torch.
"""
