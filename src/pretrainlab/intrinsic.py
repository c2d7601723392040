"""Cheap intrinsic evaluations of a pre-trained backbone: no fine-tuning.

    probe("runs/mini", "mr")                      # -> ProbeReport: held-out accuracy per layer
    pseudo_perplexity("runs/mini", texts)         # -> PerplexityResult: exp(mean NLL), each token masked in turn
    causal_perplexity("runs/gpt", texts)          # -> CausalPerplexity: exp(mean next-token NLL), a true perplexity
    perplexity(run, texts)                        # whichever of the two the run's model can compute

Linear probing: the backbone is frozen; every layer's hidden states (`output_hidden_states`,
embeddings first; an encoder-decoder's encoder layers, then its decoder layers) are mean-pooled over the real tokens of `[CLS] text [SEP]`, and one
standardised logistic regression per layer is fitted on the task's train split and scored on its
test split (the same seeded splits fine-tuning uses). A backbone without per-layer states is
probed on its final output. Minutes on CPU instead of the hours fine-tuning every variant takes.

Pseudo-perplexity (Salazar et al., 2020): for every token t_i of a text (special tokens and
[UNK] excluded), replace it by [MASK], run the model, and take -log p(t_i | rest) from the MLM
head; PPPL = exp(sum of those / number of tokens) over all texts. Batched: the masked copies of
all texts are run batch_size at a time, padded to their longest. A model whose head predicts
the uniform distribution scores exactly the vocabulary size. It depends on the tokenizer, so
compare it only between models that share one (e.g. a checkpoint before and after continued
pre-training).

True perplexity, for a model that reads left to right (a decoder, or the RNN's forward LM when it
was pre-trained with clm): each text is cut, as pre-training packs a document, into pieces of at
most seq_len tokens `[CLS] piece [SEP]`, and every token after [CLS] (the piece's own tokens and
the [SEP] that ends it) is scored by -log p(token | the tokens before it); PPL = exp(sum / count).
It equals exp(validation clm loss) on the same pieces, and a uniform guess scores the vocabulary
size. It is not comparable to a pseudo-perplexity (which sees both sides of each token).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .backbones.spec import BACKBONES

from .interpret.probes import ProbeResult
from .errors import PretrainlabError
from .runs import Pretrained, load_pretrained


class IntrinsicError(PretrainlabError, ValueError):
    """An intrinsic evaluation that cannot be run as asked; the message says what to do."""


def _as_pretrained(run: str | Path | Pretrained) -> Pretrained:
    return run if isinstance(run, Pretrained) else load_pretrained(run)


# --------------------------------------------------------------------------- linear probing


@dataclass
class ProbeReport(ProbeResult):
    """The probes of one run on one task's train / test splits (majority: the most frequent training
    label's test accuracy)."""

    task: str = field(kw_only=True)
    run: str = field(kw_only=True)

    @property
    def best_layer(self) -> str:
        return self.layers[int(np.argmax(self.test_accuracy))]

    @property
    def best(self) -> float:
        return max(self.test_accuracy)

    def markdown(self) -> str:
        lines = [f"linear probes of {self.run} on {self.task} ({self.n_train} train / {self.n_test} test examples; "
                 f"majority label {self.majority:.4f})", "", "| layer | test accuracy | train accuracy |",
                 "|---|---:|---:|"]
        for name, te, tr in zip(self.layers, self.test_accuracy, self.train_accuracy):
            lines.append(f"| {name} | {te:.4f}{' **best**' if name == self.best_layer else ''} | {tr:.4f} |")
        return "\n".join(lines) + "\n"


def _subsample(split, n: int, seed: int):
    if n <= 0 or len(split) <= n:
        return split
    return split.subset(np.sort(np.random.default_rng(seed).permutation(len(split))[:n]))


