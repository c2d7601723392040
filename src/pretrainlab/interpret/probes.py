"""Layer-wise linear probes: how linearly decodable is a task from each layer of a frozen backbone?

    result = probe_layers(backbone, ids, mask, labels)   # one logistic regression per layer
    feats, has_layers = layer_features(backbone, ids, mask)           # the pieces, for your own splits:
    train_acc, test_acc = fit_probes(train_feats, y_train, test_feats, y_test)   # (intrinsic.probe)

Features: each layer's hidden states (`output_hidden_states=True`, embeddings first), mean-pooled
over the real tokens. An encoder-decoder is probed per layer of each stack: the encoder reads the
text, the decoder the text shifted right behind its start token (as its classifier reads it), both
pooled over the same positions. Classifier: standardise + scikit-learn LogisticRegression, fitted on a
stratified train split and scored on the held-out split. A backbone that returns no per-layer
states is probed on its final output only (and the result says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..backbones.seq2seq import Seq2SeqTransformer, shift_right
from ..models import pool


@dataclass
class ProbeResult:
    layers: list[str]
    """'embeddings', 'layer 1', ... (or 'final output' when the backbone gives no per-layer states)."""
    train_accuracy: list[float]
    test_accuracy: list[float]
    majority: float
    """Held-out accuracy of always predicting the most frequent training label (the floor)."""
    n_train: int
    n_test: int
    note: str = ""
    """Why fewer layers than expected were probed, if so."""


@torch.no_grad()
def layer_features(
    backbone: nn.Module, ids: Tensor, mask: Tensor, segment_ids: Tensor | None = None, batch_size: int = 32,
    eos_id: int | None = None,
) -> tuple[list[np.ndarray], bool]:
    """Mean-pooled features per layer, each (N, D); and whether they are per-layer (else final only).

    An encoder-decoder gives the encoder's layers, then the decoder's, which reads the text shifted right behind
    its start token (backbone.decoder_start(eos_id): eos_id, the tokenizer's [SEP], for bart; [PAD] for t5)."""
    seq2seq = isinstance(backbone, Seq2SeqTransformer)
    if seq2seq and eos_id is None:
        raise ValueError("probing an encoder-decoder needs eos_id (the tokenizer's [SEP]) for its decoder input")
    per_layer: list[list[np.ndarray]] | None = None
    has_layers = True
    for start in range(0, ids.shape[0], batch_size):
        sl = slice(start, start + batch_size)
        seg = segment_ids[sl] if segment_ids is not None else None
        if seq2seq:
            dec = shift_right(ids[sl], backbone.decoder_start(eos_id), backbone.pad_id)
            s2s = backbone(ids[sl], mask[sl], dec, output_hidden_states=True)
            out, states = s2s, s2s.encoder_hidden_states + s2s.decoder_hidden_states
        else:
            out = backbone(ids[sl], mask[sl], seg, output_hidden_states=True)
            states = out.hidden_states
        if not states:
            has_layers, states = False, [out.hidden]
        pooled = [pool(h.float(), mask[sl], "mean").cpu().numpy() for h in states]
        if per_layer is None:
            per_layer = [[] for _ in pooled]
        for acc, p in zip(per_layer, pooled):
            acc.append(p)
    assert per_layer is not None, "no examples"
    return [np.concatenate(p) for p in per_layer], has_layers


def layer_names(n_layers: int, has_layers: bool, backbone: nn.Module | None = None) -> list[str]:
    """Names of the feature sets layer_features returns: embeddings, layer 1, ... (or final output); for an
    encoder-decoder: encoder embeddings, encoder layer 1, ..., decoder embeddings, decoder layer 1, ..."""
    if isinstance(backbone, Seq2SeqTransformer):
        return [f"{side} {'embeddings' if i == 0 else f'layer {i}'}"
                for side, n in (("encoder", backbone.n_layers), ("decoder", backbone.n_decoder_layers))
                for i in range(n + 1)]
    return ["embeddings"] + [f"layer {i}" for i in range(1, n_layers)] if has_layers else ["final output"]


def fit_probes(train_feats: list[np.ndarray], y_train: np.ndarray, test_feats: list[np.ndarray],
               y_test: np.ndarray, C: float = 1.0) -> tuple[list[float], list[float]]:
    """One standardised logistic regression per layer, fitted on the train features and scored on both;
    -> (train accuracy, test accuracy), one per layer."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_acc, test_acc = [], []
    for X_tr, X_te in zip(train_feats, test_feats):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        probe.fit(X_tr, y_train)
        train_acc.append(float(probe.score(X_tr, y_train)))
        test_acc.append(float(probe.score(X_te, y_test)))
    return train_acc, test_acc


def probe_layers(
    backbone: nn.Module,
    ids: Tensor,
    mask: Tensor,
    labels: Tensor | list[int] | np.ndarray,
    segment_ids: Tensor | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    batch_size: int = 32,
    eos_id: int | None = None,
) -> ProbeResult:
    """Fit one linear probe per layer on a train split of (ids, labels); score it on the rest."""
    from sklearn.model_selection import train_test_split

    from . import ExplainError

    y = np.asarray(labels.cpu() if isinstance(labels, Tensor) else labels)
    classes, counts = np.unique(y, return_counts=True)
    n_test = int(round(len(y) * test_fraction))
    if len(classes) < 2:
        raise ExplainError(f"probing needs at least 2 labels in the task, found {len(classes)} ({classes.tolist()})")
    if n_test < 1 or len(y) - n_test < len(classes):
        raise ExplainError(
            f"probing needs more examples: {len(y)} with {len(classes)} labels leave no usable train/test split; "
            "give a task file with at least a few examples per label"
        )
    was_training = backbone.training
    backbone.eval()
    try:
        feats, has_layers = layer_features(backbone, ids, mask, segment_ids, batch_size, eos_id)
    finally:
        backbone.train(was_training)

    idx = np.arange(len(y))
    stratify = y if counts.min() >= 2 and n_test >= len(classes) else None
    tr, te = train_test_split(idx, test_size=n_test, random_state=seed, stratify=stratify)
    values, freq = np.unique(y[tr], return_counts=True)
    majority = float(np.mean(y[te] == values[freq.argmax()]))

    train_acc, test_acc = fit_probes([X[tr] for X in feats], y[tr], [X[te] for X in feats], y[te])
    note = "" if has_layers else (f"the {type(backbone).__name__} returns no per-layer hidden states, "
                                  "so only its final output was probed")
    return ProbeResult(layer_names(len(feats), has_layers, backbone), train_acc, test_acc, majority, len(tr), len(te), note)


def plot_probes(result: ProbeResult, title: str = "linear probe accuracy per layer") -> bytes:
    """PNG: held-out (and train) probe accuracy per layer, with the majority-label floor."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(result.layers))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(x) + 2), 3.2))
    ax.plot(x, result.test_accuracy, "o-", label=f"held-out ({result.n_test})")
    ax.plot(x, result.train_accuracy, "o--", alpha=0.6, label=f"train ({result.n_train})")
    ax.axhline(result.majority, color="grey", linestyle=":", label="majority label")
    ax.set_xticks(x, result.layers, rotation=30 if len(x) > 6 else 0)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
