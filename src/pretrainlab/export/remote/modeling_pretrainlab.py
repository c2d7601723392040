"""pretrainlab's RNN and CNN encoders and heads for `transformers` (remote code).

This file is copied into every RNN / CNN export, next to configuration_pretrainlab.py;
`config.json` names both in `auto_map`, so that (offline, no pretrainlab needed)

    model = AutoModelForSequenceClassification.from_pretrained(DIR, trust_remote_code=True)

builds the model. It holds a copy of the forward pass of pretrainlab's backbones/rnn.py and
backbones/cnn.py (see their docstrings for the why) and of its classifier / MLM heads, so the
logits equal pretrainlab's; pretrainlab's export tests check that they do. Parameter names are
pretrainlab's, with the backbone one level deeper (`backbone.X` -> `backbone.encoder.X`).
Each copy is marked `# Copied from pretrainlab.<module>.<name>`: tests/test_copies.py checks that a
copied function is its source's code and that a copied module computes what its source computes
(same parameter names and shapes, equal outputs); when a source moves, change its mark.

Inputs: `attention_mask` 0/1 (a row is one document: the encoders read only its tokens, so
padding never changes the outputs), `token_type_ids` the segment ids of a text pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput

from .configuration_pretrainlab import PretrainlabConfig

try:  # transformers >= 5: these leave weights that were loaded from the checkpoint alone
    from transformers import initialization as init
except ImportError:  # transformers 4 initialises only what the checkpoint lacks anyway
    from torch.nn import init

# --------------------------------------------------------------------------- documents


# Copied from pretrainlab.backbones.positions_from_mask
def positions_from_mask(mask: Tensor) -> Tensor:
    """(B, T) position of each token within its own document (0 at each document start)."""
    import torch

    B, T = mask.shape
    idx = torch.arange(T, device=mask.device).expand(B, T)
    starts = torch.ones_like(mask, dtype=torch.bool)
    starts[:, 1:] = mask[:, 1:] != mask[:, :-1]
    start_idx = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return (idx - start_idx) * (mask != 0)


# Copied from pretrainlab.backbones.rnn.split_documents
def split_documents(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For the real tokens (row-major): document index, position in it; and every document's length."""
    real = mask != 0
    starts = real.clone()
    starts[:, 1:] &= mask[:, 1:] != mask[:, :-1]
    doc = (starts.flatten().cumsum(0) - 1)[real.flatten()]
    pos = positions_from_mask(mask)[real]
    lengths = torch.bincount(doc, minlength=int(starts.sum()))
    return doc, pos, lengths


# Copied from pretrainlab.backbones.cnn.spread_documents
def spread_documents(mask: Tensor, gap: int) -> tuple[Tensor, int]:
    """Column of every token once the documents of each row are `gap` zero columns apart; new width."""
    B, T = mask.shape
    starts = mask != 0
    starts[:, 1:] &= mask[:, 1:] != mask[:, :-1]
    docs_before = (starts.cumsum(dim=1) - 1).clamp(min=0)
    col = torch.arange(T, device=mask.device) + docs_before * gap
    most_docs = int(starts.sum(dim=1).max()) if B else 0
    return col, T + gap * max(most_docs - 1, 0)


# --------------------------------------------------------------------------- encoders


