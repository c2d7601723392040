"""Objectives: each is a collator (`prepare`: what to predict) + a loss (`loss`), scoring with the model's LM head
(models.PretrainModel.lm_head) or a head of its own.

    mlm  masked language modelling (BERT)               shared forward
    nsp  next-sentence prediction (BERT), pair batches  shared forward
    sop  sentence-order prediction (ALBERT), pairs      shared forward
    plm  permutation language modelling (XLNet)         own two-stream forward (transformer only)
    rtd  replaced-token detection (ELECTRA)             own generator + discriminator forwards
    clm  next-token prediction (GPT), objectives/clm    shared forward (decoder)
    bilm forward + backward LM (ELMo), objectives/elmo  shared forward (rnn: needs directional states)
    infill   text infilling (BART)                      own forward (encoder-decoder only)
    permute  sentence permutation (BART), + infill      own forward (encoder-decoder only)
    span     span corruption (T5)                       own forward (encoder-decoder only)
    hybrid   masked next-token + causal LM (GPT-BERT)   own forward, some rows causal (transformer only)

`Objective` is the contract every objective module keeps. Each objective's row in spec.py says which
backbones it trains (and why not the others), what it cannot share a run with and what the corpus must
hold; its module's `build(ctx)` makes it from its own settings. `build_objectives` is the loop over the
rows, refusing (as config does) a combination the backbone cannot express before any work starts.
Importing this package imports no torch (config reads spec.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError
from .spec import OBJECTIVES, refusal, renamed

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from ..tokenizer import SpecialIds


class Objective(Protocol):
    """What `models.PretrainModel` and the pre-training recipe rely on; every objective module has it."""

    name: str
    """The key in objective.weights (spec.OBJECTIVES), or infill+permute (BART's two corruptions as one)."""
    uses_shared_forward: bool
    """True: `loss` scores the backbone's output on the batch, run once for all such objectives.
    False: `loss` runs the backbone itself (PLM's query stream, RTD's corrupted input)."""
    reads: str
    """What batches it needs: rows (packed documents), pairs (sentence pairs of its own kind, data.pairs) or
    sentences (packed rows with the tokens that begin a sentence marked)."""
    word_start_table: Tensor | None
    """(vocab,) bool, True for tokens that begin a word; the recipe sets it on every objective for whole-word masking
    (objective.whole_word), and the objectives that mask tokens read it (spec.py: the rows listing whole_word)."""

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        """Collator side (CPU): add what to predict (masked ids, positions, labels) to the batch. `progress`: the
        share of the budget spent (0 to 1), for what changes over the run (objective.mask_rate_end); validation
        batches are prepared at 1, the end."""
        ...

    def loss(self, model: nn.Module, out, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """(scalar loss, detached metrics). `model` is the models.PretrainModel (its backbone, its lm_head); `out`
        is the shared forward's output, or None when no objective of the model uses it."""
        ...


@dataclass
class BuildContext:
    """What an objective's `build(ctx)` reads: plain values, its settings, and what it shares with the model."""

    backbone: nn.Module
    kind: str
    """model.backbone (backbones/spec.py)."""
    vocab_size: int
    special: SpecialIds
    settings: Mapping[str, Any]
    """The objective section's values by name (config.ObjectiveConfig's fields); each objective reads its own."""
    on: frozenset[str]
    """The objectives with weight > 0 (permute reads whether infill is among them)."""
    embedding: nn.Embedding
    """The vocabulary projection of the LM heads (and PLM's): the token embedding when tied, else one of its own."""
    make_backbone: Callable[..., nn.Module] | None = None
    """make_backbone(d_model=..., n_heads=..., d_ff=...): a backbone like the main one at another size (rtd)."""
    lm_head: nn.Module | None = field(default=None, init=False)

    def model_lm_head(self) -> nn.Module:
        """The model's LM head, made the first time an objective that scores with it is built (so parameters are
        drawn in the order the objectives are listed)."""
        if self.lm_head is None:
            from ..backbones.spec import BACKBONES
            from ..heads import build_lm_head

            self.lm_head = build_lm_head(BACKBONES[self.kind].lm, self.backbone, self.vocab_size, self.embedding)
        return self.lm_head


def build_objectives(weights: dict[str, float], *, backbone: nn.Module, backbone_kind: str, vocab_size: int,
                     special: SpecialIds, settings: Mapping[str, Any] | None = None,
                     make_backbone: Callable[..., nn.Module] | None = None,
                     ) -> tuple[dict[str, nn.Module], nn.Module | None]:
    """Plain values in -> ({name: objective module (an `Objective`)} for the objectives with weight > 0, the
    model's LM head or None when no objective scores with it).

    settings: the objective section's values (ObjectiveConfig's fields; those missing keep their defaults).
    settings["tie_embeddings"]: the vocabulary projection of the LM head (and PLM's) is the input embedding
    (else one of its own, shared by those heads). The encoder-decoder's is always its token embedding, and
    RTD's generator always shares the discriminator's.
    """
    import dataclasses

    from torch import nn

    from ..backbones.spec import BACKBONES
    from ..config import ObjectiveConfig

    settings = {**dataclasses.asdict(ObjectiveConfig()), **(settings or {})}
    unknown = [name for name in weights if name not in OBJECTIVES]
    if unknown:
        raise ConfigError(f"objective {unknown[0]!r} is not available; choose {', '.join(OBJECTIVES)}")
    why = refusal(backbone_kind, weights)  # what a config load refuses, for callers that skip it
    if why:
        raise ConfigError(why)
    embedding = backbone.get_input_embeddings()
    if not settings["tie_embeddings"] and BACKBONES[backbone_kind].lm != "seq2seq_lm":
        embedding = nn.Embedding(vocab_size, backbone.d_model)  # the output projection's own, initialised as the input's
        nn.init.normal_(embedding.weight, std=0.02)
    weights, _ = renamed(weights, backbone_kind)  # an old name (clm on an rnn) as what it stands for (config notes it)
    on = frozenset(name for name, w in weights.items() if w > 0)
    ctx = BuildContext(backbone, backbone_kind, vocab_size, special, settings, on, embedding, make_backbone)
    objs: dict[str, nn.Module] = {}
    for name in weights:
        if name in on:
            objs.update(OBJECTIVES[name].builder()(ctx))
    if not objs:
        raise ConfigError("every objective weight is 0; give at least one a positive weight")
    return objs, ctx.lm_head


def span_sentinel_ids(vocab_size: int, n: int) -> list[int]:
    """The ids of <extra_id_0>, <extra_id_1>, ...: the last n of the vocabulary, counting down from the
    top as T5's do (tokenizer.with_sentinels adds them so)."""
    return [vocab_size - 1 - i for i in range(n)]
