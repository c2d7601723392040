"""Language-model heads: hidden states (..., D) -> vocabulary logits (..., V).

    MLMHead        BERT's prediction head (dense -> GELU -> LayerNorm -> decoder + bias): the encoder's
    LMHead         one projection, no bias (Llama's and GPT-2's lm_head): the decoder's
    Seq2SeqLMHead  the tied token embedding + final_logits_bias (BART's lm_head; T5's scales the states first):
                   the encoder-decoder's

A model class holds its head (models.MaskedLM, CausalLM, Seq2SeqLM; PretrainModel.lm_head while it
pre-trains), as Hugging Face's BertForMaskedLM holds cls.predictions; an objective only says which positions
to score and how (its collator and loss). PLM's query stream keeps an MLMHead of its own (objectives/plm.py).
The vocabulary projection is the token embedding (tied) or a matrix of its own of the same shape (untied).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


BERT_EPS = 1e-12
"""BERT's LayerNorm eps."""


class MLMHead(nn.Module):
    """BERT's prediction head: dense -> GELU -> LayerNorm -> decoder tied to the embeddings.

    eps: the LayerNorm's, the backbone's own as in Hugging Face's heads (BERT 1e-12, ModernBERT 1e-5): with
    trained weights a head normalising at 1e-12 under a ModernBERT export differs from it by ~2.5e-5 of the
    logits' scale (issue #25 item 7).
    """

    def __init__(self, d_model: int, vocab_size: int, embedding: nn.Embedding, eps: float = BERT_EPS):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.embedding = embedding  # tied: shares the token embedding's weight
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: Tensor) -> Tensor:
        h = self.norm(F.gelu(self.dense(h)))
        return F.linear(h, self.embedding.weight, self.bias)


class LMHead(nn.Module):
    """hidden (..., D) -> logits (..., V) by one projection, no bias.

    Tied: pass the token embedding, whose weight is the projection. Untied: embedding=None makes
    a matrix of its own, initialised N(0, 0.02).
    """

    def __init__(self, d_model: int, vocab_size: int, embedding: nn.Embedding | None = None):
        super().__init__()
        if embedding is None:
            embedding = nn.Embedding(vocab_size, d_model)
            nn.init.normal_(embedding.weight, std=0.02)
        self.embedding = embedding

    def forward(self, h: Tensor) -> Tensor:
        return F.linear(h, self.embedding.weight)


class Seq2SeqLMHead(nn.Module):
    """The encoder-decoder's output projection: its token embedding (always tied, as BART's and T5's) + a logits
    bias, the states first multiplied by `scale` (the backbone's output_scale: T5's d_model**-0.5, BART's 1)."""

    def __init__(self, embedding: nn.Embedding, scale: float = 1.0):
        super().__init__()
        self.embedding, self.scale = embedding, scale
        # a buffer, as in BART: never trained, zero unless imported from a checkpoint that has one
        self.register_buffer("final_logits_bias", torch.zeros(embedding.num_embeddings))

    def forward(self, h: Tensor) -> Tensor:
        if self.scale != 1.0:
            h = h * self.scale
        return F.linear(h, self.embedding.weight) + self.final_logits_bias


def build_lm_head(lm: str, backbone: nn.Module, vocab_size: int, embedding: nn.Embedding) -> nn.Module:
    """A fresh LM head for a language model of kind `lm` (a backbone kind's row in backbones/spec.py: masked_lm,
    causal_lm or seq2seq_lm); `embedding` is its vocabulary projection (the backbone's token embedding when
    tied). The encoder-decoder's is always its token embedding, as BART's."""
    if lm == "masked_lm":  # the transformer's norm eps (bert or modern); BERT's on the rnn / cnn, as their remote head
        return MLMHead(backbone.d_model, vocab_size, embedding, getattr(backbone, "norm_eps", BERT_EPS))
    if lm == "causal_lm":
        return LMHead(backbone.d_model, vocab_size, embedding)
    if lm == "seq2seq_lm":
        return Seq2SeqLMHead(backbone.get_input_embeddings(), backbone.output_scale)
    raise ValueError(f"unknown language model {lm!r}; choose masked_lm, causal_lm or seq2seq_lm")