# Copied from pretrainlab.backbones.rnn.RNNBackbone
class RNNEncoder(nn.Module):
    """Two unidirectional LSTM/GRU stacks (forward, backward), d_model / 2 wide; residual above layer 0."""

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, cell: str, dropout: float,
                 type_vocab_size: int, pad_id: int):
        super().__init__()
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.d_model, self.n_layers = d_model, n_layers
        half = d_model // 2
        self.embed_tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.embed_segments = nn.Embedding(type_vocab_size, d_model) if type_vocab_size > 0 else None
        self.embed_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.fwd = nn.ModuleList(rnn_cls(d_model if i == 0 else half, half, batch_first=True) for i in range(n_layers))
        self.bwd = nn.ModuleList(rnn_cls(d_model if i == 0 else half, half, batch_first=True) for i in range(n_layers))
        self.norm_fwd = nn.LayerNorm(half)
        self.norm_bwd = nn.LayerNorm(half)

    def forward(self, ids: Tensor, mask: Tensor, segment_ids: Tensor | None) -> Tensor:
        B, T = ids.shape
        real = mask != 0
        x = self.embed_tokens(ids)
        if self.embed_segments is not None:
            x = x + self.embed_segments(segment_ids if segment_ids is not None else torch.zeros_like(ids))
        x = self.dropout(self.embed_norm(x))  # (B, T, D)
        doc, pos, lengths = split_documents(mask)
        if lengths.numel() == 0:  # nothing but padding
            return x.new_zeros(B, T, self.d_model)
        rpos = lengths[doc] - 1 - pos  # position counted from the document's end
        N, L = lengths.numel(), int(lengths.max())
        h_fwd = x.new_zeros(N, L, self.d_model).index_put((doc, pos), x[real])  # one row per document
        h_bwd = x.new_zeros(N, L, self.d_model).index_put((doc, rpos), x[real])  # the same, reversed
        for i, (rnn_fwd, rnn_bwd) in enumerate(zip(self.fwd, self.bwd)):
            out_fwd, out_bwd = rnn_fwd(h_fwd)[0], rnn_bwd(h_bwd)[0]  # (N, L, D/2) each
            if i > 0:  # residual
                out_fwd, out_bwd = out_fwd + h_fwd, out_bwd + h_bwd
            if i < self.n_layers - 1:
                out_fwd, out_bwd = self.dropout(out_fwd), self.dropout(out_bwd)
            h_fwd, h_bwd = out_fwd, out_bwd
        top = torch.cat([self.norm_fwd(h_fwd[doc, pos]), self.norm_bwd(h_bwd[doc, rpos])], dim=-1)  # (n_real, D)
        return top.new_zeros(B, T, self.d_model).index_put((real,), top)  # zeros at padding


# Copied from pretrainlab.backbones.cnn.ConvBlock
class ConvBlock(nn.Module):
    """Pre-norm residual block: x + dropout(GLU(conv(LayerNorm(x) with padding zeroed)))."""

    def __init__(self, d_model: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.conv = nn.Conv2d(d_model, 2 * d_model, (1, kernel_size), dilation=(1, dilation), padding="same")
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, valid: Tensor) -> Tensor:
        h = self.norm(x) * valid  # (B, T, D), zeros outside the documents
        h = self.conv(h.transpose(1, 2).unsqueeze(2)).squeeze(2).transpose(1, 2)  # (B, T, 2D): a 1-D convolution
        return x + self.dropout(F.glu(h, dim=-1))


# Copied from pretrainlab.backbones.cnn.CNNBackbone
class CNNEncoder(nn.Module):
    """Residual gated 1-D convolutions; documents of a row are moved apart so that no kernel reads across."""

    def __init__(self, vocab_size: int, d_model: int, n_layers: int, kernel_size: int, dilations: list[int],
                 dropout: float, type_vocab_size: int, pad_id: int):
        super().__init__()
        self.d_model = d_model
        layer_dilations = [dilations[i % len(dilations)] for i in range(n_layers)]
        self.gap = max(((kernel_size - 1) * d + 1) // 2 for d in layer_dilations) if n_layers else 0
        self.embed_tokens = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.embed_segments = nn.Embedding(type_vocab_size, d_model) if type_vocab_size > 0 else None
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(ConvBlock(d_model, kernel_size, d, dropout) for d in layer_dilations)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, ids: Tensor, mask: Tensor, segment_ids: Tensor | None) -> Tensor:
        B, T = ids.shape
        real = mask != 0
        x = self.embed_tokens(ids)
        if self.embed_segments is not None:
            x = x + self.embed_segments(segment_ids if segment_ids is not None else torch.zeros_like(ids))
        x = self.dropout(x)  # (B, T, D)
        col, width = spread_documents(mask, self.gap)
        rows = torch.arange(B, device=ids.device)[:, None].expand(B, T)[real]
        cols = col[real]
        h = x.new_zeros(B, width, self.d_model).index_put((rows, cols), x[real])  # (B, T', D)
        valid = x.new_zeros(B, width, 1).index_put((rows, cols), x.new_ones(rows.numel(), 1))
        for block in self.blocks:
            h = block(h, valid)
        top = self.norm(h[rows, cols])  # (n_real, D)
        return top.new_zeros(B, T, self.d_model).index_put((real,), top)  # zeros at padding


