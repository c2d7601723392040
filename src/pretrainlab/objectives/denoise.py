"""What the encoder-decoder objectives (infill, permute, span) share: a batch of (source, target)
pairs and the loss over the target's tokens.

    source  what the encoder reads: the corrupted document
    target  what the decoder must write, token by token (the labels)

`pad_pairs` pads both sides on the right and builds the decoder's input by shifting the labels
right behind the start token (BART's shift_tokens_right). Padding needs no decoder mask: the
decoder is causal, so a real target token never sees the padding after it, and padded label
positions are -100 (ignored by the loss).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..backbones.seq2seq import shift_right
from ..distributed import global_count, world_size

IGNORE = -100
"""Label of a padded target position (cross_entropy's ignore_index)."""


def with_ends(tokens: np.ndarray, bos_id: int, eos_id: int) -> np.ndarray:
    """[CLS] tokens [SEP]: BART's <s> ... </s> around a document, on both sides."""
    return np.concatenate(([bos_id], np.asarray(tokens, dtype=np.int64), [eos_id]))


def pad_pairs(sources: list[np.ndarray], targets: list[np.ndarray], *, pad_id: int,
              decoder_start_id: int) -> dict[str, Tensor]:
    """(source, target) token arrays -> the model's batch.

    -> input_ids (B, S), attention_mask (B, S) 1 = real token, decoder_input_ids (B, T),
       labels (B, T) with -100 at padding; S, T the longest source and target.
    """
    B = len(sources)
    S, T = max(len(s) for s in sources), max(len(t) for t in targets)
    input_ids = torch.full((B, S), pad_id, dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    for b, (src, tgt) in enumerate(zip(sources, targets)):
        input_ids[b, : len(src)] = torch.as_tensor(np.asarray(src, dtype=np.int64))
        labels[b, : len(tgt)] = torch.as_tensor(np.asarray(tgt, dtype=np.int64))
    attention_mask = (torch.arange(S)[None, :] < torch.tensor([len(s) for s in sources])[:, None]).long()
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "decoder_input_ids": shift_right(labels, decoder_start_id, pad_id), "labels": labels}


def denoising_loss(logits: Tensor, labels: Tensor, name: str) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-entropy of (B, T, V) decoder logits against (B, T) labels, -100 ignored.

    The mean is over the target tokens of the GLOBAL batch (all ranks), so that data parallelism
    over N processes trains exactly like one process with an N times larger batch.
    """
    logits, labels = logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)
    real = labels != IGNORE
    n_all = max(global_count(int(real.sum()), logits.device), 1)
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum") * (world_size() / n_all)
    acc = (logits.argmax(-1)[real] == labels[real]).float().mean()
    return loss, {f"{name}_loss": loss.detach(), f"{name}_acc": acc.detach()}
