"""halo-opt: hardware-aware quantization planning for LLMs.

Stages (each a function from artifacts to artifacts, see DESIGN in README):
characterize -> codebooks -> calibrate -> costs -> plan -> execute -> report.
"""

__version__ = "0.1.0"
