"""Backbones: one file each, one forward contract.

    backbone(ids, mask, segment_ids=None, output_attentions=False) -> EncoderOutput

ids:  (B, T) int64 token ids.
mask: (B, T) int64; 0 marks padding, k >= 1 marks tokens of the k-th document packed into
      that row. Tokens attend (or recur, or convolve) only within their own document, and
      positions restart at each document's first token. A plain 0/1 padding mask is the
      one-document case.
Every backbone has `.d_model`, `.vocab_size` and `get_input_embeddings()` (the token
embedding, tied to the MLM head and used for attributions).

The encoder-decoder (seq2seq.py) has its own contract: (ids, mask, decoder_ids, decoder_mask) ->
Seq2SeqOutput; the factory builds it like the others.

What the rest of pretrainlab knows about each kind (styles, presets, heads, export, ...) is its row in
spec.py, `BACKBONES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used, so that config can read backbones.spec without it
    import torch
    from torch import Tensor


@dataclass
class EncoderOutput:
    hidden: Tensor
    """(B, T, D) final hidden states."""
    attentions: list[Tensor] | None = None
    """Per layer (B, H, T, T) attention weights, when asked for and the backbone has attention."""
    hidden_states: list[Tensor] | None = None
    """Per layer (B, T, D) outputs (embeddings first), when asked for; used by probes."""


def positions_from_mask(mask: Tensor) -> Tensor:
    """(B, T) position of each token within its own document (0 at each document start)."""
    import torch  # here, not at the top: config reads backbones.spec, and must not import torch for it

    B, T = mask.shape
    idx = torch.arange(T, device=mask.device).expand(B, T)
    starts = torch.ones_like(mask, dtype=torch.bool)
    starts[:, 1:] = mask[:, 1:] != mask[:, :-1]
    # index of the latest document start at or before each token
    start_idx = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return (idx - start_idx) * (mask != 0)


def build_backbone(
    kind: str,
    *,
    # every backbone
    vocab_size: int, d_model: int, n_layers: int, dropout: float = 0.1, type_vocab_size: int = 2, pad_id: int = 0,
    # transformer and decoder (style: bert | modern, or llama | gpt2); transformer modern only: LTG-BERT's norms
    n_heads: int = 4, d_ff: int = 1024, max_len: int = 512, style: str = "bert", extra_norms: bool = False,
    # rnn only / cnn only
    rnn_cell: str = "lstm", kernel_size: int = 5, dilations: tuple[int, ...] = (1, 2, 4, 8),
    # encoder-decoder only (0: as many decoder layers as n_layers)
    n_decoder_layers: int = 0,
) -> torch.nn.Module:
    """The explicit factory: plain values in (keywords only, grouped by who reads them), a backbone out; the
    kind's row in spec.BACKBONES builds it."""
    from .spec import BACKBONES

    if kind not in BACKBONES:
        raise ValueError(f"unknown backbone {kind!r}; choose {', '.join(BACKBONES)}")
    return BACKBONES[kind].build(
        vocab_size=vocab_size, d_model=d_model, n_layers=n_layers, dropout=dropout, type_vocab_size=type_vocab_size,
        pad_id=pad_id, n_heads=n_heads, d_ff=d_ff, max_len=max_len, style=style, rnn_cell=rnn_cell,
        kernel_size=kernel_size, dilations=dilations, n_decoder_layers=n_decoder_layers, extra_norms=extra_norms)


def backbone_from_config(model_cfg, vocab_size: int, pad_id: int = 0) -> torch.nn.Module:
    """Unpack a ModelConfig into plain values (modules never see config objects)."""
    m = model_cfg
    return build_backbone(
        m.backbone, vocab_size=m.vocab_size or vocab_size, d_model=m.d_model, n_layers=m.n_layers,
        n_heads=m.n_heads, d_ff=m.d_ff, max_len=m.max_len, dropout=m.dropout,
        type_vocab_size=m.type_vocab_size, style=m.style, rnn_cell=m.rnn_cell,
        kernel_size=m.kernel_size, dilations=tuple(m.dilations), pad_id=pad_id,
        n_decoder_layers=m.n_decoder_layers, extra_norms=m.extra_norms,
    )
