"""Models = a backbone + task heads, as Hugging Face splits them. Backbones return hidden states only.

    PretrainModel   backbone + its LM head (heads.py) + objectives: what pre-training trains
    MaskedLM        backbone + MLM head            (BertForMaskedLM)
    CausalLM        decoder + LM head              (LlamaForCausalLM)
    Seq2SeqLM       encoder-decoder + LM head      (BartForConditionalGeneration)
    Classifier, LastTokenClassifier, Seq2SeqClassifier   backbone + classification head

An objective owns what to predict (its collator) and how to score it (its loss); it scores with the
model's LM head (`PretrainModel.lm_head`). `language_model` gives a run's backbone and LM head as one
of the three LM classes, the one its kind's row (backbones/spec.py) names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .heads import LMHead, MLMHead, Seq2SeqLMHead

if TYPE_CHECKING:
    from .backbones.decoder import DecoderBackbone, KVCache
    from .backbones.seq2seq import Seq2SeqCache, Seq2SeqTransformer
    from .objectives import Objective


@dataclass
class PretrainOutput:
    loss: Tensor
    """Weighted sum of the objectives' losses (scalar)."""
    metrics: dict[str, Tensor]
    """Per-objective losses and accuracies (detached scalars)."""


class PretrainModel(nn.Module):
    """A backbone and its LM head, trained by one or more objectives, each with a weight.

    Each objective is an `objectives.Objective`. Those that score the plain encoder output share
    one forward pass; those that need their own (PLM's query stream, RTD's corrupted input, the
    encoder-decoder's corrupted source) set `uses_shared_forward = False` and run the backbone themselves.
    `lm_head` is None when no objective predicts tokens with it (e.g. nsp alone, rtd, the rnn's bilm).
    """

    def __init__(self, backbone: nn.Module, objectives: dict[str, Objective], weights: dict[str, float],
                 lm_head: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.lm_head = lm_head
        self.objectives = nn.ModuleDict(objectives)
        self.weights = dict(weights)

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        """Collator side (CPU, before the batch moves to the device): decide what to predict. `progress`: the share
        of the budget spent (objective.mask_rate_end); 1, the end, for validation."""
        for obj in self.objectives.values():
            batch = obj.prepare(batch, gen, progress)
        return batch

    def forward(self, batch: dict[str, Tensor]) -> PretrainOutput:
        shared = None
        if any(o.uses_shared_forward for o in self.objectives.values()):
            shared = self.backbone(batch["input_ids"], batch["mask"], batch.get("segment_ids"))
        total = 0.0
        metrics: dict[str, Tensor] = {}
        for name, obj in self.objectives.items():
            loss, m = obj.loss(self, shared, batch)
            total = total + self.weights[name] * loss
            metrics.update(m)
        return PretrainOutput(loss=total, metrics=metrics)


OLD_NAMES = (("objectives.mlm.head.", "lm_head."), ("objectives.clm.head.", "lm_head."),
             ("backbone.final_logits_bias", "lm_head.final_logits_bias"), ("objectives.clm.", "objectives.bilm."))
"""(old prefix, today's), the first that matches: where weights saved before the LM heads moved into the model
(f85dc63 and earlier) are now. The mlm and the decoder's clm objectives held their heads, the encoder-decoder held
its logits bias, and the rnn's forward + backward LM was objective clm (bilm now; the decoder's clm has no
weights of its own left)."""


def renamed_weights(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """A PretrainModel's saved weights under today's names (runs saved by an older pretrainlab still load)."""
    out = {}
    for key, t in weights.items():
        for old, new in OLD_NAMES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = t
    return out


# --------------------------------------------------------------------------- language models


class MaskedLM(nn.Module):
    """An encoder and its MLM head: (ids, mask[, segment ids]) -> logits (B, T, V), as BertForMaskedLM returns."""

    def __init__(self, backbone: nn.Module, head: MLMHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, ids: Tensor, mask: Tensor, segment_ids: Tensor | None = None) -> Tensor:
        return self.head(self.backbone(ids, mask, segment_ids).hidden)


class CausalLM(nn.Module):
    """A decoder and its LM head: (ids, mask, cache) -> logits (B, T, V), as LlamaForCausalLM returns."""

    def __init__(self, backbone: DecoderBackbone, head: LMHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, ids: Tensor, mask: Tensor | None = None, cache: KVCache | None = None,
                last_only: bool = False) -> Tensor:
        if mask is None:
            mask = torch.ones_like(ids)
        hidden = self.backbone(ids, mask, cache=cache).hidden
        if last_only:
            hidden = hidden[:, -1:]  # (B, 1, D): only the last position when sampling
        return self.head(hidden)


class Seq2SeqLM(nn.Module):
    """An encoder-decoder and its LM head: (ids, mask, decoder ids[, decoder mask, cache]) -> the decoder's logits
    (B, T, V), as BartForConditionalGeneration returns. With a cache (backbones.seq2seq.Seq2SeqCache) the
    encoder runs on the first call only and decoder_ids are the new tokens."""

    def __init__(self, backbone: Seq2SeqTransformer, head: Seq2SeqLMHead):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, ids: Tensor | None, mask: Tensor | None, decoder_ids: Tensor,
                decoder_mask: Tensor | None = None, cache: Seq2SeqCache | None = None,
                last_only: bool = False) -> Tensor:
        hidden = self.backbone(ids, mask, decoder_ids, decoder_mask, cache=cache).decoder_hidden
        if last_only:
            hidden = hidden[:, -1:]  # (B, 1, D): only the last position when sampling
        return self.head(hidden)


LANGUAGE_MODELS: dict[str, type[nn.Module]] = {"masked_lm": MaskedLM, "causal_lm": CausalLM, "seq2seq_lm": Seq2SeqLM}
"""A backbone kind's `lm` (backbones/spec.py) -> its language-model class."""


def language_model(kind: str, backbone: nn.Module, head: nn.Module | None) -> MaskedLM | CausalLM | Seq2SeqLM | None:
    """The backbone with its LM head as the kind's language-model class (None without a head)."""
    from .backbones.spec import BACKBONES

    return None if head is None else LANGUAGE_MODELS[BACKBONES[kind].lm](backbone, head)


@dataclass
class ClassifierOutput:
    logits: Tensor
    """(B, n_labels)."""
    loss: Tensor | None = None
    hidden: Tensor | None = None
    attentions: list[Tensor] | None = None


def pool(hidden: Tensor, mask: Tensor, how: str) -> Tensor:
    """(B, T, D) -> (B, D): the first token ([CLS]), the mean over real tokens, or the last real token."""
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        m = (mask != 0).unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
    if how == "last":  # the rightmost non-padding token, as LlamaForSequenceClassification finds it
        idx = torch.arange(mask.shape[1], device=mask.device)
        last = (idx * (mask != 0)).argmax(-1)  # (B,)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    raise ValueError(f"unknown pooling {how!r}; choose cls, mean or last")


MODERN_NORM_EPS = 1e-5  # ModernBertConfig.norm_eps, as the modern backbone's norms


class Classifier(nn.Module):
    """Backbone -> pooled representation -> dense+tanh pooler -> [LayerNorm] -> dropout -> linear.

    norm=False is BertForSequenceClassification's head (BERT's pooler). norm=True adds ModernBERT's
    LayerNorm (no bias) after the pooler, so that it maps 1:1 onto ModernBertForSequenceClassification
    (head.dense, head.norm, classifier with classifier_activation="tanh").
    """

    def __init__(self, backbone: nn.Module, n_labels: int, pooling: str = "cls", dropout: float = 0.1,
                 norm: bool = False):
        super().__init__()
        d = backbone.d_model
        self.backbone = backbone
        self.pooling = pooling
        self.pooler = nn.Linear(d, d)  # BERT's pooler: dense + tanh on the pooled token
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d, n_labels)
        nn.init.normal_(self.pooler.weight, std=0.02)
        nn.init.zeros_(self.pooler.bias)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.norm = nn.LayerNorm(d, eps=MODERN_NORM_EPS, bias=False) if norm else None

    def forward(self, input_ids: Tensor, mask: Tensor, segment_ids: Tensor | None = None,
                labels: Tensor | None = None, output_attentions: bool = False) -> ClassifierOutput:
        out = self.backbone(input_ids, mask, segment_ids, output_attentions=output_attentions)
        pooled = torch.tanh(self.pooler(pool(out.hidden, mask, self.pooling)))
        if self.norm is not None:
            pooled = self.norm(pooled)
        logits = self.head(self.dropout(pooled)).float()
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ClassifierOutput(logits=logits, loss=loss, hidden=out.hidden, attentions=out.attentions)


