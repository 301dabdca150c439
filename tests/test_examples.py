"""Smoke tests: every example runs end to end in its reduced (--quick) mode and writes its outputs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_digits_quick(tmp_path, capsys):
    digits = load("digits_init_story")
    assert digits.main(["--quick", "--out", str(tmp_path), "--steps", "10"]) == 0
    text = (tmp_path / "digits_results.md").read_text()
    assert "| sigmoid | normal(0.01) | vanishing |" in text
    assert "| relu | he | ok |" in text
    assert "zero init does not learn**: holds" in text  # zeros: nothing moves off chance, even in 10 steps
    assert (tmp_path / "digits_relu.png").stat().st_size > 10_000
    out, err = capsys.readouterr()
    assert "digits_results.md" in out and out.rstrip().endswith(str(tmp_path.resolve()))  # where, at the end
    assert "8/8" in err and "pairing" in err  # the progress bar, one step per activation x init
    assert (tmp_path / "digits_table.md").read_text().startswith("| activation | zeros | normal(0.01) | he | auto |")


def test_digits_writes_outside_the_source_tree_by_default(monkeypatch, tmp_path):
    digits = load("digits_init_story")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert Path(digits.parse_args([]).out) == tmp_path / "torchinit" / "demo"
    monkeypatch.delenv("XDG_CACHE_HOME")
    out = Path(digits.parse_args([]).out).resolve()
    assert EXAMPLES.parent.resolve() not in out.parents


def test_digits_is_reproducible_whatever_the_process_layout(tmp_path):
    digits = load("digits_init_story")
    args = ["--activations", "gelu,tanh", "--inits", "he,lsuv", "--steps", "12", "--no-plots", "--no-progress"]
    runs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert digits.main(args + ["--workers", str(workers), "--out", str(out)]) == 0
        rows = __import__("json").loads((out / "digits_results.json").read_text())["rows"]
        runs.append([{k: r[k] for k in ("activation", "init", "loss0", "loss", "acc", "grad_first")} for r in rows])
    assert runs[0] == runs[1]  # bit for bit: one thread and deterministic algorithms in every pairing


def test_digits_claims_are_computed_from_rows():
    digits = load("digits_init_story")
    rows = [
        {"activation": "relu", "init": "zeros", "acc": 0.1, "verdict": "vanishing", "grad_first": 0.0,
         "loss0": 2.3, "loss": 2.3},
        {"activation": "relu", "init": "he", "acc": 0.5, "verdict": "ok", "grad_first": 1.0, "loss0": 3.0,
         "loss": 1.0},
    ]
    verdicts = {claim: ok for claim, ok, _ in digits.claims(rows)}
    assert verdicts == {"zero init does not learn": True, "He init with ReLU trains": False}


def test_torchvision_quick(tmp_path, capsys):
    assert load("torchvision_swap_init").main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "one SGD step on the batch: loss" in out and "torchinit.nn.SiLU" in out
    assert (tmp_path / "resnet_before_after.png").is_file()


def test_transformer_quick(tmp_path, capsys):
    assert load("transformer_swiglu_gpt2").main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "gpt2(2): verdict" in out and "down_proj std 0.01000" in out  # 0.02 / sqrt(2 * 2)
    assert (tmp_path / "transformer_inits.png").is_file()


def test_quick_mode_from_environment(monkeypatch):
    monkeypatch.setenv("TORCHINIT_EXAMPLE_QUICK", "1")
    ns = load("digits_init_story").parse_args([])
    assert ns.quick and ns.steps == 30 and ns.workers == 1 and len(ns.acts) * len(ns.init_names) == 8
    with pytest.raises(SystemExit):
        load("digits_init_story").parse_args(["--activations", "nope"])


# README's "How to choose an init" section: its table is the committed demo result, its prose matches the table
README = EXAMPLES.parent / "README.md"
VARIANCE_PRESERVING = ("xavier", "he", "lecun", "orthogonal", "lsuv", "auto")


def _readme_accuracies() -> dict[str, dict[str, float]]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| activation | zeros |")))
    header = [c.strip() for c in lines[start].strip("|").split("|")][1:]
    table = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        table[cells[0]] = dict(zip(header, map(float, cells[1:])))
    return table


def test_readme_table_is_the_committed_demo_result():
    digits = load("digits_init_story")
    rows = __import__("json").loads((EXAMPLES / "results" / "digits_results.json").read_text())["rows"]
    table = digits.accuracy_table(rows)
    assert table in README.read_text(encoding="utf-8")
    assert (EXAMPLES / "results" / "digits_table.md").read_text() == table


def test_readme_prose_on_the_demo_matches_its_table():
    acc = _readme_accuracies()
    # "zero init never learns and a small normal init vanishes in every deep net here"
    assert all(row[i] < digits_chance() + 0.15 for row in acc.values() for i in ("zeros", "normal(0.01)"))
    # "no init trained the 8-layer sigmoid net within this budget"
    assert max(acc["sigmoid"].values()) < digits_chance() + 0.15
    # "for tanh, ReLU, leaky ReLU, ELU and SELU every variance-preserving init trains (0.92-0.97), and LSUV
    # is the best or within 0.006 of it in each of those rows"
    for act in ("tanh", "relu", "leaky_relu", "elu", "selu"):
        assert all(0.92 <= round(acc[act][i], 2) <= 0.97 for i in VARIANCE_PRESERVING), act
        assert max(acc[act].values()) - acc[act]["lsuv"] <= 0.006 + 1e-9, act
    # "GELU and SiLU: He, auto and LSUV train (0.93-0.96), while xavier, lecun and orthogonal stay at 0.10-0.73"
    for act in ("gelu", "silu"):
        assert all(0.93 <= round(acc[act][i], 2) <= 0.96 for i in ("he", "auto", "lsuv")), act
        assert all(0.10 <= round(acc[act][i], 2) <= 0.73 for i in ("xavier", "lecun", "orthogonal")), act


def digits_chance() -> float:
    return load("digits_init_story").CHANCE
