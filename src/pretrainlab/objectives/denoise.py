"""What the encoder-decoder objectives (infill, permute, span) share: a batch of (source, target)
pairs and the loss over the target's tokens.

    source  what the encoder reads: the corrupted document
    target  what the decoder must write, token by token (the labels)

`pad_pairs` pads both sides on the right and builds the decoder's input by shifting the labels
right behind the start token (BART's shift_tokens_right). Padding needs no decoder mask: the
decoder is causal, so a real target token never sees the padding after it, and padded label
positions are -100 (ignored by the loss).

In pre-training the pairs come from packed rows (data/packing.py: `[CLS] chunk [SEP]` documents back
to back, numbered by the row's mask). `Denoiser` is what the three objectives share as an
`Objective`: its `prepare` cuts each row into its documents (`row_documents`), turns each into a
(source, target) pair with the objective's `pair`, and packs the pairs again (`pack_pairs`): source
document k on the encoder side and target document k on the decoder side both carry document id k,
so the encoder-decoder attends within documents and decoder document k reads encoder document k.
Every random choice of a row comes from its `row_seed`, so a row is corrupted the same way whichever
process or batch it lands in (data parallelism, resume).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
       labels (B, T) with -100 at padding, target_positions (N,) of the real labels; S, T the longest source and
       target.
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
            "decoder_input_ids": shift_right(labels, decoder_start_id, pad_id), "labels": labels,
            "target_positions": target_positions(labels)}


def target_positions(labels: Tensor) -> Tensor:
    """(N,) flat indices into (B * T) of the real target tokens (labels not -100), found on the CPU while the
    batch is built, so that the loss needs no read back from the device."""
    return (labels != IGNORE).reshape(-1).nonzero().squeeze(1)


def denoising_loss(logits: Tensor, labels: Tensor, name: str) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-entropy of (B, T, V) decoder logits against (B, T) labels, -100 ignored.

    The mean is over the target tokens of the GLOBAL batch (all ranks), so that data parallelism
    over N processes trains exactly like one process with an N times larger batch.
    """
    logits, labels = logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1)
    real = labels != IGNORE
    n_real = real.sum()  # on the device: nothing here waits for it
    n_all = global_count(n_real, logits.device)
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum") * (world_size() / n_all)
    acc = ((logits.argmax(-1) == labels) & real).sum() / n_real.clamp_min(1)
    return loss, {f"{name}_loss": loss.detach(), f"{name}_acc": acc.detach()}


# --------------------------------------------------------------------------- packed rows (pre-training)


def row_documents(ids: np.ndarray, mask: np.ndarray, sent_start: np.ndarray | None = None
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """One packed row -> (tokens without [CLS]/[SEP], sentence offsets 0 ... len) per document, in order.

    ids, mask (T,): a row of `[CLS] chunk [SEP]` documents numbered 1, 2, ... by mask (0 = padding).
    sent_start (T,) bool marks tokens that begin a sentence; without it a document is one sentence.
    A chunk's first token always begins a sentence (a long document's later chunks start mid-sentence).
    """
    out = []
    for k in range(1, int(mask.max(initial=0)) + 1):
        where = np.flatnonzero(mask == k)
        if len(where) == 0:
            continue
        lo, hi = int(where[0]) + 1, int(where[-1])  # inside [CLS] ... [SEP]
        tokens = np.asarray(ids[lo:hi], dtype=np.int64)
        starts = np.flatnonzero(sent_start[lo:hi]) if sent_start is not None else np.zeros(0, dtype=np.int64)
        offsets = np.unique(np.concatenate(([0], starts, [len(tokens)])))
        out.append((tokens, offsets))
    return out


def pack_pairs(rows: list[list[tuple[np.ndarray, np.ndarray]]], *, pad_id: int,
               decoder_start_id: int) -> dict[str, Tensor]:
    """(source, target) pairs per row -> the model's batch, documents numbered 1, 2, ... on both sides.

    -> input_ids (B, S), attention_mask (B, S) document ids, decoder_input_ids (B, T) (each target
       shifted right behind its own start token), decoder_attention_mask (B, T) document ids, labels
       (B, T) with -100 at padding.
    """
    B = len(rows)
    S = max(sum(len(s) for s, _ in docs) for docs in rows)
    T = max(sum(len(t) for _, t in docs) for docs in rows)
    input_ids = torch.full((B, S), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, S), dtype=torch.long)
    decoder_input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    decoder_mask = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    for b, docs in enumerate(rows):
        s_at = t_at = 0
        for k, (src, tgt) in enumerate(docs, start=1):
            src, tgt = torch.as_tensor(np.asarray(src, dtype=np.int64)), torch.as_tensor(np.asarray(tgt, dtype=np.int64))
            input_ids[b, s_at : s_at + len(src)] = src
            attention_mask[b, s_at : s_at + len(src)] = k
            labels[b, t_at : t_at + len(tgt)] = tgt
            decoder_input_ids[b, t_at] = decoder_start_id
            decoder_input_ids[b, t_at + 1 : t_at + len(tgt)] = tgt[:-1]
            decoder_mask[b, t_at : t_at + len(tgt)] = k
            s_at, t_at = s_at + len(src), t_at + len(tgt)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": decoder_mask, "labels": labels}


