"""Objectives: each is a collator (`prepare`: what to predict) + a loss (`loss`), scoring with the model's LM head
(models.PretrainModel.lm_head) or a head of its own.

    mlm  masked language modelling (BERT)               shared forward
    nsp  next-sentence prediction (BERT), pair batches  shared forward
    sop  sentence-order prediction (ALBERT), pairs      shared forward
    plm  permutation language modelling (XLNet)         own two-stream forward (transformer only)
    rtd  replaced-token detection (ELECTRA)             own generator + discriminator forwards
    clm  next-token prediction (GPT), objectives/clm    shared forward (decoder)
         forward + backward LM (ELMo), objectives/elmo  shared forward (rnn: needs directional states)
    infill   text infilling (BART)                      own forward (encoder-decoder only)
    permute  sentence permutation (BART), + infill      own forward (encoder-decoder only)
    span     span corruption (T5)                       own forward (encoder-decoder only)

`Objective` is the contract every objective module keeps; `build_objectives` is the one explicit
factory; it rejects combinations a backbone cannot express before any work starts.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from ..backbones.spec import BACKBONES
from ..config import SEQ2SEQ_OBJECTIVES, ConfigError, check_objectives_fit
from ..heads import build_lm_head
from ..tokenizer import SpecialIds
from .mlm import MaskRate


class Objective(Protocol):
    """What `models.PretrainModel` and the pre-training recipe rely on; every objective module has it."""

    name: str
    """The key in objective.weights: mlm, nsp, sop, plm, rtd or clm."""
    uses_shared_forward: bool
    """True: `loss` scores the backbone's output on the batch, run once for all such objectives.
    False: `loss` runs the backbone itself (PLM's query stream, RTD's corrupted input)."""
    word_start_table: Tensor | None
    """(vocab,) bool, True for tokens that begin a word; the recipe sets it for whole-word masking
    (objective.whole_word), and only mlm reads it."""

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        """Collator side (CPU): add what to predict (masked ids, positions, labels) to the batch. `progress`: the
        share of the budget spent (0 to 1), for what changes over the run (objective.mask_rate_end); validation
        batches are prepared at 1, the end."""
        ...

    def loss(self, model: nn.Module, out, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """(scalar loss, detached metrics). `model` is the models.PretrainModel (its backbone, its lm_head); `out`
        is the shared forward's output, or None when no objective of the model uses it."""
        ...


