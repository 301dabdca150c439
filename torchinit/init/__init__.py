"""Weight initialisation: ``apply_init`` with rules, every classic scheme, activation-aware gains,
counter-based reproducible sampling, presets and data-dependent inits.

Modules, each with one job: ``fans`` (fans and roles per layer type) -> ``gain`` (torch's table and
Gauss-Hermite gains) and ``autogain`` (which activation acts on a layer) -> ``philox``/``sampling``
(counter-based RNG, torch and Triton) -> ``actions`` (the value kinds: how each is checked, made, written
in place and reported) -> ``fill`` (write an action) -> ``data`` (LSUV, ZCA, data init) -> ``schemes``
(the registry, data-dependent schemes included) -> ``rules`` (matching) -> ``presets`` -> ``normalize``
(apply_init's argument as rules) -> ``apply`` (plan, validate, sample, commit) -> ``report``; ``roles``
(residual projections, norms and their reset, residual blocks, across libraries), ``functions`` (the
torch.nn.init-style API), ``errors``. Each imports only modules before it.
"""

from .apply import InitError, apply_init
from .data import DataInitReport, LSUVReport, data_init, lsuv, zca_
from .functions import (
    constant_, delta_orthogonal_, dirac_, eye_, glorot_normal_, glorot_uniform_, he_normal_, he_uniform_,
    identity_, kaiming_normal_, kaiming_uniform_, lecun_normal_, lecun_uniform_, normal_, ones_, orthogonal_,
    prior_prob, prior_prob_, scheme, sparse_, torch_default_, trunc_normal_, uniform_, variance_scaling_,
    xavier_normal_, xavier_uniform_, zeros_,
)
from .gain import calculate_gain, variance_preserving_gain
from .presets import Preset, PresetError, fixup, gpt2, is_preset, timm, vit_jax, zero_init_residual
from .report import InitReport
from .roles import (
    RESIDUAL_PROJECTIONS, is_norm_layer, norm_identity_weight, register_residual_projection,
    residual_projection_patterns,
)
from .rules import Rule
from .schemes import Scheme, scheme_names

__all__ = [
    "apply_init", "InitError", "InitReport", "Rule", "Scheme", "scheme", "scheme_names",
    "calculate_gain", "variance_preserving_gain",
    "zeros_", "ones_", "constant_", "normal_", "uniform_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
    "glorot_uniform_", "glorot_normal_", "kaiming_uniform_", "kaiming_normal_", "he_uniform_", "he_normal_",
    "lecun_uniform_", "lecun_normal_", "variance_scaling_", "orthogonal_", "delta_orthogonal_", "dirac_", "eye_",
    "identity_", "sparse_", "torch_default_", "prior_prob_", "prior_prob",
    "gpt2", "vit_jax", "timm", "zero_init_residual", "fixup", "Preset", "PresetError", "is_preset",
    "RESIDUAL_PROJECTIONS", "register_residual_projection", "residual_projection_patterns", "is_norm_layer",
    "norm_identity_weight",
    "lsuv", "LSUVReport", "zca_", "data_init", "DataInitReport",
]