@torch.no_grad()
def probe(run: str | Path | Pretrained, task, *, max_len: int = 64, max_examples: int = 4000, seed: int = 0,
          batch_size: int = 64, C: float = 1.0, columns=None) -> ProbeReport:
    """One logistic regression per layer: fitted on the task's train split, scored on its test split.

    task: a built-in name, a file (columns text / label) or a data.tasks.Task. max_examples caps
    the train and the test split each (0: all). columns: a data.tasks.Columns for a file's other column names.
    """
    from .data.tasks import Task, load_task
    from .data.encoding import collate, encode_split
    from .models import head_kind
    from .interpret.probes import fit_probes, layer_features, layer_names

    pre = _as_pretrained(run)
    task = task if isinstance(task, Task) else load_task(task, seed=seed, **(columns.settings() if columns else {}))
    segments = head_kind(pre.config.model) == "bert"
    max_len = BACKBONES[pre.config.model.backbone].input_len(max_len, pre.config.model.max_len)  # their context
    train, test = _subsample(task.train, max_examples, seed), _subsample(task.test, max_examples, seed + 1)
    feats, ys = [], []
    backbone = pre.backbone.eval()
    for split in (train, test):
        enc = encode_split(pre.tokenizer, split, max_len)
        b = collate(enc, list(range(len(enc))), pre.special.pad, segments)
        f, has_layers = layer_features(backbone, b["input_ids"], b["mask"], b.get("segment_ids"), batch_size,
                                       eos_id=pre.special.sep)  # used by an encoder-decoder only
        feats.append(f)
        ys.append(np.asarray(split.labels))
    train_acc, test_acc = fit_probes(feats[0], ys[0], feats[1], ys[1], C=C)
    majority = float(np.mean(ys[1] == np.bincount(ys[0]).argmax()))
    run_name = str(pre.run_dir) if pre.run_dir else "?"
    return ProbeReport(layer_names(len(feats[0]), has_layers, backbone), train_acc, test_acc, majority, len(train), len(test),
                       task=task.name, run=run_name)


# --------------------------------------------------------------------------- pseudo-perplexity


@dataclass
class PerplexityResult:
    pseudo_perplexity: float
    nll: float
    """Mean negative log-likelihood per scored token (nats)."""
    n_tokens: int
    n_texts: int
    vocab_size: int

    def summary(self) -> str:
        return (f"pseudo-perplexity {self.pseudo_perplexity:.3f} (MLM: each token masked in turn, not a true perplexity; "
                f"mean NLL {self.nll:.4f} nats) over {self.n_tokens:,} "
                f"tokens in {self.n_texts:,} texts; vocabulary {self.vocab_size:,} (a uniform guess scores that)")


def read_texts(path: str | Path, max_texts: int = 0) -> list[str]:
    """Non-empty lines of a UTF-8 text file."""
    path = Path(path)
    if not path.is_file():
        raise IntrinsicError(f"--file {path} does not exist")
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise IntrinsicError(f"{path} holds no text (only blank lines)")
    return texts[:max_texts] if max_texts > 0 else texts


@torch.no_grad()
def pseudo_perplexity(run: str | Path | Pretrained, texts: Sequence[str], *, max_len: int = 128,
                      batch_size: int = 64) -> PerplexityResult:
    """exp(mean over tokens of -log p(token | text with that token masked)) from the run's MLM head."""
    from .data.encoding import encode

    pre = _as_pretrained(run)
    if "mlm" not in pre.model.objectives:
        raise IntrinsicError(f"{pre.checkpoint or pre.run_dir}: the run has no MLM head (objectives: {', '.join(pre.model.objectives)}); "
                             "pseudo-perplexity needs one: use a run pre-trained with objective mlm")
    max_len = BACKBONES[pre.config.model.backbone].input_len(max_len, pre.config.model.max_len)
    lm = pre.lm.eval()  # models.MaskedLM: the backbone and its MLM head
    special = set(pre.special.all)
    enc = encode(pre.tokenizer, list(texts), None, max_len)
    # one query per scored token: (text, position); texts in length order keep the padding small
    order = sorted(range(len(enc)), key=lambda i: len(enc.ids[i]))
    queries = [(i, j) for i in order for j, t in enumerate(enc.ids[i]) if t not in special]
    if not queries:
        raise IntrinsicError("no token to score: every text is empty after tokenization (or only special tokens)")
    total = 0.0
    for start in range(0, len(queries), batch_size):
        chunk = queries[start:start + batch_size]
        T = max(len(enc.ids[i]) for i, _ in chunk)
        ids = torch.full((len(chunk), T), pre.special.pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), T), dtype=torch.long)
        for row, (i, _) in enumerate(chunk):
            ids[row, :len(enc.ids[i])] = torch.tensor(enc.ids[i])
            mask[row, :len(enc.ids[i])] = 1
        rows, pos = torch.arange(len(chunk)), torch.tensor([j for _, j in chunk])
        targets = ids[rows, pos].clone()
        ids[rows, pos] = pre.special.mask
        hidden = lm.backbone(ids, mask, torch.zeros_like(ids)).hidden  # (B, T, D); segment 0 as a single text
        logits = lm.head(hidden[rows, pos]).float()  # (B, V): only at the masked position
        total += float(F.cross_entropy(logits, targets, reduction="sum"))
    nll = total / len(queries)
    return PerplexityResult(math.exp(nll), nll, len(queries), len({i for i, _ in queries}),
                            pre.tokenizer.get_vocab_size())


# --------------------------------------------------------------------------- true perplexity


