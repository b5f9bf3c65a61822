"""CLI surface: --version, an example in every command's --help, `report` refusals; progress lines
without a TTY; where shipped data are found (checkout or wheel)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

import halo_opt
from halo_opt import paths
from halo_opt.cli import _register, app, main
from halo_opt.errors import UserError


def _commands():
    _register()
    import typer.main

    root = typer.main.get_command(app)
    out = []
    for name, cmd in root.commands.items():
        subs = getattr(cmd, "commands", None)
        out += [[name, s] for s in subs] if subs else [[name]]
    return out


def test_version(capsys):
    main(["--version"])  # returns (exit 0)
    assert capsys.readouterr().out.strip() == f"halo-opt {halo_opt.__version__}"


def test_every_command_has_a_help_example():
    cmds = _commands()
    assert {"report", "demo", "plan", "pareto", "execute", "tune", "costs", "calibrate", "characterize"} <= {c[0] for c in cmds}
    for c in cmds:
        r = CliRunner().invoke(app, [*c, "--help"], terminal_width=200)
        assert r.exit_code == 0, c
        text = re.sub(r"\s+", " ", r.output)
        assert "Example: halo-opt " + " ".join(c) in text, c


@pytest.mark.parametrize("cmd", ["plan", "pareto", "execute", "tune"])
def test_result_commands_take_json(cmd):
    r = CliRunner().invoke(app, [cmd, "--help"], terminal_width=200)
    assert "--json" in r.output


def test_report_refuses_a_folder_without_artifacts(tmp_path, capsys):
    for d in (tmp_path / "missing", tmp_path):
        with pytest.raises(SystemExit) as e:
            main(["report", str(d)])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: ")


def test_progress_without_tty_prints_one_line_per_step(capsys):
    from halo_opt.progress import Steps, track

    assert list(track(["a", "b", "c"], "work", label=str.upper)) == ["a", "b", "c"]
    lines = capsys.readouterr().err.strip().splitlines()
    assert [re.sub(r"^\[\s*[\d.]+ s\] ", "", x) for x in lines] == ["work 1/3: A", "work 2/3: B", "work 3/3: C"]
    with Steps("quiet", 2, on=False) as s:
        s.advance()
    assert capsys.readouterr().err == ""


def test_shipped_data_from_checkout_or_wheel(tmp_path, monkeypatch):
    assert paths.shipped_root() in (paths.REPO_ROOT, paths.PACKAGE_DIR / "_data")
    assert paths.scenario_file("performance") == paths.formulations_dir() / "performance.toml"
    with pytest.raises(UserError, match="unknown scenario 'fastest'; valid: .*balanced"):
        paths.scenario_file("fastest")
    wheel = tmp_path / "site" / "halo_opt"
    for sub in ("_data/data", "_data/formulations"):
        (wheel / sub).mkdir(parents=True)
    monkeypatch.setattr(paths, "PACKAGE_DIR", wheel)
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "site")
    assert paths.data_dir() == wheel / "_data" / "data"
    monkeypatch.setattr(paths, "PACKAGE_DIR", tmp_path / "nowhere")
    with pytest.raises(UserError, match="shipped data not found"):
        paths.data_dir()


def test_target_help_names_every_target_metric():
    from halo_opt.cli.execute import TARGET_HELP
    from halo_opt.execute.evaluate import RANGE, _ALIASES

    assert all(m in TARGET_HELP for m in RANGE)
    assert all(f"{name} ({alias})" in TARGET_HELP for alias, name in _ALIASES.items() if alias in ("cosine", "top1", "ppl"))
