"""Token (+ segment) embeddings of the RNN and CNN backbones, set up and applied one way.

    self.embed_tokens, self.embed_segments = make_embeddings(vocab_size, d_model, type_vocab_size, pad_id)
    ...                                                  # the backbone's own layers
    init_embeddings(self.embed_tokens, self.embed_segments, pad_id)
    x = embed(self.embed_tokens, self.embed_segments, ids, segment_ids)   # (B, T, D)

The modules stay attributes of the backbone itself, under these names: their state_dict keys
(embed_tokens.weight, embed_segments.weight) are in saved runs and in the remote-code export, and
names starting with embed_ are left out of weight decay by the optimizer. (The Transformer has its
own, HF-mapped tok_emb / seg_emb; export/remote/modeling_pretrainlab.py keeps a self-contained copy.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def make_embeddings(
    vocab_size: int, d_model: int, type_vocab_size: int, pad_id: int
) -> tuple[nn.Embedding, nn.Embedding | None]:
    """(token embedding with its padding row, segment embedding or None when type_vocab_size is 0)."""
    tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
    segments = nn.Embedding(type_vocab_size, d_model) if type_vocab_size > 0 else None
    return tokens, segments


def init_embeddings(tokens: nn.Embedding, segments: nn.Embedding | None, pad_id: int) -> None:
    """BERT's init for the embeddings: small, so that a tied output head starts near uniform; padding row 0."""
    nn.init.normal_(tokens.weight, std=0.02)
    if segments is not None:
        nn.init.normal_(segments.weight, std=0.02)
    with torch.no_grad():
        tokens.weight[pad_id].zero_()


def embed(tokens: nn.Embedding, segments: nn.Embedding | None, ids: Tensor, segment_ids: Tensor | None) -> Tensor:
    """(B, T, D): token embedding + segment embedding (segment 0 where none are given)."""
    x = tokens(ids)
    if segments is not None:
        x = x + segments(segment_ids if segment_ids is not None else torch.zeros_like(ids))
    return x