@dataclass
class CausalPerplexity:
    perplexity: float
    nll: float
    """Mean negative log-likelihood per scored token (nats)."""
    n_tokens: int
    n_texts: int
    vocab_size: int
    model: str
    """What scored the tokens: the decoder, or the rnn's forward LM."""
    seq_len: int
    """The longest piece, [CLS] and [SEP] included."""

    def summary(self) -> str:
        return (f"perplexity {self.perplexity:.3f} (true perplexity: exp of the mean next-token NLL {self.nll:.4f} nats, "
                f"from the {self.model}) over {self.n_tokens:,} tokens in {self.n_texts:,} texts, pieces of at most "
                f"{self.seq_len} tokens; vocabulary {self.vocab_size:,} (a uniform guess scores that)")


def _pieces(pre: Pretrained, texts: Sequence[str], seq_len: int) -> list[list[int]]:
    """Each text's tokens cut into `[CLS] piece [SEP]` rows of at most seq_len tokens, as pre-training packs."""
    room, cls, sep = seq_len - 2, pre.special.cls, pre.special.sep
    if room < 1:
        raise IntrinsicError(f"--max-len {seq_len} leaves no room for text between [CLS] and [SEP]; give at least 3")
    out = []
    for enc in pre.tokenizer.encode_batch(list(texts), add_special_tokens=False):
        ids = enc.ids
        out += [[cls, *ids[i:i + room], sep] for i in range(0, max(len(ids), 1), room)]
    return out


@torch.no_grad()
def causal_perplexity(run: str | Path | Pretrained, texts: Sequence[str], *, max_len: int | None = None,
                      batch_size: int = 64) -> CausalPerplexity:
    """exp(mean over tokens of -log p(token | the tokens before it)) from a decoder or the RNN's forward LM.

    max_len: the piece length (default: the run's data.seq_len, what it was pre-trained on).
    """
    from .objectives.clm import IGNORE, next_token_labels

    pre = _as_pretrained(run)
    kind = pre.config.model.backbone
    next_token_logits = _left_to_right(pre)
    if next_token_logits is None:
        raise IntrinsicError(f"{pre.checkpoint}: a true perplexity needs a model that reads left to right: a decoder, "
                             f"or an rnn pre-trained with bilm (this is a {kind} run with "
                             f"{', '.join(pre.model.objectives)})")
    spec = BACKBONES[kind]
    seq_len = spec.input_len(max_len or pre.config.data.seq_len, pre.config.model.max_len)
    backbone = pre.backbone.eval()
    rows = sorted(_pieces(pre, texts, seq_len), key=len)  # length order keeps the padding small
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        ids = torch.full((len(chunk), len(chunk[-1])), pre.special.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, row in enumerate(chunk):
            ids[r, :len(row)], mask[r, :len(row)] = torch.tensor(row), 1
        labels = next_token_labels(ids, mask)  # (B, T): the token each position predicts, IGNORE past the end
        at = labels != IGNORE
        hidden = backbone(ids, mask, torch.zeros_like(ids)).hidden  # (B, T, D)
        logits = next_token_logits(hidden[at]).float()  # (N, V)
        total += float(F.cross_entropy(logits, labels[at], reduction="sum"))
        count += int(at.sum())
    nll = total / count
    model = kind if spec.causal else f"{kind}'s forward LM (bilm)"
    return CausalPerplexity(math.exp(nll), nll, count, len(texts), pre.tokenizer.get_vocab_size(), model, seq_len)


def _left_to_right(pre: Pretrained):
    """(N, D) states -> (N, V) next-token logits where the run has a left-to-right LM: the decoder's LM head, or the
    forward half of the rnn's bilm (objectives/elmo.py); else None."""
    if BACKBONES[pre.config.model.backbone].causal and pre.model.lm_head is not None:
        return pre.model.lm_head.eval()
    if "bilm" in pre.model.objectives:
        return pre.model.objectives["bilm"].eval().next_token_logits
    return None


def perplexity(run: str | Path | Pretrained, texts: Sequence[str], *, max_len: int | None = None,
               batch_size: int = 64) -> CausalPerplexity | PerplexityResult:
    """A true perplexity where the model reads left to right (decoder, rnn with bilm), else the MLM
    pseudo-perplexity (max_len then truncates each text, default 128); the result says which."""
    pre = _as_pretrained(run)
    if _left_to_right(pre) is not None:
        return causal_perplexity(pre, texts, max_len=max_len, batch_size=batch_size)
    if "mlm" not in pre.model.objectives:
        raise IntrinsicError(f"{pre.checkpoint}: the run has neither a left-to-right LM (clm on a decoder, bilm on an "
                             f"rnn) nor an MLM head (objectives: {', '.join(pre.model.objectives)}), so no perplexity of "
                             "either kind can be computed from it")
    return pseudo_perplexity(pre, texts, max_len=max_len or 128, batch_size=batch_size)
