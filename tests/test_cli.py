"""Tests for the torchinit command: help, diagnose (models, schemes, devices, errors), bench and demo lookup."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from torchinit import cli

TINY = textwrap.dedent("""
    import torch
    from torch import nn

    def build():
        return nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))

    def with_inputs():
        return build(), torch.randn(8, 16)

    not_a_model = 3
""")


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    (tmp_path / "tiny_models.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("bench", "diagnose", "demo"):
        assert command in out
    with pytest.raises(SystemExit):
        cli.main(["diagnose", "--help"])
    out = capsys.readouterr().out
    assert "--scheme" in out and "--act" in out and "module:callable" in out


def test_diagnose_callable_with_inputs_scheme_and_json(tiny, capsys):
    rc = cli.main(["diagnose", "tiny_models:with_inputs", "--scheme", "normal", "--json", "r.json", "--plot", "p.png"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "verdict" in out and "plot written to p.png" in out
    data = json.loads((tiny / "r.json").read_text())
    (report,) = data.values()
    # apply_init's "normal" is N(0, 1), far too large for width 16: the tanh units saturate
    tanh_rows = [row for row in report["layers"] if row["kind"] == "Tanh"]
    assert len(tanh_rows) == 2 and all(row["saturated_fraction"] > 0.3 for row in tanh_rows)
    assert (tiny / "p.png").stat().st_size > 5_000


def test_diagnose_compares_several_schemes(tiny, capsys):
    rc = cli.main(["diagnose", "tiny_models:build", "--input-shape", "8,16", "--scheme", "zeros",
                   "--scheme", "xavier_normal", "--scheme", "lsuv", "--json", "all.json"])
    assert rc == 0
    data = json.loads((tiny / "all.json").read_text())
    assert list(data) == ["zeros", "xavier_normal", "lsuv"]
    assert data["zeros"]["verdict"] == "vanishing" and data["xavier_normal"]["verdict"] == "ok"
    # the default plot name says the schemes (a second run with others does not overwrite it)
    assert (tiny / "diagnose-build-zeros-xavier_normal-lsuv.png").is_file()


def test_scheme_names_are_accepted_as_apply_init_accepts_them(tiny, capsys):
    rc = cli.main(["diagnose", "tiny_models:build", "--input-shape", "8,16", "--scheme", "kaiming_normal", "--scheme",
                   "Kaiming_Normal_", "--scheme", "He", "--scheme", "LSUV", "--scheme", "data_init", "--json", "r.json",
                   "--no-plot"])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((tiny / "r.json").read_text())
    assert list(data) == ["kaiming_normal", "Kaiming_Normal_", "He", "LSUV", "data_init"]
    # case and the trailing underscore do not change the scheme: same seed, same weights, same measurements
    assert data["kaiming_normal"]["layers"] == data["Kaiming_Normal_"]["layers"]


def test_plot_names_and_titles_say_the_scheme_and_activation():
    assert cli.plot_file_name("resnet18", ["kaiming_normal"], "gelu") == "diagnose-resnet18-kaiming_normal-gelu.png"
    assert cli.plot_file_name("resnet18", [], None) == "diagnose-resnet18.png"
    assert cli.plot_file_name("m", ["a", "b"], None) != cli.plot_file_name("m", ["a"], None)
    title = cli.plot_title("resnet18", ["kaiming_normal"], "gelu")
    assert "init: kaiming_normal" in title and "activation: gelu" in title
    assert "init: the model's own" in cli.plot_title("resnet18", [], None)


def test_diagnose_torchvision_model_with_swapped_activation(tiny, capsys):
    rc = cli.main(["diagnose", "resnet18", "--input-shape", "2,3,32,32", "--act", "gelu", "--no-plot"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "GELU" in out and "layer4.1.conv2" in out and "plot written" not in out


@pytest.mark.parametrize("argv, message", [
    (["diagnose", "resnet1"], "unknown model 'resnet1'"),
    (["diagnose", "tiny_models:nothing"], "has no attribute 'nothing'"),
    (["diagnose", "no_such_module_xyz:f"], "cannot import module 'no_such_module_xyz'"),
    (["diagnose", "tiny_models:not_a_model"], "is not callable"),
    (["diagnose", "tiny_models:build", "--scheme", "kaiming_nromal"], "unknown scheme 'kaiming_nromal'; did you mean"),
    (["diagnose", "tiny_models:build", "--device", "blah"], "unknown device 'blah'"),
    (["diagnose", "tiny_models:build", "--device", "cuda:7"], "cuda:7"),
    (["diagnose", "tiny_models:build", "--act", "nosuch", "--input-shape", "2,16"], "--act 'nosuch'"),
    (["diagnose", "tiny_models:build", "--functional"], "--functional needs --act"),
    (["diagnose", "tiny_models:build", "--input-shape", "2,0"], "--input-shape"),
])
def test_clear_errors(tiny, capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("torchinit diagnose: error:") and message in err


def test_list_commands(capsys):
    assert cli.main(["diagnose", "list"]) == 0
    assert "resnet18" in capsys.readouterr().out.split()
    assert cli.main(["diagnose", "resnet18", "--scheme", "list"]) == 0
    assert "kaiming_normal" in capsys.readouterr().out.split()


def test_bench_and_demo_missing_files_are_clear(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "BENCH_FILE", cli.Path("benchmarks") / "not_here.py")
    monkeypatch.setattr(cli, "DEMO_FILE", cli.Path("examples") / "not_here.py")
    assert cli.main(["bench"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("torchinit bench: error: cannot find benchmarks/not_here.py") and "source checkout" in err
    assert cli.main(["demo", "--quick"]) == 2
    assert "torchinit demo: error: cannot find examples/not_here.py" in capsys.readouterr().err


def test_bench_and_demo_forward_their_arguments(tmp_path, monkeypatch):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "helper.py").write_text("SEEN = []\n")
    (tmp_path / "benchmarks" / "run.py").write_text(
        "from benchmarks.helper import SEEN\n"
        "def run(argv, prog='x'):\n    SEEN.append((list(argv), prog))\n    return 3\n")
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "digits_init_story.py").write_text(
        "CALLS = []\ndef main(argv):\n    CALLS.append(list(argv))\n    return 0\n")
    monkeypatch.chdir(tmp_path / "examples")  # found from a sub-directory too
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("benchmarks", "benchmarks.run", "benchmarks.helper", "digits_init_story"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert cli.main(["bench", "--ops", "gelu", "--help-me"]) == 3
    assert sys.modules["benchmarks.helper"].SEEN == [(["--ops", "gelu", "--help-me"], "torchinit bench")]
    assert cli.main(["demo", "--quick"]) == 0
    assert sys.modules["digits_init_story"].CALLS == [["--quick"]]


# the command line is parsed before torch is imported: help, version and argument errors come back at once
_RUN_COMMAND = """
import sys
sys.argv = ["torchinit"] + sys.argv[1:]
import _torchinit_cli
try:
    status = _torchinit_cli.main()