def build_objectives(weights: dict[str, float], *, backbone: nn.Module, backbone_kind: str, vocab_size: int,
                     special: SpecialIds, mask_rate: float = 0.15, mask_rate_end: float = 0.0, whole_word: bool = False,
                     plm_k: int = 6, rtd_generator_fraction: float = 0.25, rtd_weight: float = 50.0,
                     tie_embeddings: bool = True, make_backbone=None, infill_mask_ratio: float = 0.3,
                     infill_poisson_lambda: float = 3.0, span_noise_density: float = 0.15, span_mean_length: float = 3.0,
                     span_sentinels: int = 100) -> tuple[dict[str, nn.Module], nn.Module | None]:
    """Plain values in -> ({name: objective module (an `Objective`)} for the objectives with weight > 0, the
    model's LM head or None when no objective scores with it).

    tie_embeddings: the vocabulary projection of the LM head (and PLM's) is the input embedding (else one of
    its own, shared by those heads). RTD's generator always shares the discriminator's embedding.

    make_backbone(d_model=..., n_heads=..., d_ff=...) builds a backbone like the main one at
    another size; rtd builds its generator with it.

    The encoder-decoder's objectives (`seq2seq_objectives`) take the infill_* and span_* values.
    """
    on = {name for name, w in weights.items() if w > 0}
    if backbone_kind == "decoder":  # what a config load refuses, for callers that skip it
        check_objectives_fit(backbone_kind, weights)
    if backbone_kind == "encoder-decoder" or on & set(SEQ2SEQ_OBJECTIVES):
        objs = seq2seq_objectives(on, backbone_kind=backbone_kind, vocab_size=vocab_size, special=special,
                                  infill_mask_ratio=infill_mask_ratio, infill_poisson_lambda=infill_poisson_lambda,
                                  span_noise_density=span_noise_density, span_mean_length=span_mean_length,
                                  span_sentinels=span_sentinels)
        return objs, build_lm_head(BACKBONES[backbone_kind].lm, backbone, vocab_size, backbone.get_input_embeddings())
    if "plm" in on and not hasattr(backbone, "forward_two_stream"):
        raise ConfigError(
            f"objective plm needs two-stream attention (a query stream that sees a token's position but not "
            f"its content, under permutation masks), which the {backbone_kind} backbone cannot express; use "
            f"model.backbone=transformer for plm, or mlm, nsp, sop or rtd with {backbone_kind}"
        )
    if "clm" in on and backbone_kind != "decoder" and not hasattr(backbone, "directional_states"):
        why = {"transformer": "every position attends to both sides",
               "cnn": "every kernel reads both sides of its token"}.get(backbone_kind, "it is not directional")
        raise ConfigError(
            f"objective clm (ELMo: a forward and a backward language model) needs states that have seen only one "
            f"side of each token, which the {backbone_kind} backbone does not have ({why}, so its state at t has "
            f"already read token t+1); use model.backbone=rnn for clm, or mlm, nsp, sop or rtd with {backbone_kind}"
        )
    if {"nsp", "sop"} <= on:
        raise ConfigError("objectives nsp and sop both classify the sentence pair but need different pairs "
                          "(random vs swapped second segments); keep one of them in objective.weights")
    if {"rtd", "mlm"} <= on:
        raise ConfigError(
            "objective rtd already trains an MLM generator; adding mlm would also train the discriminator "
            "(the backbone you keep) on [MASK]ed input, which ELECTRA does not do. Drop mlm from "
            "objective.weights (the generator's MLM loss is part of rtd's loss)"
        )
    if "rtd" in on and not 0 < rtd_generator_fraction <= 1:
        raise ConfigError(f"objective.rtd_generator_fraction={rtd_generator_fraction} must be in (0, 1]: the generator's "
                          "hidden size as a share of the discriminator's (ELECTRA: 0.25 to 0.5)")
    if "rtd" in on and make_backbone is None:
        raise ValueError("objective rtd needs make_backbone(d_model=..., n_heads=..., d_ff=...) to build its generator")
    objs: dict[str, nn.Module] = {}
    rate = MaskRate(mask_rate, mask_rate_end or mask_rate)  # mlm's and rtd's, from start to end of the budget
    lm_head = None  # made when the first objective that scores with it is built (the order parameters are drawn in)
    d = backbone.d_model
    emb = backbone.get_input_embeddings()
    rtd_emb = emb
    if not tie_embeddings:  # the output projection gets its own matrix, initialised like the input's
        emb = nn.Embedding(vocab_size, d)
        nn.init.normal_(emb.weight, std=0.02)
    for name, w in weights.items():
        if w == 0:
            continue
        if name == "mlm":
            from .mlm import MLM

            lm_head = lm_head or build_lm_head(BACKBONES[backbone_kind].lm, backbone, vocab_size, emb)
            objs[name] = MLM(vocab_size, special.all, special.mask, rate, whole_word)
        elif name == "nsp":
            from .nsp import NSP

            objs[name] = NSP(d)
        elif name == "sop":
            from .nsp import SOP

            objs[name] = SOP(d)
        elif name == "plm":
            from .plm import PLM

            objs[name] = PLM(d, vocab_size, emb, special.all, special.mask, plm_k)
        elif name == "rtd":
            from .rtd import RTD, generator_size

            d_gen, heads, d_ff = generator_size(d, getattr(backbone, "n_heads", None),
                                                getattr(backbone, "d_ff", 4 * d), rtd_generator_fraction)
            generator = make_backbone(d_model=d_gen, n_heads=heads, d_ff=d_ff)
            objs[name] = RTD(d, vocab_size, rtd_emb, generator, special.all, special.mask, rate, rtd_weight)
        elif name == "clm" and backbone_kind == "decoder":
            from .clm import CLM

            lm_head = lm_head or build_lm_head(BACKBONES[backbone_kind].lm, backbone, vocab_size, emb)
            objs[name] = CLM()
        elif name == "clm":
            from .elmo import ELMo

            objs[name] = ELMo(d, vocab_size, emb)
        else:
            raise ConfigError(f"objective {name!r} is not available yet; choose mlm, nsp, sop, plm, rtd or clm")
    if not objs:
        raise ConfigError("every objective weight is 0; give at least one a positive weight")
    return objs, lm_head


def span_sentinel_ids(vocab_size: int, n: int) -> list[int]:
    """The ids of <extra_id_0>, <extra_id_1>, ...: the last n of the vocabulary, counting down from the
    top as T5's do (tokenizer.with_sentinels adds them so)."""
    return [vocab_size - 1 - i for i in range(n)]


def seq2seq_objectives(on: set[str], *, backbone_kind: str, vocab_size: int, special: SpecialIds,
                       infill_mask_ratio: float = 0.3, infill_poisson_lambda: float = 3.0,
                       span_noise_density: float = 0.15, span_mean_length: float = 3.0,
                       span_sentinels: int = 100) -> dict[str, nn.Module]:
    """The encoder-decoder's one objective: infill, permute, span, or infill+permute (BART's two corruptions
    in one, weight 1). Sources and targets are [CLS] ... [SEP] (BART's <s> ... </s>); the decoder starts
    from [SEP] (BART's decoder_start_token_id is its </s>)."""
    from .infill import Infill
    from .permute import Permute
    from .span import SpanCorruption

    if backbone_kind != "encoder-decoder" or not on or not on <= set(SEQ2SEQ_OBJECTIVES) or ("span" in on and len(on) > 1):
        raise ConfigError(f"objectives {', '.join(sorted(on)) or '(none)'} do not fit the {backbone_kind} backbone: the "
                          "encoder-decoder takes one of infill, permute, span, or infill and permute together, and "
                          "those need the encoder-decoder (config.RunConfig explains each case)")
    ids = dict(bos_id=special.cls, eos_id=special.sep, pad_id=special.pad, decoder_start_id=special.sep)
    infill = Infill(mask_id=special.mask, mask_ratio=infill_mask_ratio, poisson_lambda=infill_poisson_lambda, **ids)
    if on == {"infill"}:
        objective: nn.Module = infill
    elif "permute" in on:
        objective = Permute(**ids, infill=infill if "infill" in on else None)
    else:
        objective = SpanCorruption(sentinels=span_sentinel_ids(vocab_size, span_sentinels), eos_id=special.sep,
                                   pad_id=special.pad, decoder_start_id=special.sep,
                                   noise_density=span_noise_density, mean_span=span_mean_length)
    return {objective.name: objective}