# --------------------------------------------------------------------------- transformers models


class PretrainlabPreTrainedModel(PreTrainedModel):
    config_class = PretrainlabConfig
    base_model_prefix = "backbone"

    def _init_weights(self, module: nn.Module) -> None:
        """Only for weights a checkpoint lacks (e.g. a new classifier head): pretrainlab's init."""
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=0.02)


class PretrainlabModel(PretrainlabPreTrainedModel):
    """The encoder alone: last_hidden_state (B, T, d_model), zeros at padding."""

    def __init__(self, config: PretrainlabConfig):
        super().__init__(config)
        c = config
        if c.backbone == "rnn":
            self.encoder = RNNEncoder(c.vocab_size, c.d_model, c.n_layers, c.rnn_cell, c.dropout, c.type_vocab_size,
                                      c.pad_token_id)
        else:
            self.encoder = CNNEncoder(c.vocab_size, c.d_model, c.n_layers, c.kernel_size, list(c.dilations),
                                      c.dropout, c.type_vocab_size, c.pad_token_id)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.encoder.embed_tokens = value

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                **kwargs) -> BaseModelOutput:
        mask = attention_mask.long() if attention_mask is not None else torch.ones_like(input_ids)
        return BaseModelOutput(last_hidden_state=self.encoder(input_ids, mask, token_type_ids))


# Copied from pretrainlab.models.Classifier
class PretrainlabForSequenceClassification(PretrainlabPreTrainedModel):
    """Encoder -> [CLS] state or mean over real tokens -> dense -> tanh -> dropout -> linear."""

    def __init__(self, config: PretrainlabConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.backbone = PretrainlabModel(config)
        self.pooler = nn.Linear(config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None, **kwargs) -> SequenceClassifierOutput:
        mask = attention_mask.long() if attention_mask is not None else torch.ones_like(input_ids)
        hidden = self.backbone(input_ids, mask, token_type_ids).last_hidden_state  # (B, T, D)
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = (mask != 0).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        logits = self.head(self.dropout(torch.tanh(self.pooler(pooled)))).float()
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=None)


# Copied from pretrainlab.heads.MLMHead
class PretrainlabMLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> decoder tied to the token embedding (+ bias)."""

    def __init__(self, d_model: int, vocab_size: int):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: Tensor, embedding: nn.Embedding) -> Tensor:
        return F.linear(self.norm(F.gelu(self.dense(h))), embedding.weight, self.bias)


class PretrainlabForMaskedLM(PretrainlabPreTrainedModel):
    """Encoder -> MLM head; logits (B, T, vocab)."""

    def __init__(self, config: PretrainlabConfig):
        super().__init__(config)
        self.backbone = PretrainlabModel(config)
        self.lm_head = PretrainlabMLMHead(config.d_model, config.vocab_size)
        self.post_init()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                labels: Tensor | None = None, **kwargs) -> MaskedLMOutput:
        hidden = self.backbone(input_ids, attention_mask, token_type_ids).last_hidden_state
        logits = self.lm_head(hidden, self.backbone.get_input_embeddings()).float()  # (B, T, V)
        loss = None
        if labels is not None:  # -100: not scored
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits)