def row_rng(batch: dict[str, Tensor], b: int, gen: torch.Generator) -> np.random.Generator:
    """Row b's random stream: from its row_seed (the loader's), else drawn from `gen`."""
    seeds = batch.get("row_seed")
    seed = int(seeds[b]) if seeds is not None else int(torch.randint(1 << 62, (1,), generator=gen))
    return np.random.default_rng(seed)


def seq2seq_ids(special, backbone) -> dict[str, int]:
    """Sources and targets are [CLS] ... [SEP] (BART's <s> ... </s>); the decoder starts from the backbone's start
    token (backbone.decoder_start: [SEP] for bart, as BART's decoder_start_token_id is its </s>; [PAD] for t5)."""
    return dict(bos_id=special.cls, eos_id=special.sep, pad_id=special.pad,
                decoder_start_id=backbone.decoder_start(special.sep))


class Denoiser(nn.Module):
    """An encoder-decoder objective as an `Objective`: corrupt each document of a packed row (`pair`),
    then score the decoder writing the original back.

    Subclasses set `name` and define `pair(tokens, sentence_offsets, rng) -> (source, target)`.
    """

    name = "denoise"
    uses_shared_forward = False  # its encoder reads the corrupted text, so it runs the backbone itself
    reads = "rows"
    word_start_table: Tensor | None = None
    pad_id: int
    decoder_start_id: int

    def pair(self, tokens: np.ndarray, offsets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def prepare(self, batch: dict[str, Tensor], gen: torch.Generator, progress: float = 1.0) -> dict[str, Tensor]:
        """Packed rows (input_ids, mask[, sent_start], row_seed) -> the encoder-decoder's batch (pack_pairs).

        `mask` stays the loader's (the loop counts the tokens read with it)."""
        ids, mask = batch["input_ids"].numpy(), batch["mask"].numpy()
        starts = batch["sent_start"].numpy() if "sent_start" in batch else None
        rows = []
        for b in range(len(ids)):
            rng = row_rng(batch, b, gen)
            docs = row_documents(ids[b], mask[b], starts[b] if starts is not None else None)
            rows.append([self.pair(tokens, offsets, rng) for tokens, offsets in docs])
        pairs = pack_pairs(rows, pad_id=self.pad_id, decoder_start_id=self.decoder_start_id)
        return {**batch, **pairs, "target_positions": target_positions(pairs["labels"])}

    def loss(self, model: nn.Module, out, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy of the decoder's logits at the target tokens: it runs the backbone on the corrupted source
        (`out` is unused: there is no shared forward) and projects only the real target positions with the
        model's LM head."""
        labels = batch["labels"]
        out = model.backbone(batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"],
                             batch.get("decoder_attention_mask"))
        at = batch["target_positions"]  # the real target tokens, (N,) flat indices into (B * T)
        hidden = out.decoder_hidden.reshape(-1, out.decoder_hidden.shape[-1]).index_select(0, at)
        return denoising_loss(model.lm_head(hidden), labels.reshape(-1).index_select(0, at), self.name)
