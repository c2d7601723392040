"""Token attributions for a classifier's prediction: integrated gradients on the input embeddings.

    attrs = integrated_gradients(classifier, ids, mask, pad_id=0, keep_ids=(cls, sep))

IG (Sundararajan et al. 2017) integrates the gradient of the target logit along the straight line
from a baseline input to the real one, in embedding space. The baseline here is the same sequence
with every token replaced by [PAD], except [CLS] and [SEP] (and the mask unchanged), so the
attributions explain what the words add over an empty sentence of the same length. Completeness:
the token scores sum to logit(x) - logit(baseline), up to the reported convergence delta.

How many steps: the integral is a sum over `n_steps` points of the path, and the sum of the scores
misses f(x) - f(x') by the convergence delta. Each text starts at `n_steps`; a text whose |delta| is
over `tolerance` (5%) of |f(x) - f(x')| is attributed again with twice the steps, up to `max_steps`.
A text still over it at the cap is marked `converged=False`, and the report says so beside it.

Uses captum's LayerIntegratedGradients on `backbone.get_input_embeddings()`: it needs only
gradients, so it works for every backbone (Transformer, RNN, CNN) alike. An encoder-decoder's
classifier (BART's) looks the text up twice, for the encoder and, shifted right, for the decoder:
there IG interpolates the text's token embeddings once (captum's IntegratedGradients on the
classifier's `inputs_embeds`), so each token's score covers what it adds on both sides and the
completeness sum still holds.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..models import Seq2SeqClassifier

TOLERANCE = 0.05
"""Attributions are accepted when |delta| <= TOLERANCE x |f(x) - f(x')| (or <= FLOOR)."""
FLOOR = 1e-3
"""In logits: a text whose words move the logit by under FLOOR / TOLERANCE (0.02) needs no closer sum."""
MAX_STEPS = 800
"""The default cap on the steps of one text (50 doubled four times)."""


@dataclass
class TokenAttribution:
    """Integrated-gradients attributions for one example."""

    tokens: list[str]
    """Display strings, one per position (padding dropped)."""
    ids: list[int]
    scores: list[float]
    """Per-token attribution to the target logit (summed over embedding dimensions)."""
    target: int
    """Class whose logit is explained."""
    probability: float
    """Softmax probability of `target` for the real input."""
    logit: float
    """Target logit for the real input, f(x)."""
    baseline_logit: float
    """Target logit for the [PAD] baseline, f(x')."""
    delta: float
    """Convergence delta: sum(scores) - (f(x) - f(x')); small means the integral is accurate."""
    special: list[bool] = field(default_factory=list)
    """True at [CLS]/[SEP] (kept in the baseline, so their score is 0)."""
    label: str = ""
    """Name of the target class, when known."""
    steps: int = 0
    """Integration steps taken for this text."""
    converged: bool = True
    """|delta| within the tolerance of |f(x) - f(x')| (integrated_gradients' `tolerance`)."""

    @property
    def relative_delta(self) -> float:
        """|delta| as a share of |f(x) - f(x')| (inf when the input does not move the logit)."""
        gap = abs(self.logit - self.baseline_logit)
        return abs(self.delta) / gap if gap > 0 else (0.0 if self.delta == 0 else float("inf"))


def integrated_gradients(
    classifier: nn.Module,
    ids: Tensor,
    mask: Tensor,
    segment_ids: Tensor | None = None,
    *,
    pad_id: int,
    keep_ids: tuple[int, ...],
    target: Tensor | list[int] | int | None = None,
    tokens: list[list[str]] | None = None,
    label_names: list[str] | None = None,
    n_steps: int = 50,
    max_steps: int = MAX_STEPS,
    tolerance: float = TOLERANCE,
    max_tokens_per_pass: int = 32768,
) -> list[TokenAttribution]:
    """IG attributions of each example's target logit (default: the predicted class) to its tokens.

    classifier: a `models.Classifier` (anything with `.backbone` and forward(ids, mask, segment_ids) -> .logits).
    ids, mask, segment_ids: (B, T) as in the backbone contract.
    keep_ids: token ids left in place in the baseline ([CLS], [SEP]).
    n_steps, max_steps, tolerance: start at n_steps; double them for the texts whose |delta| is over
    tolerance x |f(x) - f(x')| (and over FLOOR), up to max_steps (see the module docstring).
    """
    from . import ExplainError

    try:
        import captum.attr  # noqa: F401
    except ImportError:
        raise ExplainError(
            "token attributions need captum; install it with `pip install 'pretrainlab[interpret]'`"
        ) from None

    B, T = ids.shape
    keep = (mask == 0) | torch.isin(ids, torch.tensor(keep_ids, device=ids.device))
    baseline = torch.where(keep, ids, torch.full_like(ids, pad_id))

    if segment_ids is None:
        def logits_of(x, m):
            return classifier(x, m).logits

        extra: tuple = (mask,)
    else:
        def logits_of(x, m, s):  # type: ignore[misc]
            return classifier(x, m, s).logits

        extra = (mask, segment_ids)

    with torch.no_grad():
        logits = logits_of(ids, *extra).float()
        base_logits = logits_of(baseline, *extra).float()
    if target is None:
        target_t = logits.argmax(-1)
    else:
        target_t = torch.as_tensor(target, device=ids.device).long().expand(B)
    probs = logits.softmax(-1)
    rows_all = torch.arange(B, device=ids.device)
    gap = (logits[rows_all, target_t] - base_logits[rows_all, target_t]).cpu()
    embedding = classifier.backbone.get_input_embeddings()

    def attribute(rows: Tensor, steps: int) -> tuple[Tensor, Tensor]:
        return _ig_pass(classifier, logits_of, embedding, ids[rows], baseline[rows], target_t[rows],
                        tuple(a[rows] for a in extra), steps, max_tokens_per_pass)

    scores, delta = attribute(rows_all, n_steps)  # (B, T), (B,)
    taken = torch.full((B,), n_steps)
    todo = delta.abs() > torch.clamp(tolerance * gap.abs(), min=FLOOR)
    steps = n_steps
    while todo.any() and steps < max_steps:  # only the texts whose sum is still off get more steps
        steps = min(2 * steps, max_steps)
        rows = todo.nonzero().flatten()
        scores[rows], delta[rows] = attribute(rows.to(ids.device), steps)
        taken[rows] = steps
        todo[rows] = delta[rows].abs() > torch.clamp(tolerance * gap[rows].abs(), min=FLOOR)

    out = []
    for b in range(B):
        real = (mask[b] != 0).nonzero().flatten().tolist()
        t = int(target_t[b])
        out.append(TokenAttribution(
            tokens=[tokens[b][i] for i in real] if tokens is not None else [str(int(ids[b, i])) for i in real],
            ids=[int(ids[b, i]) for i in real],
            scores=[float(scores[b, i]) for i in real],
            target=t,
            probability=float(probs[b, t]),
            logit=float(logits[b, t]),
            baseline_logit=float(base_logits[b, t]),
            delta=float(delta[b]),
            special=[int(ids[b, i]) in keep_ids for i in real],
            label=label_names[t] if label_names and t < len(label_names) else str(t),
            steps=int(taken[b]),
            converged=not bool(todo[b]),
        ))
    return out


def _ig_pass(classifier: nn.Module, logits_of, embedding: nn.Module, ids: Tensor, baseline: Tensor, target: Tensor,
             extra: tuple, steps: int, max_tokens_per_pass: int) -> tuple[Tensor, Tensor]:
    """One integration of `steps` points for a batch: (scores (B, T) summed over the embedding, delta (B,)), on CPU."""
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    B, T = ids.shape
    # sequences per forward/backward pass: all steps at once up to ~32k tokens (bounded memory, few passes)
    chunk = max(B, min(B * steps, max_tokens_per_pass // T))
    if isinstance(classifier, Seq2SeqClassifier):  # one embedding per token feeds both sides (see the docstring)
        def from_embeds(e, x, m):
            return classifier(x, m, inputs_embeds=e).logits

        with torch.no_grad():
            start, end = embedding(ids), embedding(baseline)
        attr, delta = IntegratedGradients(from_embeds).attribute(
            start, baselines=end, target=target, additional_forward_args=(ids, extra[0]),
            n_steps=steps, internal_batch_size=chunk, return_convergence_delta=True,
        )
    else:
        attr, delta = LayerIntegratedGradients(logits_of, embedding).attribute(
            ids, baselines=baseline, target=target, additional_forward_args=extra,
            n_steps=steps, internal_batch_size=chunk, return_convergence_delta=True,
        )  # attr: (B, T, D) like the embedding output
    return attr.sum(-1).detach().float().cpu(), delta.detach().float().cpu()


def attribution_html(a: TokenAttribution) -> str:
    """The tokens as coloured spans: green pushes toward the target class, red away from it;
    the stronger the colour, the larger |score| (relative to the example's largest)."""
    top = max((abs(s) for s in a.scores), default=0.0) or 1.0
    spans = []
    for tok, s, sp in zip(a.tokens, a.scores, a.special):
        alpha = min(1.0, abs(s) / top)
        rgb = "22,163,74" if s >= 0 else "220,38,38"
        style = f"background:rgba({rgb},{alpha:.2f})" + (";color:#888" if sp else "")
        spans.append(f"<span class=\"attr\" style=\"{style}\" title=\"{s:+.3g}\">{html.escape(tok)}</span>")
    return "<div class=\"attr-text\">" + " ".join(spans) + "</div>"


def aggregate_attributions(
    attributions: list[TokenAttribution], top_k: int = 10
) -> dict[str, list[tuple[str, float, float, int]]]:
    """Per target class, the tokens with the largest total attribution toward it.

    Returns {class label: [(token, total, mean, count), ...]} sorted by total, descending;
    special tokens are left out, tokens are compared case-insensitively.
    """
    totals: dict[str, dict[str, list[float]]] = {}
    for a in attributions:
        per = totals.setdefault(a.label, {})
        for tok, s, sp in zip(a.tokens, a.scores, a.special):
            if not sp:
                per.setdefault(tok.lower(), []).append(s)
    out = {}
    for label in sorted(totals):
        rows = [(tok, sum(v), sum(v) / len(v), len(v)) for tok, v in totals[label].items()]
        rows.sort(key=lambda r: r[1], reverse=True)
        out[label] = rows[:top_k]
    return out
