"""Tests for torchinit.diagnose: verdicts, per-layer measurements, gradient bookkeeping, plots."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import torchinit.nn as tinn
from torchinit.diagnose import DiagnosisReport, compare_inits, diagnose


def deep_mlp(act: type[nn.Module], init, depth: int = 20, width: int = 64, out: int = 10) -> nn.Sequential:
    """depth x (Linear, act) then a Linear head; every weight from ``init``, biases zero."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), act()]
    layers.append(nn.Linear(width, out))
    model = nn.Sequential(*layers)
    for m in model:
        if isinstance(m, nn.Linear):
            init(m.weight)
            nn.init.zeros_(m.bias)
    return model


def normal(std):
    return lambda w: nn.init.normal_(w, 0.0, std)


def he(w):
    return nn.init.kaiming_normal_(w, nonlinearity="relu")


# ------------------------------------------------------------------------------------------ the verdicts

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tanh_small_normal_is_vanishing(seed):
    torch.manual_seed(seed)
    report = diagnose(deep_mlp(nn.Tanh, normal(0.01)), torch.randn(64, 64), seed=seed)
    assert report.verdict == "vanishing", report.summary()
    assert report.backward_gain < 1e-10 and report.forward_gain < 1e-10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relu_normal_03_is_exploding(seed):
    torch.manual_seed(seed)
    report = diagnose(deep_mlp(nn.ReLU, normal(0.3)), torch.randn(64, 64), seed=seed)
    assert report.verdict == "exploding", report.summary()
    assert report.forward_gain > 100 and report.backward_gain > 100


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relu_he_is_ok(seed):
    torch.manual_seed(seed)
    report = diagnose(deep_mlp(nn.ReLU, he), torch.randn(64, 64), seed=seed)
    assert report.verdict == "ok", report.summary()
    assert 0.1 < report.forward_gain < 10 and 0.1 < report.backward_gain < 10


def test_torchinit_modules_give_the_same_verdicts():
    torch.manual_seed(0)
    assert diagnose(deep_mlp(tinn.Tanh, normal(0.01)), torch.randn(32, 64)).verdict == "vanishing"
    torch.manual_seed(0)
    assert diagnose(deep_mlp(tinn.ReLU, normal(0.3)), torch.randn(32, 64)).verdict == "exploding"
    torch.manual_seed(0)
    assert diagnose(deep_mlp(tinn.ReLU, he), torch.randn(32, 64)).verdict == "ok"


def test_zero_init_is_vanishing():
    report = diagnose(deep_mlp(nn.ReLU, nn.init.zeros_, depth=4), torch.randn(8, 64))
    assert report.verdict == "vanishing"
    assert report.forward_gain == 0.0 and report.backward_gain == 0.0


def test_non_finite_is_exploding():
    model = deep_mlp(nn.ReLU, he, depth=3)
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    report = diagnose(model, torch.randn(8, 64))
    assert report.verdict == "exploding" and "non-finite" in report.reason
    assert not report.layers[2].finite


def test_factor_is_the_threshold():
    torch.manual_seed(0)
    model = deep_mlp(nn.ReLU, normal(0.22), depth=6)  # about 1.24x per layer
    loose = diagnose(model, torch.randn(64, 64), factor=1000.0)
    strict = diagnose(model, torch.randn(64, 64), factor=1.5)
    assert loose.verdict == "ok" and strict.verdict == "exploding"
    assert 1.5 < max(strict.forward_gain, strict.backward_gain) < 1000


# ---------------------------------------------------------------------------------- per-layer numbers

def test_rows_follow_execution_order_and_shared_modules_repeat():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.b = nn.Linear(4, 4)   # declared first, called second
            self.a = nn.Linear(3, 4)
            self.act = nn.ReLU()       # called twice

        def forward(self, x):
            return self.act(self.b(self.act(self.a(x))))

    report = diagnose(Net(), torch.randn(5, 3))
    assert [r.name for r in report.layers] == ["a", "act", "b", "act#2"]
    assert [r.kind for r in report.layers] == ["Linear", "ReLU", "Linear", "ReLU"]
    assert [r.depth_layer for r in report.layers] == [True, False, True, False]
    assert [r.index for r in report.layers] == [0, 1, 2, 3]
    assert report.layers[0].shape == (5, 4)
    assert [r.name for r in report.depth_layers()] == ["a", "b"]


def test_forward_statistics_match_direct_computation():
    torch.manual_seed(0)
    lin, act = nn.Linear(16, 32), nn.ReLU()
    x = torch.randn(50, 16)
    report = diagnose(nn.Sequential(lin, act), x)
    y = lin(x).detach()
    r = act(y)
    assert report.layers[0].mean == pytest.approx(float(y.mean()), rel=1e-5)
    assert report.layers[0].std == pytest.approx(float(y.std(unbiased=False)), rel=1e-5)
    assert report.layers[1].zero_fraction == pytest.approx(float((r == 0).float().mean()))
    assert 0.3 < report.layers[1].zero_fraction < 0.7
    assert report.layers[0].zero_fraction == 0.0
    assert report.layers[0].saturated_fraction is None and report.layers[1].saturated_fraction is None