class LastTokenClassifier(nn.Module):
    """Decoder -> the last real token's state -> dropout -> linear, no bias (LlamaForSequenceClassification's
    and GPT2ForSequenceClassification's `score`).

    In a causal model only the last token has read the whole text; inputs are `[CLS] A [SEP]` (or
    `[CLS] A [SEP] B [SEP]`), so that is the [SEP] ending the text, as pre-training ended every text.
    Dropout is the fine-tuning regulariser only: Hugging Face's head has none, and in eval mode it is
    the identity, so the logits are theirs.
    """

    pooling = "last"

    def __init__(self, backbone: nn.Module, n_labels: int, dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.d_model, n_labels, bias=False)
        nn.init.normal_(self.head.weight, std=0.02)

    def forward(self, input_ids: Tensor, mask: Tensor, segment_ids: Tensor | None = None,
                labels: Tensor | None = None, output_attentions: bool = False) -> ClassifierOutput:
        out = self.backbone(input_ids, mask, segment_ids, output_attentions=output_attentions)
        logits = self.head(self.dropout(pool(out.hidden, mask, "last"))).float()
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ClassifierOutput(logits=logits, loss=loss, hidden=out.hidden, attentions=out.attentions)


class Seq2SeqClassifier(nn.Module):
    """Encoder-decoder -> the decoder's state at the last end-of-sequence token -> dropout -> dense+tanh ->
    dropout -> linear: BartForSequenceClassification.

    The encoder reads the text; the decoder reads the same text shifted right behind its start token
    (backbone.decoder_start: BART's shift_tokens_right starts from end-of-sequence = [SEP], T5's from [PAD]), so
    its state at the last [SEP] has read the whole text on both sides. `pooler` and `head` are BART's
    classification_head.dense and out_proj (T5ForSequenceClassification's are the same). There are no segment
    ids (BART has none).
    """

    pooling = "eos"

    def __init__(self, backbone: nn.Module, n_labels: int, dropout: float, eos_id: int):
        super().__init__()
        d = backbone.d_model
        self.backbone, self.eos_id = backbone, eos_id
        self.pooler = nn.Linear(d, d)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d, n_labels)
        for m in (self.pooler, self.head):  # BART's init_std 0.02
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, input_ids: Tensor, mask: Tensor, segment_ids: Tensor | None = None,
                labels: Tensor | None = None, output_attentions: bool = False,
                inputs_embeds: Tensor | None = None) -> ClassifierOutput:
        """inputs_embeds: (B, T, D) the text's token embeddings, given instead of looked up (integrated gradients
        interpolates them): the encoder reads them, the decoder reads them shifted right behind its start token,
        so one embedding per token feeds both sides, as tok_emb(input_ids) does."""
        from .backbones.seq2seq import shift_right

        B, T = input_ids.shape
        is_eos = (input_ids == self.eos_id) & (mask != 0)
        if not bool(is_eos.any(1).all()):
            raise ValueError("every input of an encoder-decoder classifier needs its end-of-sequence token [SEP] "
                             "(the tokenizer adds it: encode with data.encoding.encode)")
        last = torch.where(is_eos, torch.arange(T, device=input_ids.device), -1).argmax(1)  # (B,) the last [SEP]
        decoder_ids = shift_right(input_ids, self.backbone.decoder_start(self.eos_id), self.backbone.pad_id)
        decoder_embeds = None
        if inputs_embeds is not None:  # shift_right in embedding space: [start, e_0 ... e_{T-2}]
            start = self.backbone.get_input_embeddings()(decoder_ids[:, :1])  # (B, 1, D)
            decoder_embeds = torch.cat((start, inputs_embeds[:, :-1]), dim=1)
        hidden = self.backbone(input_ids, mask, decoder_ids, inputs_embeds=inputs_embeds,
                               decoder_inputs_embeds=decoder_embeds).decoder_hidden  # (B, T, D)
        pooled = torch.tanh(self.pooler(self.dropout(hidden[torch.arange(B, device=hidden.device), last])))
        logits = self.head(self.dropout(pooled)).float()
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ClassifierOutput(logits=logits, loss=loss, hidden=hidden)


