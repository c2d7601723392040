"""Next-sentence prediction (BERT) and sentence-order prediction (ALBERT).

The collator is the pair source, `data.pairs.PairLoader`: it builds `[CLS] A [SEP] B [SEP]` and
the labels (0 = B continues A in order, 1 = B is random (nsp) / A and B are swapped (sop)).
The head scores the [CLS] hidden state as BERT does: pooler (dense -> tanh) -> linear(2). Its
parameter names follow BertForPreTraining (`bert.pooler.dense`, `cls.seq_relationship`) and
ALBERT's (`albert.pooler`, `sop_classifier.classifier`), so an export maps them one to one.
Both score the shared forward pass; with MLM on, that pass sees the masked pair, as in BERT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PairHead(nn.Module):
    """[CLS] hidden (B, D) -> dense -> tanh -> linear -> (B, 2) logits."""

    def __init__(self, d_model: int):
        super().__init__()
        self.pooler = nn.Linear(d_model, d_model)
        self.seq_relationship = nn.Linear(d_model, 2)
        for m in (self.pooler, self.seq_relationship):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, cls_hidden: Tensor) -> Tensor:
        return self.seq_relationship(torch.tanh(self.pooler(cls_hidden)))


class NSP(nn.Module):
    """Binary classification of a sentence pair from its [CLS] token; labels come with the batch."""

    name = "nsp"
    uses_shared_forward = True
    reads = "pairs"  # data.pairs.PairLoader(kind=name): random second segments (nsp), swapped ones (sop)
    word_start_table: Tensor | None = None  # unused: it masks no tokens (objective.whole_word)

    def __init__(self, d_model: int):
        super().__init__()
        self.head = PairHead(d_model)

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        if f"{self.name}_labels" not in batch:
            raise ValueError(f"objective {self.name} needs sentence-pair batches with {self.name}_labels "
                             f"(data.pairs.PairLoader(kind={self.name!r})); got keys {sorted(batch)}")
        return batch

    def loss(self, model: nn.Module, out, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.head(out.hidden[:, 0]).float()  # (B, 2) from [CLS]
        labels = batch[f"{self.name}_labels"]
        loss = F.cross_entropy(logits, labels)
        acc = (logits.argmax(-1) == labels).float().mean()
        return loss, {f"{self.name}_loss": loss.detach(), f"{self.name}_acc": acc.detach()}


class SOP(NSP):
    """Sentence-order prediction: the same head on pairs of consecutive segments, half of them swapped."""

    name = "sop"


def build_nsp(ctx) -> dict[str, nn.Module]:
    return {"nsp": NSP(ctx.backbone.d_model)}


def build_sop(ctx) -> dict[str, nn.Module]:
    return {"sop": SOP(ctx.backbone.d_model)}
