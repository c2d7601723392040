"""Bidirectional RNN backbone, ELMo style: one unidirectional stack per direction.

    ids -> token (+ segment) embedding -> LayerNorm -> dropout         (B, T, D)
        -> each document becomes a row of its own                      (n_docs, L, D)
        -> forward stack:  n_layers LSTM/GRU reading left to right     (n_docs, L, D/2)
           backward stack: n_layers LSTM/GRU reading right to left     (n_docs, L, D/2)
        -> LayerNorm per direction -> concatenate -> back to the rows  (B, T, D)

Why two stacks and not `nn.LSTM(bidirectional=True, num_layers=n)`: a bidirectional nn.LSTM
feeds layer l+1 with BOTH directions of layer l, so above the first layer its "forward" state at
t has already seen the tokens after t. Keeping the directions apart (as ELMo does) means the
forward half of the output at t depends only on tokens <= t and the backward half only on
tokens >= t (the final LayerNorm is per direction for the same reason), so the halves can be
trained as a forward and a backward language model (`directional_states`). The price: the two
directions meet only in whatever reads the output, not inside the stack. Layers after the first
are residual (ELMo does the same), which keeps deep narrow stacks trainable.

Documents: every document (a run of equal non-zero mask values) is cut out of its row and
becomes a row of its own, padded at the end; the backward stack reads each document reversed
(also padded at the end). Outputs are scattered back to (B, T, D), with zeros at padding. No
state crosses a document boundary, and since each stack reads in one direction and the padding
comes after the document in that direction, padding never reaches a real token: no
`pack_padded_sequence` is needed, and none is used because on CPU it is slower than the padding
it saves: it falls back to a step-by-step cell loop, where a padded batch runs oneDNN's fused
LSTM. Measured, one 256 -> 128 LSTM layer, forward + backward, 1 thread (busy machine, best of
3): 117 documents of 10-60 tokens: packed 643 ms fp32 / 510 ms bf16, padded 317 / 189 ms;
32 x 128 tokens: packed 198 / 107 ms, padded 147 / 86 ms. Rows packed with short documents
still cost more than one document per row (each document is padded to the longest, and the
recurrence runs over more, shorter rows): ~0.5x the tokens/s for 32 x 128 holding 117
documents of 10-60 tokens.

Mixed precision: under `torch.autocast("cpu", dtype=torch.bfloat16)` the LSTM/GRU runs in bf16
(autocast casts it; the gradients of the fp32 weights stay fp32), so nothing here casts; on a CPU
without native bf16 (AVX2 only) oneDNN has no bf16 LSTM ("could not create a primitive descriptor"),
and there the recurrence runs in fp32 (`_recurrence_precision`).
Measured as above (32 x 128, padded): LSTM fp32 ~150-170 ms, bf16 ~86-94 ms; GRU ~ the same
either way (~155 ms). bf16 outputs differ from fp32 by ~4e-4 (LSTM) / ~1e-3 (GRU) on average
at values ~0.1-0.3, and the error does not grow along the sequence (t = 0, 64, 127 alike).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from . import EncoderOutput, positions_from_mask
from .embedding import embed, init_embeddings, make_embeddings

def split_documents(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Where each real token goes when every document gets a row of its own.

    mask: (B, T), 0 = padding, k >= 1 = k-th document of the row.
    Returns, for the real tokens in row-major order (the order of `x[mask != 0]`):
    doc (n_real,) the document's index, pos (n_real,) the position within it; and
    lengths (n_docs,) the length of every document.
    """
    real = mask != 0
    starts = real.clone()
    starts[:, 1:] &= mask[:, 1:] != mask[:, :-1]
    doc = (starts.flatten().cumsum(0) - 1)[real.flatten()]
    pos = positions_from_mask(mask)[real]
    lengths = torch.bincount(doc, minlength=int(starts.sum()))
    return doc, pos, lengths


