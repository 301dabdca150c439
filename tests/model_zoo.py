"""The networks users have, built from small configs with random weights (no downloads, no network).

Hugging Face ``transformers`` models (GPT2, BERT, Llama, Mistral, Qwen2, Gemma, T5 gated-gelu, ViT, Phi-3)
and ``timm`` models (resnet50, convnext_tiny, vit_small, efficientnet_b0, mobilenetv3_small_100). Each
entry gives a builder and an example input, so every test that needs "a real model" uses the same ones:

>>> model, inputs = build("llama")          # model in eval mode, seeded; inputs: a dict of kwargs
>>> out = model(**inputs)
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")

_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=128,
             max_position_embeddings=64)


def _tokens(vocab: int = 128, batch: int = 2, length: int = 8) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))


def _image(size: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


def _gpt2():
    cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=128, n_positions=64,
                                 bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg), {"input_ids": _tokens()}


def _bert():
    cfg = transformers.BertConfig(**_TINY)
    return transformers.BertModel(cfg), {"input_ids": _tokens()}


def _llama():
    cfg = transformers.LlamaConfig(**_TINY, num_key_value_heads=2)
    return transformers.LlamaForCausalLM(cfg), {"input_ids": _tokens()}


def _mistral():
    cfg = transformers.MistralConfig(**_TINY, num_key_value_heads=2)
    return transformers.MistralForCausalLM(cfg), {"input_ids": _tokens()}


def _qwen2():
    cfg = transformers.Qwen2Config(**_TINY, num_key_value_heads=2)
    return transformers.Qwen2ForCausalLM(cfg), {"input_ids": _tokens()}


def _gemma():
    cfg = transformers.GemmaConfig(**_TINY, num_key_value_heads=2, head_dim=8)
    return transformers.GemmaForCausalLM(cfg), {"input_ids": _tokens()}


def _phi3():
    cfg = transformers.Phi3Config(**_TINY, num_key_value_heads=4, pad_token_id=0,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.Phi3ForCausalLM(cfg), {"input_ids": _tokens()}


def _t5():
    cfg = transformers.T5Config(vocab_size=128, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                feed_forward_proj="gated-gelu", decoder_start_token_id=0)
    ids = _tokens()
    return transformers.T5ForConditionalGeneration(cfg), {"input_ids": ids, "decoder_input_ids": ids}


def _vit():
    cfg = transformers.ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 image_size=32, patch_size=8)
    return transformers.ViTModel(cfg), {"pixel_values": _image(32)}


def _timm(name: str, size: int, **kwargs):
    def builder():
        return timm.create_model(name, pretrained=False, **kwargs), {"x": _image(size)}
    return builder


#: name -> builder returning (model, keyword inputs)
HF: dict[str, Callable] = {
    "gpt2": _gpt2, "bert": _bert, "llama": _llama, "mistral": _mistral, "qwen2": _qwen2, "gemma": _gemma,
    "phi3": _phi3, "t5": _t5, "vit": _vit,
}
TIMM: dict[str, Callable] = {
    "resnet50": _timm("resnet50", 64),
    "convnext_tiny": _timm("convnext_tiny", 64),
    "vit_small": _timm("vit_small_patch16_224", 32, img_size=32, patch_size=16, depth=2),
    "efficientnet_b0": _timm("efficientnet_b0", 64),
    "mobilenetv3_small_100": _timm("mobilenetv3_small_100", 64),
}
MODELS: dict[str, Callable] = {**HF, **TIMM}

#: the HF models whose MLP is gated (act(gate(x)) * up(x), or a packed gate_up_proj): fuse must fuse them
GATED = {"llama", "mistral", "qwen2", "gemma", "phi3", "t5"}


def build(name: str, seed: int = 0):
    """``(model, inputs)`` for ``name``: the model seeded and in eval mode, ``inputs`` keyword arguments."""
    torch.manual_seed(seed)
    model, inputs = MODELS[name]()
    return model.eval(), inputs


def output_tensor(out) -> torch.Tensor:
    """The main output tensor of a model call (logits, last_hidden_state, or the tensor itself)."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("logits", "last_hidden_state"):
        value = getattr(out, key, None)
        if value is not None:
            return value
    return out[0]
