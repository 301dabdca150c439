"""torch.nn.init-style in-place functions: ``<scheme>_(tensor, ..., generator=None)``.

They use torch's fan formula for a bare tensor (``(out, in, *kernel)``; :func:`variance_scaling_` takes
``in_axis``/``out_axis`` for other layouts); :func:`~torchinit.init.apply_init` knows the real fans of
each layer type. Values are drawn in fp32 from ``generator`` (or torch's global RNG) and cast.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import torch
from torch import nn

from .fans import tensor_fans
from .fill import Stream, materialize
from .schemes import Ctx, Scheme, plan_action, resolve_scheme

__all__ = [
    "zeros_", "ones_", "constant_", "normal_", "uniform_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
    "glorot_uniform_", "glorot_normal_", "kaiming_uniform_", "kaiming_normal_", "he_uniform_", "he_normal_",
    "lecun_uniform_", "lecun_normal_", "variance_scaling_", "orthogonal_", "delta_orthogonal_", "dirac_", "eye_",
    "identity_", "sparse_", "torch_default_", "prior_prob_", "prior_prob", "scheme",
]


class InitDtypeError(NotImplementedError, TypeError):
    """A random scheme on a tensor that is not floating point (torch.nn.init raises NotImplementedError)."""


def _apply(tensor: torch.Tensor, name: str, kwargs: dict[str, Any], generator: torch.Generator | None,
           fans: tuple[int, int] | None = None) -> torch.Tensor:
    fn = f"torchinit.init.{name}_"
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{fn}: tensor must be a torch.Tensor, got {type(tensor).__name__}")
    sdef, kw = resolve_scheme(name, kwargs, fn)
    if tensor.numel() == 0:  # as torch.nn.init: nothing to write (torch warns for the kaiming ones)
        warnings.warn(f"{fn}: Initializing zero-element tensors is a no-op", UserWarning, stacklevel=3)
        return tensor
    shape = tuple(tensor.shape)
    if fans is None and tensor.dim() >= 2:
        fans = tensor_fans(shape)
    fi, fo = fans if fans is not None else (None, None)
    groups = kwargs.get("groups") or 1
    action = plan_action(sdef, kw, Ctx(fn, shape, fi, fo, None, groups if isinstance(groups, int) else 1))
    if action.random and not (tensor.is_floating_point() or tensor.is_complex()):
        raise InitDtypeError(f"{fn}: tensor has dtype {tensor.dtype}; {name} draws random values and needs a "
                             "floating-point tensor")
    if tensor.device.type == "meta":
        return tensor
    value = materialize(action, shape, tensor.dtype, tensor.device, Stream(None, generator))
    with torch.no_grad():
        tensor.copy_(value)
    return tensor


def zeros_(tensor: torch.Tensor) -> torch.Tensor:
    """Fill with 0."""
    return _apply(tensor, "zeros", {}, None)


def ones_(tensor: torch.Tensor) -> torch.Tensor:
    """Fill with 1."""
    return _apply(tensor, "ones", {}, None)


def constant_(tensor: torch.Tensor, val: float) -> torch.Tensor:
    """Fill with ``val``."""
    return _apply(tensor, "constant", {"val": val}, None)


def normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill with draws of N(mean, std^2)."""
    return _apply(tensor, "normal", {"mean": mean, "std": std}, generator)


