"""Data-dependent inits: LSUV (30-layer GELU MLP, torchvision ResNet-18), ZCA whitening, weight-norm data init."""

import pytest
import torch
from torch import nn

import torchinit.init as ti


def test_lsuv_30_layer_gelu_mlp():
    layers = []
    for _ in range(30):
        layers += [nn.Linear(64, 64), nn.GELU()]
    net = nn.Sequential(*layers)
    x = torch.randn(256, 64, generator=torch.Generator().manual_seed(0)) * 3 + 1
    rep = ti.lsuv(net, x, tol=0.05, seed=0)
    assert len(rep.layers) == 30 and rep.converged
    outs = []
    with torch.no_grad():
        h = x
        for m in net:
            h = m(h)
            if isinstance(m, nn.Linear):
                outs.append(float(h.var()))
    assert all(abs(v - 1) < 0.05 for v in outs), outs
    assert "var before" in str(rep)
    # without LSUV the same net drifts (the gain alone cannot hold GELU's unstable fixed point)
    ti.apply_init(net, "auto", seed=0)
    with torch.no_grad():
        h = x
        for m in net:
            h = m(h)
    assert not 0.5 < float(h.var()) < 2


def test_lsuv_resnet18():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    net.train()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rep = ti.lsuv(net, x, tol=0.1, max_iter=10, generator=torch.Generator().manual_seed(0))
    assert len(rep.layers) == 21  # 20 convolutions (3 downsample) + fc
    assert rep.converged, str(rep)
    assert net.training and net.layer1[0].bn1.training  # mode restored
    assert (net.bn1.running_mean == 0).all()  # eval mode: running stats untouched


def test_zca_whitens_patches():
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(3, 3, generator=gen)
    img = torch.einsum("ij,njhw->nihw", mix, torch.randn(16, 3, 12, 12, generator=gen)) + 0.5
    conv = nn.Conv2d(3, 27, 3)
    ti.zca_(conv, img, eps=1e-4)
    y = conv(img).detach().permute(0, 2, 3, 1).reshape(-1, 27).double()
    cov = torch.cov(y.t())
    assert torch.allclose(cov, torch.eye(27, dtype=torch.float64), atol=2e-3)
    assert float(y.mean(0).abs().max()) < 1e-4
    lin = nn.Linear(5, 3)
    data = torch.randn(1000, 5, generator=gen) @ torch.randn(5, 5, generator=gen)
    ti.zca_(lin, data, eps=0.0)
    z = lin(data).detach().double()
    assert torch.allclose(torch.cov(z.t()), torch.eye(3, dtype=torch.float64), atol=1e-6)
    with pytest.raises(TypeError, match="zca_: expected an nn.Linear"):
        ti.zca_(nn.LSTM(3, 3), data)


def test_data_init_unit_scale_zero_mean():
    gen = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 5))
    x = torch.randn(64, 3, 8, 8, generator=gen) * 4 + 2
    rep = ti.data_init(net, x, init_scale=1.0)
    with torch.no_grad():
        h = net[0](x)
        assert torch.allclose(h.mean((0, 2, 3)), torch.zeros(8), atol=1e-4)
        assert torch.allclose(h.std((0, 2, 3)), torch.ones(8), atol=1e-3)
        o = net(x)
        assert torch.allclose(o.mean(0), torch.zeros(5), atol=1e-4)
        assert torch.allclose(o.std(0), torch.ones(5), atol=1e-3)
    assert [r.name for r in rep.layers] == ["0", "3"]


def test_data_init_weight_norm():
    from torch.nn.utils.parametrizations import weight_norm

    lin = weight_norm(nn.Linear(6, 4))
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0)) * 5
    ti.data_init(lin, x, init_scale=0.5)
    with torch.no_grad():
        y = lin(x)
    assert torch.allclose(y.std(0), torch.full((4,), 0.5), atol=1e-3)
    assert torch.allclose(y.mean(0), torch.zeros(4), atol=1e-4)