def test_gradients_match_autograd():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.randn(10, 6)
    target = torch.randn(10, 3)

    def loss_fn(out):
        return ((out - target) ** 2).mean()

    report = diagnose(model, x, loss_fn)
    h1 = model[0](x)
    h2 = model[1](h1)
    out = model[2](h2)
    loss = loss_fn(out)
    g1, g2, g3, w0, w2 = torch.autograd.grad(loss, [h1, h2, out, model[0].weight, model[2].weight])
    for row, g in zip(report.layers, (g1, g2, g3)):
        assert row.grad_norm == pytest.approx(float(g.norm()), rel=1e-5)
        assert row.grad_rms == pytest.approx(float(g.norm()) / math.sqrt(g.numel()), rel=1e-5)
    assert report.layers[0].weight_grad_norm == pytest.approx(float(w0.norm()), rel=1e-5)
    assert report.layers[2].weight_grad_norm == pytest.approx(float(w2.norm()), rel=1e-5)
    assert report.layers[1].weight_grad_norm is None
    assert report.loss == pytest.approx(loss.item(), rel=1e-6)


def test_gradient_before_an_inplace_activation_is_measured():
    torch.manual_seed(0)
    lin = nn.Linear(5, 7)
    model = nn.Sequential(lin, nn.ReLU(inplace=True), nn.Linear(7, 2))
    x = torch.randn(4, 5)
    report = diagnose(model, x, lambda out: out.sum())
    pre = lin(x)
    post = torch.relu(pre)
    (g_pre,) = torch.autograd.grad(model[2](post).sum(), [pre])
    assert report.layers[0].grad_norm == pytest.approx(float(g_pre.norm()), rel=1e-5)
    assert report.layers[1].zero_fraction > 0


def test_default_cotangent_has_unit_rms_at_the_output():
    torch.manual_seed(0)
    model = deep_mlp(nn.ReLU, he, depth=2, out=256)
    with torch.no_grad():
        model[-1].weight.mul_(1000.0)  # output scale must not matter
    report = diagnose(model, torch.randn(64, 64))
    assert report.layers[-1].grad_rms == pytest.approx(1.0, abs=0.05)


def test_saturation_fractions_follow_the_documented_thresholds():
    torch.manual_seed(0)
    lin = nn.Linear(1, 1)
    with torch.no_grad():
        lin.weight.fill_(1.0)
        lin.bias.zero_()
    x = torch.linspace(-6, 6, 1201).unsqueeze(1)
    model = nn.Sequential(lin, nn.Tanh())
    report = diagnose(model, x)
    expected = float((x.abs() > math.atanh(math.sqrt(0.95))).float().mean())
    assert report.layers[1].saturated_fraction == pytest.approx(expected, abs=2 / 1201)
    assert 0.55 < report.layers[1].saturated_fraction < 0.75

    sig = diagnose(nn.Sequential(lin, nn.Sigmoid()), x).layers[1].saturated_fraction
    y = torch.sigmoid(x)
    assert sig == pytest.approx(float((4 * y * (1 - y) < 0.05).float().mean()))
    ht = diagnose(nn.Sequential(lin, nn.Hardtanh(-2.0, 2.0)), x).layers[1].saturated_fraction
    h = nn.functional.hardtanh(x, -2.0, 2.0)
    assert ht == pytest.approx(float(((h <= -2) | (h >= 2)).float().mean()))
    r6 = diagnose(nn.Sequential(lin, nn.ReLU6()), x).layers[1].saturated_fraction
    r = nn.functional.relu6(x)
    assert r6 == pytest.approx(float(((r <= 0) | (r >= 6)).float().mean()))
    assert 0.45 < r6 < 0.55  # x never reaches 6 here: the lower bound only
    ti_tanh = diagnose(nn.Sequential(lin, tinn.Tanh()), x).layers[1].saturated_fraction
    assert ti_tanh == pytest.approx(report.layers[1].saturated_fraction)
    loose = diagnose(model, x, saturation=0.5).layers[1].saturated_fraction
    assert loose > report.layers[1].saturated_fraction


def test_no_gradients_left_behind_and_old_ones_restored():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    old = torch.full_like(model[0].weight, 7.0)
    model[0].weight.grad = old
    diagnose(model, torch.randn(4, 3))
    assert model[0].weight.grad is old and torch.all(old == 7.0)
    assert model[2].weight.grad is None and model[0].bias.grad is None


