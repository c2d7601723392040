"""One row per objective: the backbones it trains (and why not the others), the objectives it cannot share a
run with, the data it needs, and where its builder is (STYLE.md, principle 15).

    OBJECTIVES["plm"].fits                 # ("transformer",)
    refusal("plm", "rnn", {"plm"})         # the message config raises, or None when it fits
    OBJECTIVES["span"].sentinels_setting   # "span_sentinels": it adds that many tokens to the run's tokenizer
    unread({"rtd": 1.0}, {"mask_span": 3})  # the message config raises: mask_span is mlm's alone
    readers("whole_word")                  # ["mlm", "rtd", "hybrid"]: the objectives that mask tokens

Adding an objective touches its own module (the nn.Module, its collator and loss, and `build`), its row here,
and its tests. Torch-free: config reads the rows when it loads (a combination is refused before any work);
`objectives.build_objectives` calls each row's builder; the pre-training recipe asks the rows what the
corpus and tokenizer must hold. What rows each objective reads (packed rows, sentence pairs, rows with
sentence starts) its module says (`Objective.reads`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..backbones.spec import BACKBONES, BackboneSpec


@dataclass(frozen=True)
class ObjectiveSpec:
    """What an objective is, as config, the factory and the pre-training recipe need to know it."""

    name: str
    """Its key in objective.weights."""
    build: str
    """`module:function` under pretrainlab/: (objectives.BuildContext) -> {name: Objective}, from its own settings."""
    fits: tuple[str, ...]
    """The backbone kinds it trains (backbones/spec.py)."""
    why_not: Callable[[str], str]
    """A kind it does not fit -> the error message: why, and what fits instead."""
    conflicts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Another objective -> why the two cannot train one run (the message; {on} stands for the objectives on)."""
    renamed_on: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """kind -> the objective this name stands for on it (an old name kept working: clm on an rnn is bilm)."""
    sentinels_setting: str | None = None
    """The objective setting counting the sentinel tokens (T5's <extra_id_N>) it adds to the run's tokenizer."""
    check_data: str | None = None
    """`module:function` under pretrainlab/: (split, seq_len, settings, on, say) -> None, refusing a corpus or
    setting it cannot use before any work (permute: documents of one sentence; span: too few sentinels)."""
    switches: tuple[str, ...] = ()
    """Objective settings it reads that are off at 0 (or false): config refuses one switched on in a run that trains
    none of the objectives listing it, where it would change nothing (mask_span: mlm's alone; whole_word: mlm's,
    rtd's and hybrid's, the objectives that mask tokens)."""

    def builder(self) -> Callable[..., dict[str, Any]]:
        return _resolve(self.build)

    def data_check(self) -> Callable[..., None] | None:
        return _resolve(self.check_data) if self.check_data else None


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(f"pretrainlab.{module}"), name)


# --------------------------------------------------------------------------- the kinds, as their rows say


def _kinds(has: Callable[[BackboneSpec], bool]) -> tuple[str, ...]:
    """The backbone kinds whose row (backbones/spec.py) has `has`, in the table's order."""
    return tuple(name for name, row in BACKBONES.items() if has(row))


def _writes(kind: str) -> bool:
    """An encoder-decoder: its decoder writes a new text while reading the encoder's states."""
    return BACKBONES[kind].lm == "seq2seq_lm"


ENCODERS = _kinds(lambda row: row.lm == "masked_lm")
"""The bidirectional encoders (transformer, rnn, cnn)."""
CAUSAL = _kinds(lambda row: row.causal)
"""The decoders: each state has read only the tokens before it."""
SEQ2SEQ = _kinds(lambda row: row.lm == "seq2seq_lm")
"""The encoder-decoders."""

# --------------------------------------------------------------------------- why not (the messages users see)


def _decoder_cannot(name: str, reason: str) -> str:
    return (f"objective {name} does not fit model.backbone=decoder (causal: each token sees only the tokens before "
            f"it): {reason}. Pre-train a decoder with objective.weights={{clm: 1.0}} (next-token prediction, its "
            f"default), or use model.backbone=transformer for {name}")


def _encoder_side(name: str) -> str:
    """On the encoder-decoder: objectives that score the encoder's own states."""
    return (f"objective {name} scores the encoder's own states at each position (a head on the input side), while "
            "the encoder-decoder is trained through its decoder writing the text; use infill (BART's masked spans, the "
            "encoder-decoder's counterpart of mlm), permute, span, or infill and permute together: e.g. --set "
            "'objective.weights={infill: 1.0, permute: 1.0}'")


