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
    assert "digits_results.md" in capsys.readouterr().out


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