def uniform_(tensor: torch.Tensor, a: float = 0.0, b: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill with draws of U(a, b)."""
    return _apply(tensor, "uniform", {"a": a, "b": b}, generator)


def trunc_normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  units: str = "abs", generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill with N(mean, std^2) truncated to [a, b].

    ``units="abs"`` (torch's semantics): ``a`` and ``b`` are values, so with ``std=0.02`` the default
    ``[-2, 2]`` truncates nothing. ``units="std"``: the bounds are ``mean + a*std`` and ``mean + b*std``.
    Sampled in one pass by the inverse CDF in fp32 (standard-normal units), exact in bf16 and at tiny std.
    """
    return _apply(tensor, "trunc_normal", {"mean": mean, "std": std, "a": a, "b": b, "units": units}, generator)


def xavier_uniform_(tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot & Bengio (2010): U(-b, b), ``b = gain * sqrt(6 / (fan_in + fan_out))``."""
    return _apply(tensor, "xavier_uniform", {"gain": gain}, generator)


def xavier_normal_(tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot & Bengio (2010): N(0, std^2), ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    return _apply(tensor, "xavier_normal", {"gain": gain}, generator)


glorot_uniform_ = xavier_uniform_  # the same distribution in JAX/Keras and torch


def glorot_normal_(tensor: torch.Tensor, in_axis: int = 1, out_axis: int = 0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """JAX/Keras ``glorot_normal``: variance ``2 / (fan_in + fan_out)`` from a normal truncated at +-2 sigma
    (std divided by 0.8796..., so the variance is kept). Not torch's :func:`xavier_normal_`, which is
    untruncated. Fans as :func:`variance_scaling_` (``in_axis=-2, out_axis=-1`` for JAX's layout)."""
    return variance_scaling_(tensor, 1.0, "fan_avg", "truncated_normal", in_axis, out_axis, generator)


def kaiming_uniform_(tensor: torch.Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: Any = "leaky_relu",
                     generator: torch.Generator | None = None, gain: float | None = None) -> torch.Tensor:
    """He et al. (2015): U(-b, b), ``b = gain * sqrt(3 / fan)``, ``fan`` per ``mode`` (fan_in, fan_out,
    fan_avg); ``gain = calculate_gain(nonlinearity, a)`` unless ``gain`` is given."""
    return _apply(tensor, "kaiming_uniform", {"a": a, "mode": mode, "nonlinearity": nonlinearity, "gain": gain}, generator)


def kaiming_normal_(tensor: torch.Tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: Any = "leaky_relu",
                    generator: torch.Generator | None = None, gain: float | None = None) -> torch.Tensor:
    """He et al. (2015): N(0, std^2), ``std = gain / sqrt(fan)``; see :func:`kaiming_uniform_`."""
    return _apply(tensor, "kaiming_normal", {"a": a, "mode": mode, "nonlinearity": nonlinearity, "gain": gain}, generator)


he_uniform_ = kaiming_uniform_  # JAX's he_uniform is torch's default kaiming_uniform (bound sqrt(6 / fan_in))


def he_normal_(tensor: torch.Tensor, in_axis: int = 1, out_axis: int = 0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """JAX/Keras ``he_normal``: variance ``2 / fan_in`` from a normal truncated at +-2 sigma (variance kept).
    Not torch's :func:`kaiming_normal_`, which is untruncated."""
    return variance_scaling_(tensor, 2.0, "fan_in", "truncated_normal", in_axis, out_axis, generator)


def lecun_uniform_(tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """LeCun et al. (1998), as Keras/JAX: U(-b, b), ``b = gain * sqrt(3 / fan_in)``."""
    return _apply(tensor, "lecun_uniform", {"gain": gain}, generator)


def lecun_normal_(tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """LeCun normal as Keras/JAX define it: variance ``gain^2 / fan_in`` from a normal truncated at +-2 sigma
    (std corrected by 0.8796...). The init self-normalising (SELU) networks need."""
    return _apply(tensor, "lecun_normal", {"gain": gain}, generator)


def variance_scaling_(tensor: torch.Tensor, scale: float = 1.0, mode: str = "fan_in",
                      distribution: str = "truncated_normal", in_axis: int = 1, out_axis: int = 0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Keras/Flax ``VarianceScaling``: variance ``scale / n``, ``n`` = fan_in, fan_out, their mean
    (``"fan_avg"``) or their geometric mean (``"fan_geo_avg"``, JAX).

    ``distribution``: ``"truncated_normal"`` (normal truncated at +-2 std, std divided by
    0.87962566103423978, the std of a unit normal truncated there, so the variance is exactly as asked),
    ``"normal"`` (untruncated) or ``"uniform"`` (``U(-sqrt(3 scale/n), sqrt(3 scale/n))``). Fans:
    ``shape[in_axis] * receptive`` and ``shape[out_axis] * receptive``, receptive = the product of the
    other dimensions; the defaults fit torch's ``(out, in, *k)`` layout, ``in_axis=-2, out_axis=-1``
    fits JAX's ``(*k, in, out)``.
    """
    shape = tuple(tensor.shape)
    if len(shape) < 2:
        raise ValueError(f"torchinit.init.variance_scaling_: needs at least 2 dimensions, got shape {shape}")
    ia, oa = in_axis % len(shape), out_axis % len(shape)
    if ia == oa:
        raise ValueError("torchinit.init.variance_scaling_: in_axis and out_axis must differ")
    rf = math.prod(s for i, s in enumerate(shape) if i not in (ia, oa))
    fans = (shape[ia] * rf, shape[oa] * rf)
    return _apply(tensor, "variance_scaling", {"scale": scale, "mode": mode, "distribution": distribution},
                  generator, fans)


def orthogonal_(tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Saxe et al. (2014): a (semi-)orthogonal matrix over ``(shape[0], prod(shape[1:]))``, times ``gain``
    (QR of a Gaussian matrix with the sign of R's diagonal fixed, float64)."""
    return _apply(tensor, "orthogonal", {"gain": gain}, generator)


def delta_orthogonal_(tensor: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Xiao et al. (2018), as JAX's ``delta_orthogonal``: zero everywhere but the tap ``(k - 1) // 2`` of
    each kernel dimension, which holds an orthogonal ``(out, in)`` matrix times ``gain``; an isometry when
    ``in <= out``. That tap makes the convolution the identity-like isometry under ``padding="same"`` in torch
    and JAX (both pad ``(k - 1) // 2`` on the left), even kernels included (:func:`dirac_` uses torch's
    ``k // 2``)."""
    return _apply(tensor, "delta_orthogonal", {"gain": gain}, generator)


def dirac_(tensor: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """The identity convolution: 1 at the kernel centre of channel ``d -> d`` in each of ``groups`` groups."""
    return _apply(tensor, "dirac", {"groups": groups}, None)


def eye_(tensor: torch.Tensor) -> torch.Tensor:
    """The identity matrix (2-D tensors)."""
    return _apply(tensor, "eye", {}, None)


def identity_(tensor: torch.Tensor) -> torch.Tensor:
    """:func:`eye_` for 2-D tensors, :func:`dirac_` for convolution weights."""
    return _apply(tensor, "identity", {}, None)


def sparse_(tensor: torch.Tensor, sparsity: float, std: float = 0.01, generator: torch.Generator | None = None) -> torch.Tensor:
    """Martens (2010): N(0, std^2) with ``ceil(sparsity * rows)`` zeros in each column. Unlike torch's,
    the zero pattern comes from ``generator`` too, so the result is reproducible from it."""
    return _apply(tensor, "sparse", {"sparsity": sparsity, "std": std}, generator)


def prior_prob_(tensor: torch.Tensor, prob: float = 0.01) -> torch.Tensor:
    """Fill with ``-log((1 - prob) / prob)``: a sigmoid/softmax output starts at probability ``prob``
    (Lin et al. 2017, RetinaNet's classification bias)."""
    return _apply(tensor, "prior_prob", {"prob": prob}, None)


def prior_prob(prob: float = 0.01) -> Scheme:
    """The prior-probability bias as a scheme for rules: ``Rule(names="*.bias", scheme=prior_prob(0.01))``."""
    return Scheme("prior_prob", prob=prob)


def scheme(name: str, **kwargs: Any) -> Scheme:
    """A scheme with bound arguments for rules, e.g. ``scheme("normal", std=0.02)``."""
    resolve_scheme(name, kwargs, "torchinit.init.scheme")
    return Scheme(name, **kwargs)


def torch_default_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Re-run ``module.reset_parameters()`` (the layer's own default init), seeded from ``generator`` if given."""
    reset = getattr(module, "reset_parameters", None)
    if reset is None:
        raise TypeError(f"torchinit.init.torch_default_: {type(module).__name__} has no reset_parameters()")
    if generator is None:
        reset()
        return module
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    devices = [p.device for p in module.parameters() if p.device.type == "cuda"]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        reset()
    return module


def _tag(f: Callable[..., Any], scheme_name: str) -> None:
    f._torchinit_scheme = scheme_name  # type: ignore[attr-defined]  # apply_init(model, f) uses the scheme


for _f, _name in [(zeros_, "zeros"), (ones_, "ones"), (constant_, "constant"), (normal_, "normal"), (uniform_, "uniform"),
                  (trunc_normal_, "trunc_normal"), (xavier_uniform_, "xavier_uniform"), (xavier_normal_, "xavier_normal"),
                  (kaiming_uniform_, "kaiming_uniform"), (kaiming_normal_, "kaiming_normal"),
                  (lecun_uniform_, "lecun_uniform"), (lecun_normal_, "lecun_normal"), (orthogonal_, "orthogonal"),
                  (glorot_normal_, "glorot_normal"), (he_normal_, "he_normal"),
                  (delta_orthogonal_, "delta_orthogonal"), (dirac_, "dirac"), (eye_, "eye"), (identity_, "identity"),
                  (sparse_, "sparse"), (prior_prob_, "prior_prob")]:
    _tag(_f, _name)
