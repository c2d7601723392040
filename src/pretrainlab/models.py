"""Models = a backbone + task heads. Backbones return hidden states only; heads live here
and in objectives/."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class PretrainOutput:
    loss: Tensor
    """Weighted sum of the objectives' losses (scalar)."""
    metrics: dict[str, Tensor]
    """Per-objective losses and accuracies (detached scalars)."""


class PretrainModel(nn.Module):
    """A backbone trained by one or more objectives, each with a weight.

    Objectives that score the plain encoder output share one forward pass; those that need
    their own (PLM's query stream, RTD's corrupted input) set `uses_shared_forward = False`
    and run the backbone themselves.
    """

    def __init__(self, backbone: nn.Module, objectives: dict[str, nn.Module], weights: dict[str, float]):
        super().__init__()
        self.backbone = backbone
        self.objectives = nn.ModuleDict(objectives)
        self.weights = dict(weights)

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator) -> dict[str, Tensor]:
        """Collator side (CPU, before the batch moves to the device): decide what to predict."""
        for obj in self.objectives.values():
            batch = obj.prepare(batch, gen)
        return batch

    def forward(self, batch: dict[str, Tensor]) -> PretrainOutput:
        shared = None
        if any(getattr(o, "uses_shared_forward", True) for o in self.objectives.values()):
            shared = self.backbone(batch["input_ids"], batch["mask"], batch.get("segment_ids"))
        total = 0.0
        metrics: dict[str, Tensor] = {}
        for name, obj in self.objectives.items():
            loss, m = obj.loss(self.backbone, shared, batch)
            total = total + self.weights[name] * loss
            metrics.update(m)
        return PretrainOutput(loss=total, metrics=metrics)


@dataclass
class ClassifierOutput:
    logits: Tensor
    """(B, n_labels)."""
    loss: Tensor | None = None
    hidden: Tensor | None = None
    attentions: list[Tensor] | None = None


def pool(hidden: Tensor, mask: Tensor, how: str) -> Tensor:
    """(B, T, D) -> (B, D): the first token ([CLS]) or the mean over real tokens."""
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        m = (mask != 0).unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
    raise ValueError(f"unknown pooling {how!r}; choose cls or mean")


class Classifier(nn.Module):
    """Backbone -> pooled representation -> (bert: dense+tanh pooler) -> dropout -> linear."""

    def __init__(self, backbone: nn.Module, n_labels: int, pooling: str = "cls", dropout: float = 0.1):
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

    def forward(self, input_ids: Tensor, mask: Tensor, segment_ids: Tensor | None = None,
                labels: Tensor | None = None, output_attentions: bool = False) -> ClassifierOutput:
        out = self.backbone(input_ids, mask, segment_ids, output_attentions=output_attentions)
        pooled = torch.tanh(self.pooler(pool(out.hidden, mask, self.pooling)))
        logits = self.head(self.dropout(pooled)).float()
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ClassifierOutput(logits=logits, loss=loss, hidden=out.hidden, attentions=out.attentions)
