"""A torchvision ResNet moved onto torchinit: swap_activations, apply_init with rules, one training step.

1. ``resnet18`` as torchvision builds it (ReLU, torch's own init) is probed with ``torchinit.diagnose``;
2. its ReLUs become torchinit SiLUs (``swap_activations``), its weights are re-initialised by rules
   (convolutions ``auto``: the gain of the activation feeding each one, fan_out as in torchvision;
   BatchNorm 1/0; the classifier N(0, 0.01^2); the last BatchNorm of each residual branch zero, from
   the ``zero_init_residual`` preset), and it is probed again;
3. one SGD step on a random batch, with the loss before and after it.

Both reports are printed and plotted together (``resnet_before_after.png`` in ``--out``).

Run:  python examples/torchvision_swap_init.py [--quick] [--out DIR]
      (--quick, or TORCHINIT_EXAMPLE_QUICK=1: a batch of 4 32x32 images instead of 8 64x64)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
import torchvision
from torch import nn

import torchinit as ti
from torchinit.diagnose import diagnose, plot_reports
from torchinit.init import Rule, Scheme, apply_init, zero_init_residual
from torchinit.swap import swap_activations


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="4 images of 32x32 (also TORCHINIT_EXAMPLE_QUICK=1)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="folder for the plot")
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args(argv)
    quick = ns.quick or os.environ.get("TORCHINIT_EXAMPLE_QUICK", "") not in ("", "0")
    side = 32 if quick else 64
    t0 = time.perf_counter()

    torch.manual_seed(ns.seed)
    model = torchvision.models.resnet18(weights=None, num_classes=10)
    gen = torch.Generator().manual_seed(ns.seed)
    batch = 4 if quick else 8
    x = torch.randn(batch, 3, side, side, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)

    def loss_fn(out: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out, y)

    before = diagnose(model, x, loss_fn, label="torchvision: ReLU, torch init")
    print(before, end="\n\n")

    swapped = swap_activations(model, {nn.ReLU: "silu"})
    print(swapped, end="\n\n")
    rules = [
        Rule(layers=nn.Conv2d, scheme=Scheme("auto", mode="fan_out")),
        Rule(layers=nn.BatchNorm2d, scheme="ones"),
        Rule(layers=nn.Linear, scheme=Scheme("normal", std=0.01)),
        zero_init_residual,  # a preset: it reads the model when apply_init runs
    ]
    init_report = apply_init(model, rules, seed=ns.seed)
    for row in list(init_report)[:6]:  # the full table: print(init_report)
        print(f"  {row.name:<24} {row.scheme:<8} gain {row.gain if row.gain is not None else '-':<8.4} "
              f"activation {row.activation or '-':<8} std {row.std:.4g}")
    print(f"  ... {len(init_report)} parameters initialised, {len(init_report.untouched)} untouched\n")
    after = diagnose(model, x, loss_fn, label="torchinit: SiLU, rules + zero_init_residual")
    print(after, end="\n\n")

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    loss = loss_fn(model(x))
    loss_before = loss.item()
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        loss_after = float(loss_fn(model(x)))
    print(f"one SGD step on the batch: loss {loss_before:.4f} -> {loss_after:.4f}")

    path = plot_reports({"before": before, "after": after}, Path(ns.out) / "resnet_before_after.png",
                        f"resnet18 on {side}x{side}: before and after swap + re-init")
    print(f"verdict before: {before.verdict}; after: {after.verdict}; plot: {path}")
    print(f"activations now: {sorted({type(m).__module__ + '.' + type(m).__name__ for m in model.modules() if isinstance(m, nn.SiLU)})}"
          f"; torchinit {ti.__version__}; {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
