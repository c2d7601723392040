"""Bidirectional RNN backbone, ELMo style: one unidirectional stack per direction.

    ids -> token (+ segment) embedding -> LayerNorm -> dropout
        -> each document becomes its own sequence, all of them packed into one batch
        -> forward stack:  n_layers LSTM/GRU reading left to right   (B, T, D/2)
           backward stack: n_layers LSTM/GRU reading right to left   (B, T, D/2)
        -> LayerNorm per direction -> concatenate                    (B, T, D)

Why two stacks and not `nn.LSTM(bidirectional=True, num_layers=n)`: a bidirectional nn.LSTM
feeds layer l+1 with BOTH directions of layer l, so above the first layer its "forward" state at
t has already seen the tokens after t. Keeping the directions apart (as ELMo does) means the
forward half of the output at t depends only on tokens <= t and the backward half only on
tokens >= t (the final LayerNorm is per direction for the same reason), so the halves can be
trained as a forward and a backward language model (`directional_states`). The price: the two
directions meet only in whatever reads the output, not inside the stack. Layers after the first
are residual (ELMo does the same), which keeps deep narrow stacks trainable.

Documents: every document (a run of equal non-zero mask values) is cut out of its row and run
as a separate sequence, so no state crosses a document boundary, and `pack_padded_sequence`
skips the padding entirely. The backward stack reads each document reversed; outputs are
scattered back to (B, T, D), with zeros at padding.

Mixed precision: under `torch.autocast("cpu", dtype=torch.bfloat16)` the packed LSTM/GRU runs in
bf16 (autocast casts it; gradients of the fp32 weights stay fp32). Measured at 32 x 128 tokens,
one 256 -> 128 layer, forward + backward, 2 threads: fp32 60 ms, bf16 34 ms; the bf16 outputs
differ from fp32 by ~4e-4 on average (values ~0.13) and the error does not grow along the
sequence. So we do not force fp32 inside; nothing here needs a cast.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import EncoderOutput, positions_from_mask

# d_model / n_layers whose parameter count (embeddings included) matches the Transformer
# preset of the same name at any vocabulary size: same d_model (so the same embedding and tied
# head), layers chosen to match the non-embedding parameters.
RNN_DIMS = {
    "tiny": dict(d_model=128, n_layers=6),
    "mini": dict(d_model=256, n_layers=12),
    "small": dict(d_model=512, n_layers=12),
}


def rnn_dims_for(preset: str) -> dict[str, int]:
    """d_model and n_layers (per direction) comparable in size to the Transformer `preset`."""
    if preset not in RNN_DIMS:
        raise ValueError(
            f"no RNN size for preset {preset!r}; choose {', '.join(RNN_DIMS)} or give d_model and n_layers"
        )
    return dict(RNN_DIMS[preset])


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

        self.tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.segments = nn.Embedding(type_vocab_size, d_model) if type_vocab_size > 0 else None
        self.embed_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        # layer 0 maps d_model -> d_model/2; the others d_model/2 -> d_model/2 (residual)
        self.fwd = nn.ModuleList(rnn_cls(d_model if i == 0 else half, half, batch_first=True) for i in range(n_layers))
        self.bwd = nn.ModuleList(rnn_cls(d_model if i == 0 else half, half, batch_first=True) for i in range(n_layers))
        self.norm_fwd = nn.LayerNorm(half)
        self.norm_bwd = nn.LayerNorm(half)
        # BERT's init for the embeddings: small, so that a tied output head starts near uniform
        nn.init.normal_(self.tokens.weight, std=0.02)
        if self.segments is not None:
            nn.init.normal_(self.segments.weight, std=0.02)
        with torch.no_grad():
            self.tokens.weight[pad_id].zero_()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tokens

    def forward(
        self,
        ids: Tensor,
        mask: Tensor,
        segment_ids: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> EncoderOutput:
        B, T = ids.shape
        real = mask != 0
        x = self.tokens(ids)
        if self.segments is not None:
            x = x + self.segments(segment_ids if segment_ids is not None else torch.zeros_like(ids))
        x = self.dropout(self.embed_norm(x))  # (B, T, D)
        hidden_states = [x] if output_hidden_states else None

        # every document its own sequence: (n_docs, L, D) forward order and reversed order
        doc, pos, lengths = split_documents(mask)
        if lengths.numel() == 0:  # nothing but padding
            hidden = x.new_zeros(B, T, self.d_model)
            return EncoderOutput(hidden, None, hidden_states + [hidden] * self.n_layers if hidden_states else None)
        rpos = lengths[doc] - 1 - pos  # position counted from the document's end
        L = int(lengths.max())
        seq_fwd = x.new_zeros(lengths.numel(), L, x.shape[-1])
        seq_fwd[doc, pos] = x[real]
        seq_bwd = x.new_zeros(lengths.numel(), L, x.shape[-1])
        seq_bwd[doc, rpos] = x[real]
        h_fwd = pack_padded_sequence(seq_fwd, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h_bwd = pack_padded_sequence(seq_bwd, lengths.cpu(), batch_first=True, enforce_sorted=False)

        def tokens_of(packed: PackedSequence, at: Tensor) -> Tensor:
            """(n_real, D/2): the packed states back in the order of x[real]."""
            return pad_packed_sequence(packed, batch_first=True, total_length=L)[0][doc, at]

        for i, (rnn_fwd, rnn_bwd) in enumerate(zip(self.fwd, self.bwd)):
            out_fwd, out_bwd = rnn_fwd(h_fwd)[0], rnn_bwd(h_bwd)[0]
            if i > 0:  # residual
                out_fwd = out_fwd._replace(data=out_fwd.data + h_fwd.data)
                out_bwd = out_bwd._replace(data=out_bwd.data + h_bwd.data)
            if i < self.n_layers - 1:
                out_fwd = out_fwd._replace(data=self.dropout(out_fwd.data))
                out_bwd = out_bwd._replace(data=self.dropout(out_bwd.data))
                if hidden_states is not None:
                    layer = torch.cat([tokens_of(out_fwd, pos), tokens_of(out_bwd, rpos)], dim=-1)
                    hidden_states.append(layer.new_zeros(B, T, self.d_model).index_put((real,), layer))
            h_fwd, h_bwd = out_fwd, out_bwd

        top = torch.cat([self.norm_fwd(tokens_of(h_fwd, pos)), self.norm_bwd(tokens_of(h_bwd, rpos))], dim=-1)
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
