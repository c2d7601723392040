"""The soft-label loss: T^2 KL(teacher || student) + alpha CE on gold labels [+ a hidden-state MSE].

    loss = distill_loss(student_logits, teacher_logits, labels, temperature=2.0, alpha=0.5)
    step_loss = soft_label_step_loss(2.0, 0.5, "mean")     # what loop.fit calls on a DistillModel
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from ..models import Classifier, pool

NO_LABEL = -100
"""The label of an unlabelled text (it gets the KL term only)."""


@dataclass
class DistillLoss:
    total: Tensor
    """Mean over the batch of T^2 KL + alpha CE (labelled texts) + hidden_weight MSE."""
    kl: Tensor
    """Mean T^2-scaled KL(teacher || student) per text."""
    ce: Tensor
    """Mean cross-entropy per labelled text (0 when the batch has none)."""
    hidden: Tensor | None = None


def distill_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, temperature: float, alpha: float,
                 projected: Tensor | None = None, teacher_pooled: Tensor | None = None,
                 hidden_weight: float = 0.0) -> DistillLoss:
    """Per text: T^2 KL(softmax(t / T) || softmax(s / T)) + alpha CE(s, y) where it has a label (y >= 0)
    [+ hidden_weight mean((projected - teacher_pooled)^2)]; the batch mean of that sum."""
    T = temperature
    log_s = F.log_softmax(student_logits.float() / T, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / T, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(-1) * T * T  # (B,)
    labelled = labels >= 0
    ce = F.cross_entropy(student_logits.float(), labels.clamp_min(0), reduction="none") * labelled  # (B,)
    per_text = kl + alpha * ce
    hidden = None
    if projected is not None and teacher_pooled is not None:
        hidden = ((projected.float() - teacher_pooled.float()) ** 2).mean(-1)  # (B,)
        per_text = per_text + hidden_weight * hidden
        hidden = hidden.mean()
    return DistillLoss(per_text.mean(), kl.mean(), ce.sum() / labelled.sum().clamp_min(1), hidden)


class DistillModel(nn.Module):
    """What the loop trains: the student classifier and, for the hidden-state loss, a projection of its
    pooled representation onto the teacher's (dropped when the student is saved)."""

    def __init__(self, student: Classifier, teacher_dim: int | None):
        super().__init__()
        self.student = student
        self.project = nn.Linear(student.backbone.d_model, teacher_dim) if teacher_dim else None



def soft_label_step_loss(temperature: float, alpha: float, pooling: str, hidden_weight: float = 0.0):
    """loop.fit's step_loss for a DistillModel on batches with `teacher_logits` (and `teacher_pooled` for the
    hidden-state loss) beside the texts; `labels` NO_LABEL where a text has no gold label."""

    def step_loss(m: DistillModel, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        out = m.student(batch["input_ids"], batch["mask"], batch.get("segment_ids"))
        projected = m.project(pool(out.hidden, batch["mask"], pooling)) if m.project is not None else None
        loss = distill_loss(out.logits, batch["teacher_logits"], batch["labels"], temperature, alpha,
                            projected, batch.get("teacher_pooled"), hidden_weight)
        agree = (out.logits.argmax(-1) == batch["teacher_logits"].argmax(-1)).float().mean()
        metrics = {"kl": loss.kl.detach(), "ce": loss.ce.detach(), "agree": agree.detach()}
        if loss.hidden is not None:
            metrics["hidden"] = loss.hidden.detach()
        return loss.total, metrics

    return step_loss
