"""Calibration: model adapters, calibration text, streaming layer-input Hessians (contract §3)."""

from .hessian import DampingWarning, Damped, calibrate, damped, load_calibration, load_hessian
from .models import DEFAULT_INCLUDE, ModelAdapter, PlannedLinear, from_module, load_model
from .text import Document, TokenBatch, calibration_batch, read_documents, stdlib_documents, token_batch

__all__ = ["DEFAULT_INCLUDE", "DampingWarning", "Damped", "Document", "ModelAdapter", "PlannedLinear", "TokenBatch",
           "calibrate", "calibration_batch", "damped", "from_module", "load_calibration", "load_hessian", "load_model",
           "read_documents", "stdlib_documents", "token_batch"]
