"""Typed configuration: one frozen dataclass per concern, loadable from YAML, with
`--set section.key=value` overrides. Each field's docstring is its CLI help.

Modules never receive these objects; commands unpack them into plain values.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import logging
import re
import textwrap
import types
import typing
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .backbones.spec import BACKBONES, PRESETS
from .objectives.spec import OBJECTIVES, SPAN_CAP, refusal, renamed, unread, unread_switches
from .errors import ConfigError
from .files import read_yaml

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- model

BACKBONE_NAMES = tuple(BACKBONES)
"""model.backbone's accepted values: transformer, decoder, encoder-decoder, rnn, cnn (backbones/spec.py)."""
AUTO = "auto"
"""model.preset=auto: pretrain chooses the preset from the budget and the corpus (sizing.py)."""
SIZE_FIELDS = ("d_model", "n_layers", "n_heads", "d_ff")
"""The model settings a preset sets; given explicitly, they switch auto off."""


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "transformer"
    """Backbone architecture: transformer (a bidirectional encoder), decoder (a causal Transformer), rnn, cnn
    or encoder-decoder (an encoder plus a decoder with cross-attention, style bart or t5).
    Choose the encoder to classify, tag or embed text (every token reads both sides; pre-trained with mlm);
    choose the decoder to generate text and score it with a true perplexity (each token reads only the
    ones before it; pre-trained with clm, next-token prediction, its default objective), or to export a
    LlamaForCausalLM / GPT2LMHeadModel. A decoder fine-tunes too: it classifies from its last token, the only
    one that has read the whole text (an encoder's every token has). Choose the encoder-decoder to write a
    text from another (pre-trained with infill, permute or span, BART's and T5's denoising; exports as
    BartForConditionalGeneration or T5ForConditionalGeneration); it classifies from its decoder's last [SEP], as
    BART and T5 do."""
    preset: str | None = "auto"
    """Size preset: auto (the default), tiny, mini, small, medium or base; explicit sizes given with it win.
    auto: `pretrain` chooses the preset from the budget, the corpus's size and the speed it measures in its first
    seconds (the largest preset that still trains on enough tokens per parameter; sizing.py holds the rule), says
    why, and records the chosen preset in the run's config.yaml. With explicit sizes (d_model, n_layers, n_heads,
    d_ff) auto stands for tiny, as the default did before it."""
    style: str = "modern"
    """Transformer style. modern (pre-LN, rotary, GeGLU; exports as ModernBertFor*): the default, it learns
    within CPU minutes. bert (post-LN, learned positions, GELU; exports as BertFor*): choose it to match or
    import a BERT checkpoint, or for long GPU budgets; at 4M tokens on a CPU it stayed near the unigram
    plateau (val MLM accuracy 0.14 vs 0.27, benchmarks/results/recipe.md).
    Decoder styles: llama (the decoder's default: RMSNorm, rotary, SwiGLU, no biases; exports as
    LlamaFor*) or gpt2 (LayerNorm, learned positions, GELU, biases; exports as GPT2*). The presets size a
    decoder as the encoder (d_ff is the SwiGLU inner size, as the modern style's GeGLU).
    The encoder-decoder's styles: bart (its default: post-LN, learned positions, GELU; pre-trained with infill and
    permute; exports as BartFor*) or t5 (T5 v1.1: pre-RMSNorm, relative position buckets, gated-GELU, no biases,
    the decoder starting from [PAD]; pre-trained with span corruption; exports as T5ForConditionalGeneration).
    A style of one backbone alone (llama, gpt2, bart, t5) sets model.backbone when it is not given."""
    vocab_size: int = 0
    """Vocabulary size; 0 means: take it from the tokenizer."""
    d_model: int = 256
    """Hidden size."""
    n_layers: int = 4
    """Number of layers (the encoder's, for an encoder-decoder)."""
    n_decoder_layers: int = 0
    """Encoder-decoder: decoder layers; 0 means as many as n_layers."""
    n_heads: int = 4
    """Attention heads (transformer); must divide d_model."""
    d_ff: int = 1024
    """Feed-forward inner size (transformer)."""
    max_len: int = 512
    """Largest sequence length the position embeddings cover."""
    dropout: float = 0.0
    """Dropout probability while pre-training (short CPU budgets underfit: 0; fine-tuning has its own)."""
    extra_norms: bool = False
    """LTG-BERT's extra layer norms (Samuel et al. 2023, as NormFormer), style modern only: each layer also
    normalises its attention heads' output before their projection and its feed-forward's gated activation before
    its output projection (parameter-free norms). No Hugging Face class has them: export refuses such a run."""
    type_vocab_size: int = 2
    """Number of segment (token type) ids; 2 for sentence pairs."""
    rnn_cell: str = "lstm"
    """RNN cell: lstm or gru."""
    kernel_size: int = 5
    """CNN kernel size."""
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    """CNN dilation per layer, repeated to n_layers."""

    def __post_init__(self) -> None:
        _choice("model.backbone", self.backbone, BACKBONE_NAMES)
        spec = BACKBONES[self.backbone]
        _check_style(self.backbone, self.style)
        if self.extra_norms and (self.backbone, self.style) != ("transformer", "modern"):
            raise ConfigError(f"model.extra_norms (LTG-BERT's) adds norms to the modern Transformer's layers; the "
                              f"{self.backbone} backbone in style {self.style} has none to add: use model.backbone="
                              "transformer with model.style=modern, or extra_norms=false")
        _choice("model.rnn_cell", self.rnn_cell, ("lstm", "gru"))
        if self.preset is not None:
            _choice("model.preset", self.preset, (AUTO, *PRESETS))
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "max_len", "kernel_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.n_decoder_layers < 0:
            raise ConfigError(f"model.n_decoder_layers must be >= 0 (0: as many as model.n_layers), got {self.n_decoder_layers}")
        if spec.has_attention and self.d_model % self.n_heads:
            raise ConfigError(
                f"model.n_heads={self.n_heads} does not divide model.d_model={self.d_model}; "
                f"choose n_heads among {[h for h in range(1, 17) if self.d_model % h == 0]}"
            )
        if self.style in ("modern", "llama") and (self.d_model // self.n_heads) % 2:
            raise ConfigError(f"model.style={self.style} needs an even head size (d_model / n_heads) for rotary positions")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if not self.dilations or not all(type(d) is int and d >= 1 for d in self.dilations):
            raise ConfigError(f"model.dilations must be a list of positive integers, e.g. [1, 2, 4, 8], got {list(self.dilations)}")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataConfig:
    corpus: str = ""
    """Prepared corpus directory (from `pretrainlab prepare`)."""
    seq_len: int = 64
    """Tokens per training sequence (packed, [CLS]/[SEP] included)."""
    tokenizer_kind: str = "wordpiece"
    """Tokenizer model: wordpiece, bpe (byte-level) or unigram."""
    vocab_size: int = 0
    """Tokenizer vocabulary size; 0 (the default): `prepare` proposes one from the corpus's word count (8,192
    tokens at 2.5M words, growing as ELC-BERT's choices do: 14,336 at 10M; data/vocab.py), prints it and records it
    in the manifest."""
    lowercase: bool = True
    """Lowercase text before tokenizing."""
    text_field: str = "text"
    """Field of .jsonl input / column of .csv/.tsv input holding the text."""
    one_doc_per_line: bool = False
    """For .txt input: each line is a document (default: documents are separated by blank lines)."""
    min_chars: int = 20
    """Documents shorter than this (after normalisation) are dropped. Script-aware: a CJK character (Han,
    hiragana, katakana) counts as 5 characters, about one English word, so 4 Chinese characters pass 20."""
    dedup: str = "near"
    """Which repeated documents prepare drops (the first copy is kept; dropped.jsonl lists them): near
    (exact repeats, then near duplicates: see near_dup_threshold), exact (identical after normalisation) or off."""
    near_dup_threshold: float = 0.8
    """A document whose word 5-grams (a CJK character is a word) overlap an earlier kept one's with Jaccard
    similarity >= this (estimated from 128 MinHashes) is a near duplicate; 0 turns the near pass off. At 0.8
    a 100-word paragraph with a word added or changed (about 0.9) is one; with a word changed in every 20
    (about 0.6), or texts that share phrases but not passages (near 0), are not."""
    val_fraction: float = 0.02
    """Share of documents held out for validation."""
    errors: str = "strict"
    """What to do with bytes that are not UTF-8: strict (stop with an error) or replace (count them)."""
    encoding: str = "utf-8"
    """Text encoding of the input files."""
    workers: int = 2
    """Tokenizer threads / processes."""
    shard_tokens: int = 50_000_000
    """Tokens per shard file."""

    def __post_init__(self) -> None:
        _choice("data.tokenizer_kind", self.tokenizer_kind, ("wordpiece", "bpe", "unigram"))
        _choice("data.errors", self.errors, ("strict", "replace"))
        _choice("data.dedup", self.dedup, ("near", "exact", "off"))
        if not 0 <= self.near_dup_threshold <= 1:
            raise ConfigError(f"data.near_dup_threshold must be in [0, 1] (a Jaccard similarity; 0 turns the near "
                              f"pass off), got {self.near_dup_threshold}")
        if self.seq_len < 8:
            raise ConfigError(f"data.seq_len must be at least 8, got {self.seq_len}")
        if 0 < self.vocab_size < 16 or self.vocab_size < 0:
            raise ConfigError(f"data.vocab_size must be at least 16 (or 0: proposed from the corpus), got {self.vocab_size}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.shard_tokens < 1:
            raise ConfigError(f"data.shard_tokens must be at least 1, got {self.shard_tokens}")


# --------------------------------------------------------------------------- objectives

OBJECTIVE_NAMES = tuple(OBJECTIVES)
"""objective.weights' accepted keys (objectives/spec.py: what each trains, on which backbones)."""


@dataclass(frozen=True)
class ObjectiveConfig:
    weights: dict[str, float] = field(default_factory=lambda: dict(BACKBONES[ModelConfig.backbone].default_objectives))
    """Objectives and their loss weights, e.g. {mlm: 1.0, nsp: 1.0}. Default {mlm: 1.0}; with
    model.backbone=decoder {clm: 1.0}; with model.backbone=encoder-decoder {infill: 1.0, permute: 1.0}.
    clm is next-token prediction, the decoder's objective; bilm is ELMo's forward + backward LM, the rnn's
    (clm on an rnn is read as bilm, with a note).
    The encoder-decoder takes one of infill (BART's text infilling), permute (BART's sentence permutation),
    span (T5's span corruption), or infill and permute together: BART's recipe, one corruption (shuffle
    the sentences, then infill) and one loss named infill+permute (weight 1; the two weights only switch
    the corruptions on)."""
    mask_rate: float = 0.15
    """Share of tokens selected for MLM prediction (up to 0.4); with mask_rate_end, the share at the start."""
    mask_rate_end: float = 0.0
    """The mask rate at the end of the budget (mlm, rtd, hybrid): it moves linearly from mask_rate to this as the budget
    is spent, as the learning rate's schedule does (GPT-BERT: mask_rate=0.3, mask_rate_end=0.15); 0: constant
    mask_rate. Validation masks at this end rate."""
    whole_word: bool = False
    """Mask whole words (all pieces of a word together): mlm's masked tokens, rtd's generator input, hybrid's masked
    rows; refused for a run that trains none of them. A run saved with rtd or hybrid and whole_word=true masked single
    tokens (only mlm read it then); resumed or continued, it masks whole words."""
    mask_span: float = 0.0
    """mlm only: mask spans of consecutive tokens, of geometric length with this mean before the cap of 10 tokens
    (LTG-BERT, Samuel et al. 2023: 3, so 2.95 after it; SpanBERT: 5), still mask_rate of the tokens in all; each span
    is [MASK]ed, replaced by random tokens or kept as a whole (80/10/10). 0: single tokens; else in [1, 10].
    Not with whole_word."""
    plm_k: int = 6
    """PLM: predict the last 1/K tokens of each factorisation order."""
    causal_share: float = 0.0625
    """hybrid: the share of each batch's rows trained as causal LM, the rest by masked next-token prediction, and
    the causal loss's share of the objective's loss (GPT-BERT: 1/16, 15 masked : 1 causal)."""
    rtd_generator_fraction: float = 0.25
    """RTD: the generator's hidden size as a share of the discriminator's (ELECTRA-small 0.25, base 1/3); its depth
    is the discriminator's, its feed-forward in the discriminator's proportion."""
    rtd_generator_head_size: int = 64
    """RTD: the generator's attention heads are this wide (ELECTRA: 64, so ELECTRA-small's 64-wide generator has one
    head); 0: whole heads of the discriminator's head size (pretrainlab before issue #28: a tiny model's generator
    was then half its width, not a quarter)."""
    rtd_shared_embeddings: str = "all"
    """RTD: which embedding tables the generator shares with the discriminator (through one projection to its
    width): all (token, position and segment, as ELECTRA) or token (the token table alone, pretrainlab before #28)."""
    rtd_masking: str = "electra"
    """RTD: what replaces a picked token in the generator's input: electra (85% [MASK], 15% kept, as ELECTRA) or
    bert (80% [MASK], 10% a random token, 10% kept: pretrainlab before #28)."""
    rtd_weight: float = 50.0
    """RTD: discriminator loss weight (ELECTRA uses 50)."""
    tie_embeddings: bool = False
    """The vocabulary projection of the mlm/plm/clm/bilm heads shares the input embedding matrix (BERT);
    false gives the heads their own, which keeps the input embeddings of rare words apart (tied ones
    crowd into one direction) and fine-tunes better (Chung et al. 2021). The encoder-decoder always ties
    its output projection to the token embedding (as BART does, and T5 in transformers)."""
    infill_mask_ratio: float = 0.3
    """infill: share of a document's tokens hidden in spans, each span replaced by one [MASK] (BART: 0.3)."""
    infill_poisson_lambda: float = 3.0
    """infill: span lengths are Poisson(lambda) (BART: 3); a length-0 span inserts a [MASK]."""
    span_noise_density: float = 0.15
    """span: share of a row's tokens corrupted (T5: 0.15)."""
    span_mean_length: float = 3.0
    """span: mean length of a corrupted span (T5: 3); each span becomes one sentinel token."""
    span_sentinels: int = 100
    """span: sentinel tokens <extra_id_0> ... added to the run's tokenizer (T5: 100); a row that would need
    more spans than this is refused before training."""

    def __post_init__(self) -> None:
        if not isinstance(self.weights, dict):
            raise ConfigError(f"objective.weights must map objectives to weights, e.g. {{mlm: 1.0, nsp: 1.0}}; got {self.weights!r}")
        if not self.weights:
            raise ConfigError("objective.weights is empty; give at least one, e.g. {mlm: 1.0}")
        for name, w in self.weights.items():
            _choice("objective.weights", name, OBJECTIVE_NAMES)
            if type(w) not in (int, float):
                raise ConfigError(f"objective.weights.{name} must be a number, got {w!r}")
            if w < 0:
                raise ConfigError(f"objective.weights.{name} must be >= 0, got {w}")
        if not 0 < self.mask_rate <= 0.4:
            raise ConfigError(f"objective.mask_rate must be in (0, 0.4], got {self.mask_rate}")
        if not 0 <= self.mask_rate_end <= 0.4:
            raise ConfigError(f"objective.mask_rate_end must be in (0, 0.4], or 0 for a constant mask_rate; "
                              f"got {self.mask_rate_end}")
        if self.mask_span and not 1 <= self.mask_span <= SPAN_CAP:
            raise ConfigError(f"objective.mask_span is the mean length of mlm's masked spans, in [1, {SPAN_CAP}] "
                              f"(LTG-BERT: 3), or 0 for single tokens; got {self.mask_span}")
        if self.mask_span and self.whole_word:
            raise ConfigError(f"objective.mask_span={self.mask_span} and objective.whole_word=true are two ways to "
                              "choose the masked tokens (spans of tokens, whole words); keep one of them")
        why = unread(self.weights, vars(self))  # objectives/spec.py: the settings only some objectives read
        if why:
            raise ConfigError(why)
        _choice("objective.rtd_shared_embeddings", self.rtd_shared_embeddings, ("all", "token"))
        _choice("objective.rtd_masking", self.rtd_masking, ("electra", "bert"))
        if self.rtd_generator_head_size < 0:
            raise ConfigError(f"objective.rtd_generator_head_size must be >= 0 (ELECTRA: 64; 0: the discriminator's "
                              f"head size), got {self.rtd_generator_head_size}")
        if self.plm_k < 1:
            raise ConfigError(f"objective.plm_k must be >= 1, got {self.plm_k}")
        if not 0 <= self.infill_mask_ratio < 1:
            raise ConfigError(f"objective.infill_mask_ratio must be in [0, 1) (the share of tokens hidden), "
                              f"got {self.infill_mask_ratio}")
        if self.infill_poisson_lambda <= 0:
            raise ConfigError(f"objective.infill_poisson_lambda must be positive (the mean span length), "
                              f"got {self.infill_poisson_lambda}")
        if not 0 < self.span_noise_density < 1:
            raise ConfigError(f"objective.span_noise_density must be in (0, 1), got {self.span_noise_density}")
        if self.span_mean_length < 1:
            raise ConfigError(f"objective.span_mean_length must be >= 1 (tokens per span), got {self.span_mean_length}")
        if self.span_sentinels < 1:
            raise ConfigError(f"objective.span_sentinels must be >= 1 (one per corrupted span), got {self.span_sentinels}")


# --------------------------------------------------------------------------- training

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_TIME = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


@dataclass(frozen=True)
class Budget:
    """How long to train: steps, tokens or seconds (`parse` gives one); with more than one set, training
    ends at whichever runs out first (finetune's auto budget: steps within a wall-clock cap)."""

    steps: int | None = None
    tokens: int | None = None
    seconds: float | None = None

    @staticmethod
    def parse(text: str | int, name: str = "train.budget") -> Budget:
        """'2000' or '2000steps' -> steps; '10m', '90s', '1h' -> wall clock; '3Mtok', '500ktok' -> tokens.

        Units are case-blind (10M is refused: minutes or mega-tokens?); `name` is the setting, for the messages."""
        m = _BUDGET.match(str(text))
        if not m:
            raise ConfigError(f"{name}={text!r} is not a budget; write e.g. 2000 (steps), 10m, 1h, 3Mtok")
        value, unit = float(m.group(1)), m.group(2).lower()
        if m.group(2) == "M":
            number = m.group(1)
            raise ConfigError(f"{name}={text!r} is ambiguous: write {number}m for {number} minutes or {number}Mtok for "
                              f"{number} million tokens")
        if value <= 0:
            raise ConfigError(f"{name}={text!r} is zero; give a positive budget")
        if unit in _TIME:
            return Budget(seconds=value * _TIME[unit])
        if unit in ("", "step", "steps"):
            return Budget(steps=_at_least_one(name, text, int(value), "step"))
        if unit in ("tok", "tokens"):
            return Budget(tokens=_at_least_one(name, text, int(value), "token"))
        if unit in ("ktok",):
            return Budget(tokens=_at_least_one(name, text, int(value * 1e3), "token"))
        if unit in ("mtok",):
            return Budget(tokens=_at_least_one(name, text, int(value * 1e6), "token"))
        raise ConfigError(f"{name}={text!r}: unknown unit {m.group(2)!r}; use steps, s, m, h, tok, ktok or Mtok")


def _at_least_one(name: str, text: str | int, n: int, unit: str) -> int:
    if n < 1:
        raise ConfigError(f"{name}={text!r} is less than one {unit}; give a larger budget")
    return n


@dataclass(frozen=True)
class TrainConfig:
    budget: str = "5m"
    """Training budget: steps (2000), wall clock (10m, 1h) or tokens (3Mtok); the LR schedule spans it."""
    batch_size: int = 32
    """Sequences per optimizer step (before accumulation)."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    lr: float = 2e-3
    """Peak learning rate after warm-up."""
    warmup: float = 0.06
    """Warm-up as a share of the budget."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to biases and norms)."""
    clip: float = 1.0
    """Gradient-norm clipping; 0 disables it."""
    head_warmup: float = 0.1
    """Continued pre-training from an imported model whose MLM head was initialised fresh (all-MiniLM-L6-v2 ships
    none; `import` says so): this share of the budget trains the head alone, the body frozen, so that a random head
    does not scramble the body in its first steps; 0: the body moves from the start."""
    ema: float = 0.0
    """Weight EMA decay (GPT-BERT: 0.999); 0: off. The average of the weights over the last steps is what the
    run validates and what its checkpoint holds as the model (finetune, export, curve, --init read it); the
    decay warms up as min(ema, (1 + step) / (10 + step)) so a short run does not average in its initialisation."""
    precision: str = "auto"
    """auto (bf16 where the device computes it natively: CPUs with AVX512-BF16 or AMX, GPUs from Ampere on;
    fp16 with loss scaling on older GPUs with tensor cores; else fp32), bf16, fp16 (with loss scaling) or fp32
    (on Ampere and newer GPUs its matmuls run in TF32)."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    parallel: str = "ddp"
    """Under torchrun: ddp (each process holds the whole model) or fsdp (shards it, for a model too large for one device)."""
    seed: int = 0
    """Random seed."""
    prefetch: int = -1
    """Micro-batches packed and masked ahead on a background thread while the model trains (into pinned memory
    for a GPU); 0: each built when the step asks for it. -1 (auto): 2 on a GPU, 0 on a CPU. The batches are
    the same either way (resumed runs too)."""
    deterministic: bool = False
    """Same seed, same result: deterministic kernels, one thread order."""
    eval_every: int = 200
    """Validate every N optimizer steps (0: only at the end)."""
    eval_batches: int = 20
    """Validation batches per evaluation."""
    checkpoint_minutes: float = 10.0
    """Write a checkpoint every N minutes (and always at the end)."""
    checkpoint_every: int = 0
    """Also write a checkpoint every N steps (0: off)."""
    log_every: int = 10
    """Append metrics every N steps."""
    on_nan: str = "stop"
    """On a NaN/inf loss: stop (naming the step) or skip (drop the batch and count it)."""
    tensorboard: bool = False
    """Also write TensorBoard events (needs the tensorboard package)."""
    progress: bool = True
    """Show a progress bar (on stderr, while messages are shown: the command line without -q, or the `pretrainlab`
    logger at INFO)."""

    def __post_init__(self) -> None:
        Budget.parse(self.budget)
        _choice("train.precision", self.precision, ("auto", "bf16", "fp16", "fp32"))
        _choice("train.on_nan", self.on_nan, ("stop", "skip"))
        _choice("train.parallel", self.parallel, ("ddp", "fsdp"))
        for name in ("batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")
        if self.prefetch < -1:
            raise ConfigError(f"train.prefetch is a number of batches (0: none ahead, -1: auto), got {self.prefetch}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"train.warmup is a share of the budget in [0, 1), got {self.warmup}")
        if not 0 <= self.head_warmup < 1:
            raise ConfigError(f"train.head_warmup is a share of the budget in [0, 1), got {self.head_warmup}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"train.ema is a decay in [0, 1) (e.g. 0.999; 0: off), got {self.ema}")


# --------------------------------------------------------------------------- fine-tuning


@dataclass(frozen=True)
class FinetuneConfig:
    task: str = "mr"
    """Built-in task name (mr, tweets, wordnet-supersense, wordnet-pairs) or a CSV/TSV/JSONL file."""
    text_column: str = "text"
    """Column/field with the text."""
    text_pair_column: str | None = None
    """Column/field with the second text of a pair (None: single texts)."""
    label_column: str = "label"
    """Column/field with the label."""
    group_column: str | None = None
    """Column whose equal values stay in one split (prevents leakage)."""
    pooling: str = "mean"
    """Sentence representation: mean (of the real tokens; measured better than cls on MR) or cls. A decoder
    always pools its last real token (the only one that has read the whole text), whatever is set here."""
    dropout: float | None = 0.1
    """Dropout while fine-tuning (backbone and head); null: the pre-training run's model.dropout."""
    max_len: int = 128
    """Truncate inputs to this many tokens."""
    budget: str = "auto"
    """Per seed: steps (2000), wall clock (5m) or tokens (3Mtok), as train.budget; the LR schedule (warm-up,
    linear decay to 0) spans it. auto: finetune.epochs passes over the training split, at least
    finetune.min_steps steps, and at most finetune.max_minutes."""
    max_minutes: float = 5.0
    """Wall-clock cap of an auto budget, per seed (0: none): the LR schedule ends at whichever of the steps and
    the minutes runs out first, so that a 10k-example task fine-tunes in about 5 minutes on 2 cores."""
    epochs: int = 20
    """Passes over the training split of an auto budget."""
    steps: int = 0
    """Optimizer steps of the budget (the older spelling of finetune.budget=N); 0: finetune.budget."""
    min_steps: int = 200
    """Floor of an auto budget, so that a small task (300 labels: 8 steps an epoch) is not cut short;
    early stopping counts no evaluation before this step against the patience."""
    evals: int = 20
    """Validations in a budget of steps: every budget/evals steps, so that their number (and the chance that
    one of them is best by luck) does not grow with the task; 0: once per epoch. A time or token budget
    validates once per epoch."""
    batch_size: int = 32
    """Examples per step."""
    lr: float = 1e-3
    """Peak learning rate (measured on MR, 1,000 labels: 1e-3 > 3e-4 for pretrained and random init)."""
    patience: int = 0
    """Early stopping: validations without a better accuracy before stopping, counted from step min_steps on;
    0: train the whole budget (the LR decays to 0) and keep the best validation's weights. Stopping early ends
    a run while its LR is still high (docs/finetuning.md); patience 3, evals 0 and max_minutes 0 is the rule
    before issue #26."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds to run (finetune, curve and distill alike); mean, std and median are reported."""
    val_fraction: float = 0.1
    """Validation share when the task has no validation split."""
    test_fraction: float = 0.1
    """Test share when the task has no test split."""
    max_train: int = 0
    """Use at most this many training examples (0: all)."""
    inference_precision: str = "auto"
    """Precision of predict and evaluate: auto (bf16 where the device has fast bf16, as fine-tuning scores its
    own validation and test splits; labels agree with fp32 on >= 99% of examples), bf16, or fp32 (exactly what
    the Hugging Face export computes). `predict` / `evaluate --precision` override it."""

    def __post_init__(self) -> None:
        _choice("finetune.pooling", self.pooling, ("cls", "mean"))
        _choice("finetune.inference_precision", self.inference_precision, ("auto", "bf16", "fp32"))
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"finetune.dropout={self.dropout} must be in [0, 1), or null for the run's model.dropout")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("finetune.epochs and finetune.batch_size must be >= 1")
        if self.steps < 0 or self.min_steps < 0:
            raise ConfigError(f"finetune.steps={self.steps} and finetune.min_steps={self.min_steps} must be >= 0 "
                              "(0: no fixed budget / no floor)")
        if self.budget != "auto":
            Budget.parse(self.budget, "finetune.budget")
            if self.steps:
                raise ConfigError(f"finetune.steps={self.steps} and finetune.budget={self.budget} both set the budget; "
                                  "keep one")
        if self.max_minutes < 0 or self.evals < 0 or self.patience < 0:
            raise ConfigError(f"finetune.max_minutes={self.max_minutes}, finetune.evals={self.evals} and "
                              f"finetune.patience={self.patience} must be >= 0 (0: no cap / once per epoch / never stop)")


# --------------------------------------------------------------------------- distillation


AUGMENT_TARGETS = ("teacher", "source")
"""What distill.augment's copies learn: the teacher's label of the copy, or of its source text."""


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 2.0
    """Softmax temperature T of the KL(teacher || student) term (Hinton et al. 2015); the term is scaled by
    T^2 so that its gradients keep their size as T changes."""
    alpha: float = 0.5
    """Weight of the cross-entropy on a labelled training example's gold label, added to its KL term
    (unlabelled texts have only the KL term). Below 1 because the soft labels carry more per example
    (Hinton et al. 2015: a considerably lower weight on the hard targets worked best); not measured here."""
    hidden_weight: float = 0.0
    """Weight of a hidden-state loss: MSE between a learned projection of the student's pooled sentence
    representation and the teacher's (cached with its logits); 0: off."""
    budget: str = ""
    """Training budget per seed: steps (2000), wall clock (10m) or tokens (3Mtok); empty: at most distill.epochs
    passes over the texts (unlabelled pieces + labelled training examples), ended sooner by distill.patience."""
    epochs: int = 20
    """Passes over the texts when distill.budget is empty: a cap; distill.patience ends a run once validation stops
    improving. 20 leaves the patience (two passes without progress) room to stop a student whose best falls
    anywhere before pass 18. The LR schedule (warm-up, linear decay to 0) spans the cap, so a student stopped at
    pass 8 stops at ~60% of its peak LR: a smaller cap anneals sooner, but may end a student still improving.
    3 before issue #29: a tiny student's best validation fell on its last step, and patience 3 at one validation
    a pass could never end a run."""
    batch_size: int = 32
    """Texts per optimizer step."""
    lr: float = 1e-3
    """Peak learning rate of the student (warm-up and decay over the budget: train.warmup)."""
    patience: int = 8
    """Early stopping: validations on the task's validation split without a better accuracy (an equal one with a
    lower loss counts as better); 0: never. 8 at distill.evals_per_epoch=4: two passes over the texts without
    progress end a run, a few unlucky validations in a row do not."""
    min_steps: int = 0
    """Evaluations before this step never count against the patience."""
    evals_per_epoch: int = 4
    """Validations per pass over the texts (every steps-a-pass // N steps, at least every step), whatever the
    budget, so that the patience counts in fractions of a pass (4: quarters) and a run ends within a quarter pass
    of its patience running out. 1: once a pass, as before issue #29 (a distillation saved before this setting
    existed resumes with distill.evals_per_epoch=1 and its own epochs and patience)."""
    eval_every: int = 0
    """Validate every N optimizer steps; 0: distill.evals_per_epoch times a pass over the texts."""
    max_texts: int = 0
    """Use at most this many unlabelled pieces (a fixed sample, ordered by text hash); 0: all. In a learning curve
    (`--self-train`, `--student`): at most this many texts in each pool, the training texts outside the labels
    included."""
    cache: str = ""
    """Directory of the teacher-logits cache; empty: the user cache directory (pretrainlab/teacher-logits)."""
    shard_texts: int = 4096
    """Texts per cache shard: at most this much of the teacher's labelling is lost to a kill."""
    teacher_batch_size: int = 64
    """Texts per teacher forward pass while labelling."""
    max_unk: float = 0.05
    """Largest share of the texts' tokens that the student's tokenizer may map to [UNK]; more is an error."""
    vocab_size: int = 8192
    """A random-init student's (preset:NAME) own WordPiece vocabulary when no --tokenizer is given, trained on the
    texts it learns from (the labelled training texts and the unlabelled pieces; data.tokenizer_kind,
    data.lowercase): sized for a small model, as the measured MR students' 8,192 (the teacher's 30,522-token
    vocabulary at d=128 is 3.9M of a tiny student's parameters). 0: the teacher's tokenizer. A learning curve's
    students (`curve --student`) read with the run's tokenizer instead, as its fine-tuned rows do."""
    throughput_texts: int = 256
    """Test texts timed for the CPU throughput of teacher and student (batch 32; batch 1 times the first 64)."""
    augment: int = 0
    """Augmented copies of each unlabelled pool text, labelled by the teacher beside the originals (Tang et al.
    2019's transfer-set augmentation, their n_iter: 20 on SST-2, 10 elsewhere; distill.augment_targets=source: each
    copy takes its original's label instead); 0: none. Per word of a copy: [MASK]
    with probability distill.augment_mask, else a word of the pool with distill.augment_swap; then, with
    distill.augment_ngram, the whole copy becomes a random n-gram of itself (n uniform in 1-5). Copies equal to a
    text already there or to a validation/test text (after normalisation) are dropped. It follows distill.max_texts
    (the cap applies to the originals) and feeds every pool: `distill`'s and a curve's self-trained and distilled
    rows'. Not yet measured here."""
    augment_mask: float = 0.1
    """Per word of an augmented copy: the probability of [MASK] (Tang et al. 2019's p_mask, 0.1), when the teacher's
    tokenizer reads the literal "[MASK]" as its mask token (else such a word is swapped instead). Not yet measured
    here."""
    augment_swap: float = 0.1
    """Per word of an augmented copy: the probability of a random word of the pool drawn by frequency (Tang et al.
    2019 drew one of the same part of speech, p_pos 0.1; there is no tagger here). Not yet measured here."""
    augment_ngram: float = 0.25
    """Per augmented copy: the probability that it becomes a random n-gram of itself, n uniform in 1-5 (Tang et al.
    2019's p_ng, 0.25). Not yet measured here."""
    augment_targets: str = "teacher"
    """What an augmented copy (distill.augment) learns: "teacher", the teacher's soft label of the copy itself (Tang et
    al. 2019); "source", the teacher's soft label of the clean pool text it was made from (the consistency of Noisy
    Student, Xie et al. 2020, and UDA, Xie et al. 2019: the teacher reads clean text, the student the noised copy, so
    it learns to ignore the noise). "source" runs the teacher on the originals only, 1/(distill.augment + 1) of its
    passes over the pool: the choice for a large teacher, or when a copy's noise (a [MASK], an n-gram) leaves too
    little for the teacher to read. In a curve's self-training, each round's teacher labels the sources again. Not
    yet measured here."""
    tfidf_weight: float = 0.0
    """A second teacher whose errors differ from the first's (co-training, Blum & Mitchell 1998): each text's soft
    label becomes (1 - w) x the teacher's probabilities + w x those of TF-IDF + logistic regression fitted on the
    same labelled training texts (as the curve's tfidf row is fitted, C picked on the same validation split, with
    solver seed 0 where the row uses the curve's seed); 0: the teacher alone. For a teacher fine-tuned on a few hundred labels, whose own soft labels are wrong on a third of
    the pool (from-scratch self-training, issue #29). In a curve it mixes into every self-training round's and
    every student's labels; the cache keeps the teacher's own logits."""
    confident_share: float = 1.0
    """Share of the unlabelled pool the student learns from: of the pool texts whose soft label (after
    distill.tfidf_weight's mix) picks a class, the share with the highest probability for it, class by class, so
    the kept pool keeps the soft labels' class proportions; the labelled texts always stay. 1: the whole pool. The
    confidence selection of self-training (Du et al. 2021 kept the top texts per class; UDA and FixMatch mask the
    unsure ones): a teacher fine-tuned on a few hundred labels is wrong most often where it is least sure. With
    distill.augment, each copy is a pool text of its own. In a curve's self-training, each round's teacher picks
    again."""

    def __post_init__(self) -> None:
        if self.budget:
            Budget.parse(self.budget, "distill.budget")
        if self.temperature <= 0:
            raise ConfigError(f"distill.temperature must be positive, got {self.temperature}")
        for name in ("alpha", "hidden_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"distill.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("epochs", "evals_per_epoch", "batch_size", "shard_texts", "teacher_batch_size",
                     "throughput_texts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"distill.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("patience", "min_steps", "eval_every", "max_texts", "augment"):
            if getattr(self, name) < 0:
                raise ConfigError(f"distill.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("augment_mask", "augment_swap", "augment_ngram"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"distill.{name} is a probability in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.tfidf_weight <= 1:
            raise ConfigError(f"distill.tfidf_weight is TF-IDF + LR's share of the soft labels, in [0, 1] (0: the "
                              f"teacher alone), got {self.tfidf_weight}")
        if not 0 < self.confident_share <= 1:
            raise ConfigError(f"distill.confident_share is the share of the unlabelled pool kept, the texts the soft "
                              f"labels are surest of, in (0, 1] (1: all of it), got {self.confident_share}")
        _choice("distill.augment_targets", self.augment_targets, AUGMENT_TARGETS)
        if self.augment_targets != "teacher" and not self.augment:
            raise ConfigError(f"distill.augment_targets={self.augment_targets} chooses what distill.augment's copies "
                              "learn, and distill.augment=0 makes none; set distill.augment=N (copies of each pool "
                              "text), or drop distill.augment_targets")
        if self.augment_mask + self.augment_swap > 1:
            raise ConfigError(f"distill.augment_mask + distill.augment_swap is the share of a copy's words replaced, "
                              f"at most 1; got {self.augment_mask} + {self.augment_swap}: lower one of them")
        if 0 < self.vocab_size < 16 or self.vocab_size < 0:
            raise ConfigError(f"distill.vocab_size must be at least 16 (or 0: the teacher's tokenizer), got "
                              f"{self.vocab_size}")
        if self.lr <= 0:
            raise ConfigError(f"distill.lr must be positive, got {self.lr}")
        if not 0 <= self.max_unk <= 1:
            raise ConfigError(f"distill.max_unk is a share in [0, 1], got {self.max_unk}")


# --------------------------------------------------------------------------- self-training

STUDENT_BACKBONES = ("transformer", "rnn", "cnn")
"""The backbones a learning curve distils its students into (`curve --student-backbone`): small, fast classifiers."""
DEFAULT_STUDENT_BACKBONE = "cnn"
"""The best of the three measured on MR (benchmarks/results/distill.md: CNN 0.824, RNN 0.816, Transformer 0.799):
a curve's and a pipeline's students, and `distill --student preset:NAME`'s model.backbone unless a setting names
another."""
DAPT_LR = 1e-4
"""Peak learning rate of a reference's continued pre-training in a curve (`--reference-dapt`): BERT's fine-tuning
scale, for a trained model (train.lr's 2e-3 is a from-scratch rate and would scramble it)."""
REFERENCE_LR = 1e-4
"""Fine-tuning learning rate of a real checkpoint (an imported all-MiniLM-L6-v2) in `pipeline --reference` and the
checkpoint demo: the benchmark grid's and benchmarks/semisup.sh's for MiniLM (finetune.lr's 1e-3 is a from-scratch
model's rate)."""


@dataclass(frozen=True)
class SelfTrainConfig:
    """Self-training in the learning curve (`curve --self-train`): a fine-tuned model labels the unlabelled pool
    and a student with its pre-trained starting weights learns the soft labels plus the gold ones (noisy student:
    the student trains with dropout, the teacher labels without). It trains with finetune.lr, batch_size,
    patience and min_steps, and stops on the same validation fifth of the labels."""

    rounds: int = 1
    """Teacher -> student rounds; each later round's teacher is the previous round's student. The round best on
    validation is the row's model."""
    temperature: float = 1.0
    """Softmax temperature of the KL(teacher || student) term (scaled by T^2, as distill.temperature)."""
    alpha: float = 1.0
    """Weight of the cross-entropy on the gold labels, added to their KL term (pool texts have the KL term only)."""
    epochs: int = 3
    """Passes over the gold labels and the pool per round (at least finetune.min_steps steps)."""
    dropout: float | None = None
    """The student's dropout (its noise); null: finetune.dropout."""

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.epochs < 1:
            raise ConfigError(f"selftrain.rounds and selftrain.epochs must be >= 1, got {self.rounds} and {self.epochs}")
        if self.temperature <= 0:
            raise ConfigError(f"selftrain.temperature must be positive, got {self.temperature}")
        if self.alpha < 0:
            raise ConfigError(f"selftrain.alpha must be >= 0, got {self.alpha}")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"selftrain.dropout={self.dropout} must be in [0, 1), or null for finetune.dropout")


# --------------------------------------------------------------------------- the whole run


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    selftrain: SelfTrainConfig = field(default_factory=SelfTrainConfig)

    def __post_init__(self) -> None:
        why = refusal(self.model.backbone, self.objective.weights)  # objectives/spec.py: each objective's rules
        if why:
            raise ConfigError(why)
        if self.data.seq_len > self.model.max_len and BACKBONES[self.model.backbone].has_positions:
            raise ConfigError(
                f"data.seq_len={self.data.seq_len} is longer than model.max_len={self.model.max_len} "
                "(the position embeddings); raise model.max_len or lower data.seq_len"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.model.preset == AUTO:  # no sizes yet: pretrain chooses them (so a printed config loads back as auto)
            d["model"] = {k: v for k, v in d["model"].items() if k not in SIZE_FIELDS}
        return d


SECTIONS = {f.name: f.type for f in fields(RunConfig)}
_SECTION_CLASSES = {
    "model": ModelConfig,
    "data": DataConfig,
    "objective": ObjectiveConfig,
    "train": TrainConfig,
    "finetune": FinetuneConfig,
    "distill": DistillConfig,
    "selftrain": SelfTrainConfig,
}


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        hint = difflib.get_close_matches(str(value), allowed, n=1)
        also = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}{also}")


@cache
def _field_types(cls: type) -> dict[str, Any]:
    """Each field's type, resolved from its annotation (the module's annotations are strings)."""
    return typing.get_type_hints(cls)


_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str"}
_EXAMPLES = {int: 1, float: 0.1, bool: True, str: "NAME"}


def _coerce(section: str, cls: type, key: str, value: Any, in_file: bool = False) -> Any:
    """Bring a YAML value to the field's type (tuples from lists, floats from ints and from YAML's 3e-4), or
    refuse it naming the field, the value and an example (as --set, or as the file's line with in_file).
    `X | None` fields take null or an X."""
    ftype = _field_types(cls)[key]
    args = typing.get_args(ftype)
    optional = typing.get_origin(ftype) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        if value is None:
            return None
        (ftype,) = [a for a in args if a is not type(None)]
    try:
        return _to_type(ftype, value)
    except (TypeError, ValueError):
        origin = typing.get_origin(ftype)
        expects = (f"a list of {_TYPE_NAMES[typing.get_args(ftype)[0]]}" if origin is tuple
                   else _TYPE_NAMES.get(ftype, str(ftype)))
        example = getattr(_defaults(cls), key)
        if example is None:
            example = _EXAMPLES.get(ftype)
        also = f"{key}: {_inline_yaml(example)}" if in_file else f"--set {section}.{key}={_inline_yaml(example)}"
        name = f"{section}: {key}" if in_file else f"{section}.{key}"
        raise ConfigError(f"{name} expects {expects}{' or null' if optional else ''}, got {value!r}; e.g. {also}") from None


@cache
def _defaults(cls: type) -> Any:
    return cls()


def _inline_yaml(value: Any) -> str:
    """A value as one would write it after --set (YAML flow style): 0.1, true, [1, 2], {mlm: 1.0}."""
    text = yaml.safe_dump(_plain(value), default_flow_style=True, width=1_000).strip()
    return text.removesuffix("...").strip()


def _to_type(ftype: Any, value: Any) -> Any:
    """value as ftype (int, float, bool, str, tuple[int, ...] or dict[...]); TypeError / ValueError if it is not one."""
    origin = typing.get_origin(ftype)
    if origin is tuple:
        (item,) = [a for a in typing.get_args(ftype) if a is not Ellipsis]
        one = (int, float, str) if item is str else (int, float)  # a lone value is a list of one
        items = value if isinstance(value, (list, tuple)) else [value] if isinstance(value, one) else None
        if items is None:
            raise TypeError(value)
        return tuple(_to_type(item, v) for v in items)
    if origin is dict:
        return value  # the section checks its keys and values itself (objective.weights)
    if isinstance(value, bool) and ftype is not bool:
        raise TypeError(value)
    if ftype is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            return float(value)
        if isinstance(value, (int, float)):
            return float(value)
    elif ftype is int:
        if isinstance(value, int):
            return value
    elif ftype is str:
        if isinstance(value, (str, int, float)):
            return str(value)
    elif ftype is bool:
        if isinstance(value, bool):
            return value
    else:
        return value
    raise TypeError(value)


def preset_sizes(backbone: str, preset: str, given: dict[str, Any]) -> dict[str, Any]:
    """The sizes `preset` stands for with this backbone: the Transformer's, or the RNN / CNN / encoder-decoder
    ones matched to it in parameters (its row's presets in backbones/spec.py). Sizes in `given` win over them.
    auto stands for tiny until `pretrain` chooses (sizing.py)."""
    if preset == AUTO:
        preset = "tiny"
    table = BACKBONES[backbone].presets
    if preset in table:
        return dict(table[preset])
    if {"d_model", "n_layers"} <= set(given):
        return {}
    raise ConfigError(
        f"model.preset={preset} has no {backbone.upper()} size matched to it; choose model.preset among "
        f"{', '.join(table)}, or give model.d_model and model.n_layers"
    )


def _check_style(backbone: str, style: str) -> None:
    """model.style must be one of the backbone's own (backbones/spec.py), else say which fit and whose it is."""
    styles = BACKBONES[backbone].styles
    if style in styles:
        return
    owner = next((k for k, s in BACKBONES.items() if style in s.styles), None)
    whose = f" ({style} is the {owner}'s)" if owner else ""
    hint = difflib.get_close_matches(str(style), styles, n=1)
    also = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise ConfigError(f"model.style={style!r} is not a style of the {backbone} backbone{whose}; with "
                      f"model.backbone={backbone} choose {' or '.join(styles)}{also}")


def _imply_backbone(model: dict[str, Any]) -> None:
    """model.style of exactly one kind (its row in backbones/spec.py: t5 the encoder-decoder's, llama the decoder's)
    sets model.backbone where the file and --set leave it out; a backbone given is kept (and _check_style judges)."""
    style = model.get("style")
    owners = [k for k, s in BACKBONES.items() if isinstance(style, str) and style in s.styles]
    if "backbone" in model or len(owners) != 1 or owners[0] == ModelConfig.backbone:
        return
    model["backbone"] = owners[0]
    log.info(f"model.style={style} is the {owners[0]}'s: model.backbone={owners[0]}")


def _check_keys(cls: type, values: dict[str, Any], unknown: str, prefix: str = "") -> None:
    """Every key must be a field of cls: else `unknown` + the key (prefix + key) and the closest field."""
    known = [f.name for f in fields(cls)]
    for key in values:
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            also = f"; did you mean {prefix}{hint[0]}?" if hint else f"; known: {', '.join(known)}"
            raise ConfigError(f"{unknown}{prefix}{key}{also}")


def from_mapping(cls: type, values: Any, where: str) -> Any:
    """A frozen dataclass of a YAML file (a grid and its entries) by the run config's rules: every key one of its
    fields (else the closest is named), each value brought to the field's type (`_coerce`; a tuple of dataclasses
    from a list of mappings), the rest its defaults; a field without a default must be there."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of {', '.join(f.name for f in fields(cls))}, got {values!r}")
    _check_keys(cls, values, f"{where}: unknown key ")
    types_ = _field_types(cls)  # `key:` with nothing after it is the default (unless null is a value of the field)
    values = {k: v for k, v in values.items() if v is not None or type(None) in typing.get_args(types_[k])}
    missing = [f.name for f in fields(cls) if f.name not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(missing)}")
    out = {}
    for key, value in values.items():
        item = [a for a in typing.get_args(types_[key]) if a is not Ellipsis]
        if item and dataclasses.is_dataclass(item[0]):  # tuple[Entry, ...]: a list of mappings
            entries = value if isinstance(value, list) else [] if value is None else [value]
            out[key] = tuple(from_mapping(item[0], e, f"{where}: {key}[{i}]") for i, e in enumerate(entries))
        else:
            out[key] = _coerce(where, cls, key, value, in_file=True)
    return cls(**out)


def read_mapping(path: str | Path, what: str, holds: str) -> dict[str, Any]:
    """A YAML file that holds one mapping (a run config's sections, a grid): else an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        loaded = read_yaml(path) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected {holds}")
    return loaded


def build_section(section: str, values: dict[str, Any]) -> Any:
    cls = _SECTION_CLASSES[section]
    _check_keys(cls, values, "unknown setting ", f"{section}.")
    values = {k: _coerce(section, cls, k, v) for k, v in values.items()}
    if section == "model":
        backbone = values.get("backbone", ModelConfig.backbone)
        if backbone in BACKBONES and "style" not in values:  # the decoder's and bart's are not the encoder's
            values["style"] = BACKBONES[backbone].default_style
        preset = values.get("preset", ModelConfig.preset)
        if preset == AUTO and any(k in values for k in SIZE_FIELDS):  # explicit sizes: nothing left to choose
            preset = values["preset"] = "tiny"
        if preset is not None and (preset in PRESETS or preset == AUTO) and backbone in BACKBONES:
            values = {**preset_sizes(backbone, preset, values), **values}
    return cls(**values)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                base: RunConfig | None = None, base_sections: tuple[str, ...] = ()) -> RunConfig:
    """YAML file (optional) + `section.key=value` overrides -> a validated RunConfig.

    base / base_sections: start those sections from another config instead of the defaults (e.g. a
    run's own finetune settings, which the file and the overrides then change).
    """
    raw: dict[str, dict[str, Any]] = {s: dict(base.to_dict()[s]) for s in base_sections} if base else {}
    if path is not None:
        loaded = read_mapping(path, "config file", f"a mapping of sections ({', '.join(SECTIONS)})")
        for section, values in loaded.items():
            if section not in SECTIONS:
                hint = difflib.get_close_matches(str(section), list(SECTIONS), n=1)
                raise ConfigError(f"{path}: unknown section {section!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: section {section!r} must be a mapping")
            raw.setdefault(section, {}).update(values)
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set {item!r}: write section.key=value, e.g. train.lr=3e-4")
        if section not in SECTIONS:
            hint = difflib.get_close_matches(section, list(SECTIONS), n=1)
            raise ConfigError(f"--set {item!r}: unknown section {section!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        if "." in name:  # objective.weights.nsp=1.0
            head, _, tail = name.partition(".")
            current = dict(raw.get(section, {}).get(head, {}) or {})
            current[tail] = parsed
            raw.setdefault(section, {})[head] = current
        else:
            raw.setdefault(section, {})[name] = parsed
    _imply_backbone(raw.setdefault("model", {}))
    backbone, style = raw["model"].get("backbone", ModelConfig.backbone), raw["model"].get("style")
    if isinstance(backbone, str) and backbone in BACKBONES and "weights" not in raw.get("objective", {}):
        raw.setdefault("objective", {})["weights"] = dict(BACKBONES[backbone].objectives(style))  # decoder: clm ...
    return _run_config({s: build_section(s, raw.get(s, {})) for s in SECTIONS})


SAVED_BEFORE: dict[str, dict[str, Any]] = {
    "objective": {"rtd_generator_head_size": 0, "rtd_shared_embeddings": "token", "rtd_masking": "bert"},
}
"""What a run saved without these settings trained with (their defaults changed to ELECTRA's in issue #28): a saved
config.yaml lacking one is read with this value, so its generator is rebuilt as it was trained."""


def config_from_dict(d: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from `to_dict()` output (e.g. a run directory's config.yaml); a setting it lacks that
    SAVED_BEFORE names takes the value such runs trained with, and one switched on that none of its objectives reads
    is read as off (`_unread_off`)."""
    d = {s: {**SAVED_BEFORE.get(s, {}), **(d.get(s) or {})} for s in SECTIONS}
    d["objective"] = _unread_off(d["objective"])
    return _run_config({s: build_section(s, d[s]) for s in SECTIONS})


def _unread_off(objective: dict[str, Any]) -> dict[str, Any]:
    """A saved objective section with the settings none of its trained objectives reads (objectives/spec.py) off, each
    with a note: it changed nothing when the run trained, and a new config refuses it (objective.whole_word=true on
    a clm run was taken before whole_word was refused where nothing masks tokens)."""
    weights = objective.get("weights")
    if not isinstance(weights, dict) or any(type(w) not in (int, float) for w in weights.values()):
        return objective  # build_section says what is wrong
    defaults = {f.name: f.default for f in fields(ObjectiveConfig)}
    off = {key: defaults[key] for key in unread_switches(weights, objective)}
    trained = ", ".join(name for name, w in weights.items() if w > 0) or "none"
    for key in off:
        log.warning(f"note: this run's objective.{key} changed nothing (none of its objectives, {trained}, reads it): "
                    f"read as {str(off[key]).lower()}")
    return {**objective, **off}


def _run_config(parts: dict[str, Any]) -> RunConfig:
    """The sections as one RunConfig, an objective's old name read as what it stands for on the backbone (with a
    one-line note: clm on an rnn is bilm)."""
    weights, notes = renamed(parts["objective"].weights, parts["model"].backbone)
    for note in notes:
        log.warning(f"note: {note}")  # an old name, as the CLI's renamed flags: -q keeps it
    if notes:
        parts["objective"] = replace(parts["objective"], weights=weights)
    return RunConfig(**parts)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(config_yaml(cfg), encoding="utf-8")


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def with_changes(cfg: Any, **changes: Any) -> Any:
    return replace(cfg, **changes)


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring after each field, read from the source (dataclasses do not keep them)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[node.target.id] = str(nxt.value.value)  # type: ignore[union-attr]
    return docs


def describe(sections: tuple[str, ...] = tuple(SECTIONS), cfg: RunConfig | None = None) -> str:
    """Every settable field of these sections with the value a run uses (cfg; default: nothing set, so the
    model's sizes are model.preset's) and its whole doc, for --help-config."""
    cfg = cfg or load_config()
    lines = []
    for s in sections:
        section = getattr(cfg, s)
        from_preset = set(preset_sizes(cfg.model.backbone, cfg.model.preset, {})) if s == "model" and cfg.model.preset \
            else set()
        docs = field_docs(_SECTION_CLASSES[s])
        lines.append(f"{s}:")
        for f in fields(section):
            note = f"  (from model.preset={cfg.model.preset})" if f.name in from_preset else ""
            if note and cfg.model.preset == AUTO:
                note = "  (model.preset=auto: pretrain chooses; tiny's until then)"
            lines.append(f"  {s}.{f.name} = {_inline_yaml(getattr(section, f.name))}{note}\n"
                         + textwrap.indent(inspect.cleandoc(docs.get(f.name, "")), "      "))
    return "\n".join(lines)


def settings_help(keys: tuple[str, ...], cfg: RunConfig | None = None, width: int = 100) -> str:
    """One entry per setting (`section` for all of a section's, or `section.key`): its value in a run with
    nothing set and the first sentence of its doc, for a command's --help."""
    cfg = cfg or load_config()
    names = []
    for k in keys:
        names += [tuple(k.split(".", 1))] if "." in k else [(k, f.name) for f in fields(getattr(cfg, k))]
    entries = []
    for section, key in names:
        doc = " ".join(field_docs(_SECTION_CLASSES[section]).get(key, "").split())
        first = re.split(r"(?<=\.)\s+(?=[A-Z])", doc, maxsplit=1)[0]  # its first sentence
        head = f"  {section}.{key}={_inline_yaml(getattr(getattr(cfg, section), key))}"
        body = textwrap.wrap(first, width - 36, break_on_hyphens=False) or [""]
        if len(body) > 4:  # the rest is in --help-config SECTION
            body = body[:3] + [textwrap.shorten(" ".join(body[3:]), width - 36, placeholder=" ...")]
        entries.append(f"{head:<34}  {body[0]}" if len(head) <= 34 else f"{head}\n{'':<36}{body[0]}")
        entries += [f"{'':<36}{line}" for line in body[1:]]
    return "\n".join(entries)


def config_yaml(cfg: RunConfig) -> str:
    """The settings as YAML: what `--print-config` prints, a run's config.yaml, and a valid --config file."""
    return yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False)