def test_tuple_dict_inputs_tuple_outputs_and_attention():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Linear(4, 4)
            self.g = nn.Linear(4, 4)

        def forward(self, a, b=None):
            return self.f(a), {"second": self.g(b)}

    r1 = diagnose(Two(), (torch.randn(2, 4), torch.randn(2, 4)))
    r2 = diagnose(Two(), {"a": torch.randn(2, 4), "b": torch.randn(2, 4)})
    for r in (r1, r2):
        assert [row.name for row in r.layers] == ["f", "g"]
        assert all(row.grad_norm is not None and row.grad_norm > 0 for row in r.layers)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.ff = nn.Linear(8, 8)

        def forward(self, x):
            return self.ff(self.attn(x, x, x, need_weights=False)[0])

    report = diagnose(Block(), torch.randn(2, 5, 8))
    assert [row.name for row in report.layers] == ["attn", "ff"]
    assert report.layers[0].depth_layer and report.layers[0].weight_grad_norm > 0  # from in_proj_weight
    assert report.layers[0].grad_norm > 0


def test_embedding_model_with_integer_inputs():
    model = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 20))
    report = diagnose(model, torch.randint(0, 20, (3, 6)),
                      lambda out: nn.functional.cross_entropy(out.flatten(0, 1), torch.zeros(18, dtype=torch.long)))
    assert report.layers[0].kind == "Embedding" and report.layers[0].weight_grad_norm > 0
    assert report.verdict in ("ok", "vanishing", "exploding")
    assert len(report.depth_layers()) == 3


# --------------------------------------------------------------------------------------------- errors

def test_clear_errors():
    model = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="diagnose: argument 'model'"):
        diagnose(lambda x: x, torch.randn(1, 2))
    with pytest.raises(ValueError, match="argument 'factor'"):
        diagnose(model, torch.randn(1, 2), factor=1.0)
    with pytest.raises(ValueError, match="argument 'saturation'"):
        diagnose(model, torch.randn(1, 2), saturation=1.5)
    with pytest.raises(ValueError, match="must return a scalar"):
        diagnose(model, torch.randn(3, 2), lambda out: out)
    with pytest.raises(TypeError, match="argument 'loss_fn'"):
        diagnose(model, torch.randn(3, 2), loss_fn=3)
    with pytest.raises(TypeError, match="compare_inits: argument 'schemes'"):
        compare_inits(lambda: model, "he", torch.randn(1, 2))
    with pytest.raises(ValueError, match="compare_inits: argument 'schemes' is empty"):
        compare_inits(lambda: model, [], torch.randn(1, 2))
    # hooks are removed even when the forward fails
    with pytest.raises(RuntimeError):
        diagnose(model, torch.randn(1, 3))
    assert not model._forward_hooks


# ------------------------------------------------------------------------------------ report and plots

