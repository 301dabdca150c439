"""Fans per layer type (against hand-derived counts), and what each parameter of each layer gets."""

import math

import pytest
import torch
from torch import nn

import torchinit.init as ti
from torchinit.init.fans import param_info


def info(module, name):
    return param_info(module, "", name, getattr(module, name))


@pytest.mark.parametrize("layer,fan_in,fan_out", [
    (nn.Linear(7, 5), 7, 5),
    (nn.Bilinear(3, 4, 6), 12, 24),
    (nn.Conv1d(4, 6, 5), 20, 30),
    (nn.Conv2d(4, 6, 3), 36, 54),
    (nn.Conv3d(2, 4, (1, 2, 3)), 12, 24),
    (nn.Conv2d(8, 16, 3, groups=4), 18, 36),     # torch says fan_out 144 (over-counts by groups)
    (nn.Conv2d(8, 8, 3, groups=8), 9, 9),         # depthwise
    (nn.ConvTranspose2d(4, 6, 3), 36, 54),        # weight (in, out, k): torch swaps these
    (nn.ConvTranspose1d(8, 6, 4, groups=2), 16, 12),
    (nn.Embedding(100, 16), 1, 1),
])
def test_fans(layer, fan_in, fan_out):
    i = info(layer, "weight")
    assert (i.fan_in, i.fan_out) == (fan_in, fan_out)


def test_conv_transpose_fans_count_real_connections():
    # fan_in = number of products summed into one output element (stride 1, interior element)
    ct = nn.ConvTranspose2d(3, 5, 3, bias=False)
    with torch.no_grad():
        ct.weight.fill_(1.0)
    y = ct(torch.ones(1, 3, 8, 8)).detach()
    assert float(y[0, 0, 4, 4]) == info(ct, "weight").fan_in
    conv = nn.Conv2d(6, 8, 3, groups=2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    assert float(conv(torch.ones(1, 6, 5, 5)).detach()[0, 0, 2, 2]) == info(conv, "weight").fan_in
    # fan_out = how many outputs one input element reaches (gradient of the sum of outputs)
    x = torch.zeros(1, 6, 7, 7, requires_grad=True)
    conv(x).sum().backward()
    assert float(x.grad[0, 0, 3, 3]) == info(conv, "weight").fan_out


def test_mha_packed_in_proj_is_three_matrices():
    mha = nn.MultiheadAttention(8, 2)
    i = info(mha, "in_proj_weight")
    assert [(b.rows.start, b.rows.stop, b.fan_in, b.fan_out) for b in i.blocks] == [(0, 8, 8, 8), (8, 16, 8, 8), (16, 24, 8, 8)]
    ti.apply_init(mha, "xavier_uniform", seed=0)
    bound = math.sqrt(6 / 16)  # per 8x8 block; torch's xavier on the packed (24, 8) matrix would use 6/32
    assert float(mha.in_proj_weight.detach().abs().max()) <= bound
    assert float(mha.in_proj_weight.detach().abs().max()) > math.sqrt(6 / 32)
    assert (mha.in_proj_bias == 0).all() and (mha.out_proj.bias == 0).all()


@pytest.mark.parametrize("cls,gates", [(nn.LSTM, 4), (nn.GRU, 3), (nn.RNN, 1)])
def test_rnn_gates_and_orthogonal_recurrent(cls, gates):
    rnn = cls(5, 7, num_layers=2, bidirectional=True)
    rep = ti.apply_init(rnn, "xavier_uniform", seed=0)
    for name, p in rnn.named_parameters():
        if name.startswith("weight_hh"):
            assert rep[name].scheme == "orthogonal (per gate)"
            for g in range(gates):
                blk = p.detach()[g * 7:(g + 1) * 7].double()
                assert torch.allclose(blk @ blk.t(), torch.eye(7, dtype=torch.float64), atol=1e-5)
        elif name.startswith("weight_ih"):
            i = param_info(rnn, "", name, p)
            assert len(i.blocks) == gates and i.blocks[0].fan_out == 7
            assert i.blocks[0].fan_in == (5 if name.endswith("l0") or name.endswith("l0_reverse") else 14)
        else:
            assert (p == 0).all()


def test_lstm_projection():
    lstm = nn.LSTM(4, 8, proj_size=3)
    assert info(lstm, "weight_hr_l0").fan_in == 8 and info(lstm, "weight_hr_l0").fan_out == 3
    ti.apply_init(lstm, "kaiming_normal", seed=1)
    w = lstm.weight_hh_l0.detach().double()  # (32, 3): per gate (8, 3) with orthonormal columns
    for g in range(4):
        blk = w[g * 8:(g + 1) * 8]
        assert torch.allclose(blk.t() @ blk, torch.eye(3, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize("norm", [nn.BatchNorm1d(6), nn.LayerNorm(6), nn.GroupNorm(2, 6), nn.InstanceNorm1d(6, affine=True), nn.RMSNorm(6)])
def test_norm_layers_weight_one_bias_zero(norm):
    with torch.no_grad():
        for p in norm.parameters():
            p.uniform_(2, 3)
    ti.apply_init(norm, "kaiming_normal", seed=0)
    assert (norm.weight == 1).all()
    if getattr(norm, "bias", None) is not None:
        assert (norm.bias == 0).all()


def test_bilinear_and_embedding_statistics():
    bil = nn.Bilinear(10, 20, 30)
    emb = nn.Embedding(2000, 64)
    ti.apply_init(nn.ModuleList([bil, emb]), "kaiming_normal", seed=0, nonlinearity="linear")
    assert abs(float(bil.weight.detach().std()) * math.sqrt(200) - 1) < 0.05
    assert abs(float(emb.weight.detach().std()) - 1) < 0.02