class RNNBackbone(nn.Module):
    """Two unidirectional LSTM/GRU stacks of `n_layers` each, d_model / 2 wide; output (B, T, d_model)."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layers: int,
        cell: str = "lstm",
        dropout: float = 0.1,
        type_vocab_size: int = 2,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if d_model % 2:
            raise ValueError(f"RNN d_model must be even (half per direction), got {d_model}")
        if cell == "lstm":
            rnn_cls = nn.LSTM
        elif cell == "gru":
            rnn_cls = nn.GRU
        else:
            raise ValueError(f"unknown RNN cell {cell!r}; choose lstm or gru")
        self.vocab_size, self.d_model, self.n_layers, self.cell = vocab_size, d_model, n_layers, cell
        half = d_model // 2

        # names start with embed_: the optimizer leaves them out of weight decay
        self.embed_tokens, self.embed_segments = make_embeddings(vocab_size, d_model, type_vocab_size, pad_id)
        self.embed_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        # layer 0 maps d_model -> d_model/2; the others d_model/2 -> d_model/2 (residual)
        self.fwd = nn.ModuleList(rnn_cls(d_model if i == 0 else half, half, batch_first=True) for i in range(n_layers))
        self.bwd = nn.ModuleList(rnn_cls(d_model if i == 0 else half, half, batch_first=True) for i in range(n_layers))
        self.norm_fwd = nn.LayerNorm(half)
        self.norm_bwd = nn.LayerNorm(half)
        init_embeddings(self.embed_tokens, self.embed_segments, pad_id)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def forward(self, ids: Tensor, mask: Tensor, segment_ids: Tensor | None = None,
                output_attentions: bool = False, output_hidden_states: bool = False) -> EncoderOutput:
        B, T = ids.shape
        x = self.dropout(self.embed_norm(embed(self.embed_tokens, self.embed_segments, ids, segment_ids)))  # (B, T, D)
        hidden_states = [x] if output_hidden_states else None

        # every document its own sequence: (n_docs, L, D), in reading order and reversed
        real = mask != 0
        doc, pos, lengths = split_documents(mask)
        if lengths.numel() == 0:  # nothing but padding
            hidden = x.new_zeros(B, T, self.d_model)
            return EncoderOutput(hidden, None, hidden_states + [hidden] * self.n_layers if hidden_states else None)
        rpos = lengths[doc] - 1 - pos  # position counted from the document's end
        N, L = lengths.numel(), int(lengths.max())
        h_fwd = x.new_zeros(N, L, self.d_model).index_put((doc, pos), x[real])  # documents, padded at the end
        h_bwd = x.new_zeros(N, L, self.d_model).index_put((doc, rpos), x[real])  # the same, reversed

        for i, (rnn_fwd, rnn_bwd) in enumerate(zip(self.fwd, self.bwd)):
            with _recurrence_precision(h_fwd) as cast:
                out_fwd, out_bwd = rnn_fwd(cast(h_fwd))[0], rnn_bwd(cast(h_bwd))[0]  # (N, L, D/2) each
            if i > 0:  # residual
                out_fwd, out_bwd = out_fwd + h_fwd, out_bwd + h_bwd
            if i < self.n_layers - 1:
                out_fwd, out_bwd = self.dropout(out_fwd), self.dropout(out_bwd)
                if hidden_states is not None:
                    layer = torch.cat([out_fwd[doc, pos], out_bwd[doc, rpos]], dim=-1)  # (n_real, D)
                    hidden_states.append(layer.new_zeros(B, T, self.d_model).index_put((real,), layer))
            h_fwd, h_bwd = out_fwd, out_bwd

        top = torch.cat([self.norm_fwd(h_fwd[doc, pos]), self.norm_bwd(h_bwd[doc, rpos])], dim=-1)  # (n_real, D)
        hidden = top.new_zeros(B, T, self.d_model).index_put((real,), top)  # zeros at padding
        if hidden_states is not None:
            hidden_states.append(hidden)
        return EncoderOutput(hidden=hidden, attentions=None, hidden_states=hidden_states)

    def directional_states(
        self, ids: Tensor, mask: Tensor, segment_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(fwd, bwd), each (B, T, D/2), from the top layer: fwd at t has seen only the tokens
        <= t of its document, bwd only the tokens >= t. For a forward / backward LM (ELMo):
        fwd[t] predicts token t+1, bwd[t] predicts token t-1."""
        hidden = self(ids, mask, segment_ids).hidden
        return hidden[..., : self.d_model // 2], hidden[..., self.d_model // 2 :]


@contextlib.contextmanager
def _recurrence_precision(x: Tensor):
    """Autocast's bf16 for the LSTM/GRU where the CPU runs it natively; elsewhere (a CPU without avx512_bf16
    or AMX, where oneDNN has no bf16 recurrence) the recurrence leaves autocast and runs in fp32. Yields the
    cast for its inputs."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not _cpu_has_bf16():
        with torch.autocast("cpu", enabled=False):
            yield lambda t: t.float()
    else:
        yield lambda t: t


def _cpu_has_bf16() -> bool:
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