def build_classifier(backbone: nn.Module, n_labels: int, pooling: str, head: str, dropout: float,
                     eos_id: int | None = None) -> nn.Module:
    """head: bert (dense+tanh pooler, as BertForSequenceClassification), modern (+ LayerNorm, as ModernBERT),
    decoder (the last token's state -> linear, as LlamaForSequenceClassification; `pooling` is unused)
    or bart (the decoder's last [SEP] state, as BartForSequenceClassification: needs eos_id; no pooling choice)."""
    if head == "bert":
        return Classifier(backbone, n_labels, pooling, dropout)
    elif head == "modern":
        return Classifier(backbone, n_labels, pooling, dropout, norm=True)
    elif head == "decoder":
        return LastTokenClassifier(backbone, n_labels, dropout)
    elif head == "bart":
        if eos_id is None:
            raise ValueError("the bart classifier head needs eos_id (the tokenizer's [SEP])")
        return Seq2SeqClassifier(backbone, n_labels, dropout, eos_id)
    raise ValueError(f"unknown classifier head {head!r}; choose bert, modern, decoder or bart")


def head_kind(model_cfg) -> str:
    """The classifier head and input convention a backbone gets (its row in backbones/spec.py): modern for the
    modern transformer style, decoder for the decoder (last-token pooling, no segment ids), bart for the
    encoder-decoder (no segment ids either), else bert."""
    from .backbones.spec import BACKBONES

    return BACKBONES[model_cfg.backbone].head(model_cfg.style)