def _needs_a_decoder_writing(name: str, kind: str) -> str:
    """The encoder-decoder's objectives anywhere else."""
    alt = "clm" if BACKBONES[kind].causal else "mlm (and nsp, sop, ...)"
    return (f"objective {name} trains a decoder to write the original text token by token while it reads the "
            f"encoder's states of the corrupted input; the {kind} backbone has no such decoder. Use "
            f"model.backbone=encoder-decoder for {name}, or {alt} with {kind}")


BOTH_SIDES = {"transformer": "every position attends to both sides",
              "cnn": "every kernel reads both sides of its token"}
"""Why a bidirectional encoder's state at t has already read token t+1 (no left-to-right LM on it)."""


def _encoder(name: str, decoder_reason: str) -> Callable[[str], str]:
    """Objectives of the bidirectional encoders (transformer, rnn, cnn)."""
    return lambda kind: _encoder_side(name) if _writes(kind) else _decoder_cannot(name, decoder_reason)


def _plm(kind: str) -> str:
    if BACKBONES[kind].has_attention:  # the decoder and the encoder-decoder
        return _encoder("plm", "XLNet's two-stream attention over permuted orders is the encoder's "
                               "(backbone=transformer)")(kind)
    return (f"objective plm needs attention masks, which the {kind} backbone does not have; use mlm, nsp, sop, rtd "
            f"(or bilm for rnn) with it, or backbone=transformer for plm")


def _clm(kind: str) -> str:
    if _writes(kind):
        return _encoder_side("clm")
    return (f"objective clm (next-token prediction) needs states that have seen only one side of each token, which "
            f"the {kind} backbone does not have ({BOTH_SIDES[kind]}, so its state at t has already read token t+1); "
            f"use model.backbone=decoder (a causal Transformer) or rnn (bilm: ELMo's forward + backward LM) for clm, "
            f"or mlm, nsp, sop or rtd with {kind}")


def _bilm(kind: str) -> str:
    if _writes(kind):
        return _encoder_side("bilm")
    if BACKBONES[kind].causal:
        return _decoder_cannot("bilm", "ELMo's backward LM needs states that have read the tokens after each "
                                       "position, which a decoder's never have")
    return (f"objective bilm (ELMo: a forward and a backward language model) needs states that have seen only one "
            f"side of each token, which the {kind} backbone does not have ({BOTH_SIDES[kind]}, so its state at t "
            f"has already read token t+1); use model.backbone=rnn for bilm, or mlm, nsp, sop or rtd with {kind}")


def _hybrid(kind: str) -> str:
    if kind == "decoder":
        return _decoder_cannot("hybrid", "its masked rows predict each masked token from both sides, and only its "
                                         "causal rows attend causally (a decoder attends causally on every row)")
    if kind == "encoder-decoder":
        return _encoder_side("hybrid")
    return (f"objective hybrid (GPT-BERT: masked next-token prediction and causal LM in one encoder) makes some rows "
            f"of a batch attend causally, which needs attention masks: the {kind} backbone has none. Use "
            f"model.backbone=transformer for hybrid, or mlm with {kind}")


SPAN_CAP = 10
"""The longest span of mlm's span masking (objective.mask_span), in tokens: LTG-BERT's and SpanBERT's."""

SPAN_ALONE = ("objectives {on}: span (T5) corrupts a row differently from infill / permute (BART), and one batch "
              "gets one corruption; keep span alone, or infill and/or permute")

# --------------------------------------------------------------------------- the table