def test_report_text_dict_and_plot(tmp_path):
    torch.manual_seed(0)
    report = diagnose(deep_mlp(nn.Tanh, normal(0.01), depth=5), torch.randn(16, 64), label="tiny")
    assert isinstance(report, DiagnosisReport)
    text = str(report)
    assert "verdict 'vanishing'" in text and "tiny" in text and text.count("\n") >= len(report.layers)
    json.dumps(report.to_dict())
    path = report.plot(tmp_path / "sub" / "diag.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_inits_overlays_schemes(tmp_path):
    def build():
        return deep_mlp(nn.ReLU, he, depth=8)

    reports = compare_inits(build, {"small": lambda m: [nn.init.normal_(p, 0, 0.01) for p in m.parameters()],
                                    "he": lambda m: [he(l.weight) for l in m if isinstance(l, nn.Linear)],
                                    "own": None},
                            torch.randn(32, 64), path=tmp_path / "cmp.png")
    assert list(reports) == ["small", "he", "own"]
    assert reports["small"].verdict == "vanishing" and reports["he"].verdict == "ok"
    assert all(r.label == k for k, r in reports.items())
    assert (tmp_path / "cmp.png").stat().st_size > 10_000


# ------------------------------------------------------- naming, score, plots, defaults (issue 13)

def test_the_default_backward_scalar_is_named_a_random_projection():
    torch.manual_seed(0)
    model, x = deep_mlp(nn.ReLU, he, depth=3), torch.randn(16, 64)
    plain = diagnose(model, x)
    assert plain.loss_kind == "random projection" and plain.to_dict()["loss_kind"] == "random projection"
    assert "random projection of the output" in str(plain) and "not a loss" in str(plain)
    target = torch.zeros(16, dtype=torch.long)
    with_loss = diagnose(model, x, lambda out: nn.functional.cross_entropy(out, target))
    assert with_loss.loss_kind == "loss" and f"loss {with_loss.loss:.4g}" in str(with_loss)
    assert "random projection" not in str(with_loss)


@pytest.mark.parametrize("std", [0.01, 0.05, 0.1, 0.15, 0.2, 0.3])
def test_score_is_the_signed_log_gain_behind_the_verdict(std):
    torch.manual_seed(0)
    report = diagnose(deep_mlp(nn.ReLU, normal(std), depth=10), torch.randn(64, 64), factor=10.0)
    gains = [g for g in (report.forward_gain, report.backward_gain) if g is not None]
    farther = max((math.log10(g) if g > 0 else -math.inf for g in gains), key=abs)
    assert report.score == pytest.approx(farther / math.log10(10.0))
    expected = "ok" if -1 <= report.score <= 1 else ("vanishing" if report.score < -1 else "exploding")
    assert report.verdict == expected
    assert f"score {report.score:+.2f}" in report.summary() and f"{report.score:+.2f}" in report.verdict_with_score()


def test_compare_inits_accepts_a_model_and_leaves_it_untouched():
    torch.manual_seed(0)
    model = deep_mlp(nn.Tanh, normal(0.01), depth=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reports = compare_inits(model, ["xavier_normal", "zeros"], torch.randn(8, 64))
    assert reports["xavier_normal"].verdict == "ok" and reports["zeros"].verdict == "vanishing"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(TypeError, match="function that builds a fresh model"):
        compare_inits(3, ["zeros"], torch.randn(8, 64))


def test_plot_without_a_path_writes_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    model, x = deep_mlp(nn.ReLU, he, depth=3), torch.randn(8, 64)
    assert diagnose(model, x).plot() == __import__("pathlib").Path("diagnose.png")
    assert diagnose(model, x, label="he init").plot().name == "diagnose-he_init.png"
    assert (tmp_path / "diagnose.png").stat().st_size > 5_000 and (tmp_path / "diagnose-he_init.png").is_file()


def test_plot_without_matplotlib_says_how_to_install_it(monkeypatch, tmp_path):
    torch.manual_seed(0)
    report = diagnose(deep_mlp(nn.ReLU, he, depth=3), torch.randn(8, 64))
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install torchinit\[plot\]"):
        report.plot(tmp_path / "x.png")


def test_plot_names_layers_labels_axes_styles_lines_and_keeps_the_head_out_of_the_scale(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    figures = []
    real_savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figures.append(self), real_savefig(self, *a, **k)))
    torch.manual_seed(0)
    model = deep_mlp(nn.ReLU, he, depth=4)
    with torch.no_grad():
        model[-1].weight.mul_(1e4)  # a head far above the trunk
    x = torch.randn(16, 64)
    reports = {"a": diagnose(model, x), "b": diagnose(model, x * 2)}
    __import__("torchinit").plot_reports(reports, tmp_path / "p.png", "t")
    (fig,) = figures
    ax_f, ax_b = fig.axes
    depth_names = [r.name for r in reports["a"].depth_layers()]
    assert [t.get_text() for t in ax_f.get_xticklabels()] == depth_names[:-1] + [depth_names[-1] + " (head)"]
    assert "std" in ax_f.get_ylabel() and "gradient" in ax_b.get_ylabel() and "depth" in ax_f.get_xlabel()
    styles = {(line.get_linestyle(), line.get_marker()) for line in ax_f.get_lines() if line.get_label() in
              {f"{k}: {r.verdict_with_score()}" for k, r in reports.items()}}
    assert len(styles) == 2  # one line style and marker per report
    head_std = reports["a"].depth_layers()[-1].std
    trunk_max = max(r.std for r in reports["b"].trunk())
    assert head_std > 100 * trunk_max and ax_f.get_ylim()[1] < head_std  # the head does not set the scale


def test_compare_inits_takes_presets_and_data_schemes_like_apply_init():
    """An uncalled preset (ti.init.zero_init_residual) is a scheme for apply_init, not a fn(model) to call;
    "lsuv" gets the diagnosis batch as its data."""
    import torchinit as ti
    import torchvision

    def build():
        torch.manual_seed(0)
        return torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=4)

    x = torch.randn(2, 3, 16, 16)
    assert len(ti.compare_inits(build, [ti.init.zero_init_residual, "he"], x, path=None)) == 2
    mlp = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    (lsuv_report,) = ti.compare_inits(mlp, ["LSUV"], torch.randn(64, 8), path=None).values()
    assert lsuv_report.verdict == "ok"
    # a preset that does not cover the model says so (before: "keyword options only", from calling it)
    with pytest.raises(ti.init.PresetError, match="torchinit.init.timm: Sequential has no 'pos_embed'"):
        ti.compare_inits(mlp, [ti.init.timm], torch.randn(4, 8), path=None)
