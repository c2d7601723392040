"""Objectives: each is a collator (`prepare`: what to predict) + a head + a loss (`loss`).

`build_objectives` is the one explicit factory; it rejects combinations a backbone cannot
express before any work starts.
"""

from __future__ import annotations

from torch import nn

from ..config import ConfigError
from ..tokenizer import SpecialIds


def build_objectives(weights: dict[str, float], *, backbone: nn.Module, backbone_kind: str, vocab_size: int,
                     special: SpecialIds, mask_rate: float = 0.15, whole_word: bool = False, plm_k: int = 6,
                     rtd_generator_fraction: float = 0.25, rtd_weight: float = 50.0,
                     make_backbone=None) -> dict[str, nn.Module]:
    """Plain values in, {name: objective module} out (only objectives with weight > 0)."""
    objs: dict[str, nn.Module] = {}
    d = backbone.d_model
    emb = backbone.get_input_embeddings()
    for name, w in weights.items():
        if w == 0:
            continue
        if name == "mlm":
            from .mlm import MLM

            objs[name] = MLM(d, vocab_size, emb, special.all, special.mask, mask_rate, whole_word)
        else:
            raise ConfigError(f"objective {name!r} is not available yet; choose mlm")
    if not objs:
        raise ConfigError("every objective weight is 0; give at least one a positive weight")
    return objs
