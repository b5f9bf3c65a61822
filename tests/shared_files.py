"""Files of the shared folder that sits beside a clone (``REPO/../shared``; CI puts it there). A
worktree may sit deeper, so every ancestor's ``shared/`` is tried; tests that need a file skip
cleanly when none has it. No machine-specific paths."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_file(rel: str) -> Path:
    """``<ancestor>/shared/<rel>`` (a file or a folder) for the nearest ancestor of the repository
    that has it, else ``REPO/../shared/<rel>``."""
    return next((p / "shared" / rel for p in REPO.parents if (p / "shared" / rel).exists()), REPO.parent / "shared" / rel)


LIBERTY = shared_file("liberty")
SKY130 = shared_file("liberty/sky130hd_tt.lib.gz")
SG13G2 = shared_file("liberty/sg13g2_stdcell_typ_1p20V_25C.lib.gz")
ASAP7 = sorted(shared_file("liberty/asap7").glob("asap7sc7p5t_*_RVT_TT_nldm_*.lib.gz"))  # four files, or none
HALO_TABLE = shared_file("anchors/halo_per_code.csv")
