"""A small decoder-only transformer with a SwiGLU feed-forward, initialised by the gpt2 preset.

The model (token + position embeddings, pre-norm blocks of causal attention and a SwiGLU MLP, a tied-free
head) is built twice: with torch's default init and with ``torchinit.init.gpt2(n_layers=n_layers)`` (N(0, 0.02^2)
everywhere, the residual output projections ``out_proj`` and ``down_proj`` scaled by 1/sqrt(2 n_layers),
LayerNorm 1/0). ``torchinit.compare_inits`` probes both on a batch of random tokens under the next-token
loss and overlays them (``transformer_inits.png``); then the gpt2-initialised model takes a few AdamW
steps on a repeating token pattern and its loss is printed.

Reading the verdict here: ``diagnose`` measures each layer's own output, and in a residual network the
branch projections (``out_proj``, ``down_proj``) are small next to the residual stream by design (the
gpt2 preset scales them down), so a "vanishing" forward gain from the embedding to the last projection
says that the branches start small, not that the stream fades; the backward gain, measured at the same
layers, is the one to watch.

SwiGLU is ``torchinit.fused.swiglu`` when that module is present, else ``torchinit.functional.silu(gate) * up``.

Run:  python examples/transformer_swiglu_gpt2.py [--quick] [--out DIR]
      (--quick, or TORCHINIT_EXAMPLE_QUICK=1: 2 blocks and 3 steps instead of 4 blocks and 20 steps)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

import torchinit.functional as TF
from torchinit.diagnose import compare_inits
from torchinit.init import apply_init, gpt2

try:
    from torchinit.fused import swiglu as _swiglu
    SWIGLU = "torchinit.fused.swiglu"
except ImportError:  # the fused ops are optional
    _swiglu = None
    SWIGLU = "torchinit.functional.silu(gate) * up"


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, by the fused op when available."""
    return _swiglu(gate, up) if _swiglu is not None else TF.silu(gate) * up


class SwiGLU(nn.Module):
    """The feed-forward ``down_proj(silu(gate_proj(x)) * up_proj(x))`` (Shazeer 2020)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))


class Attention(nn.Module):
    """Causal multi-head self-attention with one fused qkv projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = SwiGLU(dim, 8 * dim // 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """Token and position embeddings, ``n_layers`` blocks, a final LayerNorm and a linear head."""

    def __init__(self, vocab: int = 64, dim: int = 64, heads: int = 4, n_layers: int = 4, context: int = 32) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; returns 0."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 blocks, 3 steps (also TORCHINIT_EXAMPLE_QUICK=1)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="folder for the plot")
    p.add_argument("--seed", type=int, default=0)
    ns = p.parse_args(argv)
    quick = ns.quick or os.environ.get("TORCHINIT_EXAMPLE_QUICK", "") not in ("", "0")
    n_layers, steps = (2, 3) if quick else (4, 20)
    t0 = time.perf_counter()
    print(f"SwiGLU computed by {SWIGLU}")

    vocab, context = 64, 32
    gen = torch.Generator().manual_seed(ns.seed)
    tokens = torch.randint(0, vocab, (8, context + 1), generator=gen)
    x, y = tokens[:, :-1], tokens[:, 1:]

    def loss_fn(logits: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))

    def build() -> TinyGPT:
        torch.manual_seed(ns.seed)
        return TinyGPT(vocab=vocab, n_layers=n_layers, context=context)

    reports = compare_inits(build, {"torch default": None, f"gpt2({n_layers})": gpt2(n_layers=n_layers)}, x, loss_fn,
                            path=Path(ns.out) / "transformer_inits.png", seed=ns.seed,
                            title=f"TinyGPT, {n_layers} SwiGLU blocks: torch default vs the gpt2 preset")
    for rep in reports.values():
        print(rep.summary())
        first = rep.first_layer()
        print(f"  loss at init {rep.loss:.4f} (uniform guess: {torch.log(torch.tensor(float(vocab))):.4f}); "
              f"first layer ({first.name}) weight-gradient norm {first.weight_grad_norm:.3e}")

    model = build()
    report = apply_init(model, gpt2(n_layers=n_layers), seed=ns.seed)
    down = report[f"blocks.{n_layers - 1}.mlp.down_proj.weight"]
    print(f"gpt2 preset: {len(report)} parameters; down_proj std {down.std:.5f} (0.02 / sqrt(2 x {n_layers}))")
    # a learnable sequence: every row repeats the same 8-token pattern
    pattern = torch.randint(0, vocab, (8,), generator=gen).repeat(context // 8 + 1)[: context + 1]
    seq = pattern.expand(8, -1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = nn.functional.cross_entropy(model(seq[:, :-1]).reshape(-1, vocab), seq[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    print(f"{steps} AdamW steps on a repeating pattern: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    print(f"plot: {Path(ns.out) / 'transformer_inits.png'}; {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