except SystemExit as exc:
    status = exc.code
print("status", status, "torch imported", "torch" in sys.modules)
"""


def _command(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _RUN_COMMAND, *argv], capture_output=True, text=True,
                          timeout=900)  # a hang guard only


@pytest.mark.parametrize("argv, status, shown", [
    (["--help"], 0, "{bench,diagnose,demo}"),
    (["--version"], 0, "torchinit "),
    (["diagnose", "--help"], 0, "--scheme"),
    (["diagnose"], 2, "the following arguments are required: MODEL"),
    (["diagnose", "resnet18", "--factor", "big"], 2, "invalid float value: 'big'"),
    (["diagnose", "resnet18", "--functional"], 2, "--functional needs --act"),
    (["diagnose", "resnet18", "--input-shape", "2,0"], 2, "--input-shape"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    (["bench", "--help"], 0, "usage: torchinit bench"),
    (["bench", "--frob"], 2, "unrecognized arguments: --frob"),
    (["demo", "--help"], 0, "usage: torchinit demo"),
    (["demo", "--activations", "nope"], 2, "--activations: unknown ['nope']"),
])
def test_help_version_and_argument_errors_do_not_import_torch(argv, status, shown):
    out = _command(*argv)
    assert f"status {status} torch imported False" in out.stdout, out.stdout + out.stderr
    assert shown in out.stdout + out.stderr


def test_installed_command_reports_the_package_version():
    import torchinit

    script = Path(sys.executable).with_name("torchinit")
    assert script.is_file(), f"{script}: the console script is missing (pip install -e . installs it)"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0 and out.stdout.strip() == f"torchinit {torchinit.__version__}", out.stdout + out.stderr