OBJECTIVES: Mapping[str, ObjectiveSpec] = MappingProxyType({
    "mlm": ObjectiveSpec(
        "mlm", "objectives.mlm:build", ENCODERS, _encoder(
            "mlm", "it predicts a masked token from both sides, and a decoder's state at a position has read only "
                   "the tokens before it"),
        switches=("whole_word", "mask_span")),
    "nsp": ObjectiveSpec(
        "nsp", "objectives.nsp:build_nsp", ENCODERS, _encoder(
            "nsp", "it classifies the sentence pair from its first token ([CLS]), which in a decoder has read "
                   "nothing but itself"),
        conflicts=MappingProxyType({"sop": "objectives nsp and sop both classify the sentence pair but need different "
                                           "pairs (random vs swapped second segments); keep one of them in "
                                           "objective.weights"})),
    "sop": ObjectiveSpec(
        "sop", "objectives.nsp:build_sop", ENCODERS, _encoder(
            "sop", "it classifies the sentence pair from its first token ([CLS]), which in a decoder has read "
                   "nothing but itself")),
    "plm": ObjectiveSpec("plm", "objectives.plm:build",
                         _kinds(lambda row: row.lm == "masked_lm" and row.has_attention), _plm),
    "rtd": ObjectiveSpec(
        "rtd", "objectives.rtd:build", ENCODERS, _encoder(
            "rtd", "ELECTRA's generator is a masked LM and its discriminator judges each token from both sides"),
        conflicts=MappingProxyType({"mlm": "objective rtd already trains an MLM generator; adding mlm would also train "
                                           "the discriminator (the backbone you keep) on [MASK]ed input, which ELECTRA "
                                           "does not do. Drop mlm from objective.weights (the generator's MLM loss is "
                                           "part of rtd's loss)"}),
        switches=("whole_word",)),
    "clm": ObjectiveSpec("clm", "objectives.clm:build", CAUSAL, _clm,
                         renamed_on=MappingProxyType({"rnn": "bilm"})),
    "bilm": ObjectiveSpec("bilm", "objectives.elmo:build", ("rnn",), _bilm),
    "infill": ObjectiveSpec("infill", "objectives.infill:build", SEQ2SEQ,
                            lambda kind: _needs_a_decoder_writing("infill", kind)),
    "permute": ObjectiveSpec("permute", "objectives.permute:build", SEQ2SEQ,
                             lambda kind: _needs_a_decoder_writing("permute", kind),
                             check_data="objectives.permute:check_corpus"),
    "span": ObjectiveSpec("span", "objectives.span:build", SEQ2SEQ,
                          lambda kind: _needs_a_decoder_writing("span", kind),
                          conflicts=MappingProxyType({"infill": SPAN_ALONE, "permute": SPAN_ALONE}),
                          sentinels_setting="span_sentinels", check_data="objectives.span:check_corpus"),
    "hybrid": ObjectiveSpec(
        "hybrid", "objectives.hybrid:build", ("transformer",), _hybrid,
        conflicts=MappingProxyType({"mlm": "objectives hybrid and mlm both train the model's LM head, hybrid to predict "
                                           "each masked token from the state before it (GPT-BERT), mlm from the state "
                                           "at it; keep one of them in objective.weights"}),
        switches=("whole_word",)),
})
"""Every objective, by its objective.weights name."""


def renamed(weights: Mapping[str, float], kind: str) -> tuple[dict[str, float], list[str]]:
    """objective.weights with old names replaced by what they stand for on this backbone (clm on an rnn: bilm)
    -> (weights, one note per replaced name)."""
    out, notes = {}, []
    for name, w in weights.items():
        new = OBJECTIVES[name].renamed_on.get(kind) if name in OBJECTIVES else None
        if new:
            notes.append(f"objective {name} on model.backbone={kind} is named {new} now ({new}: ELMo's forward + "
                         f"backward LM); read as objective.weights.{new}={w}")
        out[new or name] = w
    return out, notes


def readers(key: str) -> list[str]:
    """The objectives that read this objective setting (their rows list it in `switches`), in the table's order."""
    return [name for name, spec in OBJECTIVES.items() if key in spec.switches]


SWITCHES = tuple(dict.fromkeys(key for spec in OBJECTIVES.values() for key in spec.switches))
"""Every objective setting some row lists in `switches`, once each."""


def unread_switches(weights: Mapping[str, float], settings: Mapping[str, Any]) -> list[str]:
    """The objective settings switched on (not 0 or false) that no objective with weight > 0 reads."""
    on = {name for name, w in weights.items() if w > 0}
    return [key for key in SWITCHES if settings.get(key) and not on.intersection(readers(key))]


def unread(weights: Mapping[str, float], settings: Mapping[str, Any]) -> str | None:
    """Why an objective setting switched on would change nothing (no objective trained reads it), or None."""
    keys = unread_switches(weights, settings)
    if not keys:
        return None
    key, who = keys[0], readers(keys[0])
    value = str(settings[key]).lower() if isinstance(settings[key], bool) else settings[key]
    trained = ", ".join(name for name, w in weights.items() if w > 0) or "none"
    if len(who) == 1:
        return (f"objective.{key}={value} is read by objective {who[0]} only, which objective.weights does not train "
                f"({trained}); add {who[0]} to objective.weights, or drop objective.{key}")
    return (f"objective.{key}={value} is read by objectives {', '.join(who[:-1])} and {who[-1]} only, none of which "
            f"objective.weights trains ({trained}); drop objective.{key}, or add one of them to objective.weights")


def refusal(kind: str, weights: Mapping[str, float]) -> str | None:
    """Why the objectives with weight > 0 cannot train this backbone together (the first reason), or None."""
    on = [name for name, w in weights.items() if w > 0]
    for name in on:
        if kind not in OBJECTIVES[name].fits and kind not in OBJECTIVES[name].renamed_on:
            return OBJECTIVES[name].why_not(kind)
    for name in on:
        for other, why in OBJECTIVES[name].conflicts.items():
            if other in on:
                return why.format(on=", ".join(sorted(on)))
    return None
