"""Text generation: one short loop over forward with a KV cache, for a decoder and an encoder-decoder alike.

    out = generate(CausalLM(decoder, lm_head), ids, max_new_tokens=20, temperature=0.0)   # greedy: deterministic
    out = generate(Seq2SeqLM(enc_dec, lm_head), ids, 20, decoder_start_id=sep)           # the decoder's tokens
    generate_run("runs/gpt", ["the film was"], GenerationSettings(temperature=0.0))   # a run, text in and out

Each step feeds only the newest token (the cache holds the keys and values of all earlier ones),
takes the logits of the last position and picks the next token: the most likely one when
temperature == 0, else a draw from softmax(logits / temperature), restricted to the top_k most
likely tokens and/or the smallest set whose probability reaches top_p; the draws come from a generator of
the call's own, so torch's global RNG is never read or moved. A row stops at eos_id; the loop stops when
every row has. An encoder-decoder's encoder reads the input once (its cross-attention keys are cached
too); its decoder writes from its start token.

Prompts in a batch are left-padded (mask 0 on the left): new tokens continue the last document of
their row, so a prompt may itself be a packed row.

A run, text in and text out: `generate_run(run, prompts, GenerationSettings(...))` picks by the run's
language model (backbones/spec.py), both ending at [SEP] (the end of a text): `generate_decoder` for a
causal LM (the prompt is encoded as its pre-training saw a text begin, `[CLS] tokens`, and continued),
`generate_seq2seq` for an encoder-decoder (the text is the encoder's input `[CLS] text [SEP]`; the
decoder writes a new one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .backbones.decoder import KVCache
from .backbones.seq2seq import Seq2SeqCache
from .backbones.spec import BACKBONES
from .errors import PretrainlabError
from .models import CausalLM, Seq2SeqLM

log = logging.getLogger(__name__)


class GenerateError(PretrainlabError, ValueError):
    """Generation that cannot be done as asked; the message says what to change."""


def check_settings(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Refuse bad sampling settings before any work, saying what to change."""
    if temperature < 0:
        raise GenerateError(f"temperature={temperature} is negative; use 0 for greedy decoding or a positive value to sample")
    if top_p is not None and not 0 < top_p <= 1:
        raise GenerateError(f"top_p={top_p} is outside (0, 1]: it is the probability mass to sample from (1 = all tokens)")
    if top_k is not None and top_k < 1:
        raise GenerateError(f"top_k={top_k} must be at least 1 (the number of most likely tokens to sample from)")
    if max_new_tokens < 0:
        raise GenerateError(f"max_new_tokens={max_new_tokens} is negative")


def check_generation(prompt_len: int, max_new_tokens: int, max_len: int, temperature: float,
                     top_k: int | None, top_p: float | None) -> None:
    """Refuse bad settings and prompts that do not fit the context before any work, saying what to change."""
    check_settings(max_new_tokens, temperature, top_k, top_p)
    if prompt_len == 0:
        raise GenerateError("the prompt is empty; a decoder needs at least its start token")
    if prompt_len > max_len:
        raise GenerateError(
            f"the prompt is {prompt_len} tokens, longer than the model's context of {max_len}; "
            f"shorten it to at most {max_len} tokens"
        )
    if prompt_len + max_new_tokens > max_len:
        raise GenerateError(
            f"the prompt ({prompt_len} tokens) + max_new_tokens={max_new_tokens} exceed the model's context of "
            f"{max_len} tokens; ask for at most {max_len - prompt_len} new tokens or shorten the prompt"
        )


def check_seq2seq_generation(source_len: int, max_new_tokens: int, max_len: int, temperature: float,
                             top_k: int | None, top_p: float | None) -> None:
    """An encoder-decoder reads at most max_len tokens and writes at most max_len, its start token included."""
    check_settings(max_new_tokens, temperature, top_k, top_p)
    if source_len > max_len or 1 + max_new_tokens > max_len:
        raise GenerateError(
            f"the model reads and writes at most max_len={max_len} tokens; got an input of {source_len} and "
            f"max_new_tokens={max_new_tokens} (+1 start token): shorten the input or lower max_new_tokens"
        )


def next_token(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None,
               gen: torch.Generator | None) -> Tensor:
    """(B, V) logits of the last position -> (B,) the next token of each row: argmax at temperature 0, else a
    sample (temperature, then top-k, then top-p, in the order Hugging Face's logits warpers apply them)."""
    if temperature == 0:
        return logits.argmax(-1)  # greedy: the first of equally likely tokens, deterministic
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1) the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        outside = probs.cumsum(-1) - probs >= top_p  # the mass before this token already reaches top_p
        sorted_logits = sorted_logits.masked_fill(outside, float("-inf"))  # the top token always stays
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return torch.multinomial(logits.softmax(-1), 1, generator=gen).squeeze(1)


def sampling_generator(device: torch.device, seed: int | None) -> torch.Generator:
    """A generator of its own for the draws: seeded with `seed`, else from the OS's entropy (never the global
    RNG's state, which stays as it was)."""
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()  # std::random_device: torch's global generator is neither read nor advanced
    else:
        gen.manual_seed(seed)
    return gen


@torch.no_grad()
def generate(
    model: CausalLM | Seq2SeqLM,
    ids: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    eos_id: int | None = None,
    mask: Tensor | None = None,
    pad_id: int = 0,
    use_cache: bool = True,
    decoder_start_id: int | None = None,
) -> Tensor:
    """Sample new tokens one at a time, each step feeding only the newest token (the cache holds the rest).

    CausalLM: (B, T) prompt ids -> (B, T + n), the prompts and n <= max_new_tokens new tokens. mask: (B, T) as
    for the backbone, left-padded prompts (default: one document per row); new tokens continue the last
    document of their row.
    Seq2SeqLM: (B, S) the encoder's input (mask: its padding) -> (B, 1 + n), the decoder's tokens: its
    decoder_start_id, then n <= max_new_tokens new ones (the encoder runs once).

    A row that has produced eos_id (kept) is filled with pad_id until every row has. Sampling draws from a
    generator of its own (seeded with `seed`; without one, from the OS), never from torch's global RNG.
    use_cache=False recomputes the whole sequence each step (same tokens, slower). The model runs in eval mode
    (no dropout) and is put back as it was.
    """
    B, T = ids.shape
    mask = torch.ones_like(ids) if mask is None else mask
    max_len = model.backbone.max_len
    if isinstance(model, Seq2SeqLM):  # the encoder reads ids; the decoder writes from its start token
        if decoder_start_id is None:
            raise ValueError("an encoder-decoder generates from its decoder_start_id (BART's: its end token)")
        check_seq2seq_generation(T, max_new_tokens, max_len, temperature, top_k, top_p)
        out = torch.full((B, 1), decoder_start_id, dtype=torch.long, device=ids.device)
        out_mask = torch.ones_like(out)
        cache = Seq2SeqCache() if use_cache else None

        def logits_of(tokens: Tensor, _: Tensor) -> Tensor:  # the decoder's tokens (with a cache: the new ones)
            return model(ids, mask, tokens, cache=cache, last_only=True)[:, -1]
    else:
        check_generation(T, max_new_tokens, max_len, temperature, top_k, top_p)
        if bool((mask[:, -1] == 0).any()):
            raise ValueError("a prompt ends with padding; pad prompts on the left (mask 0 before the text)")
        out, out_mask = ids, mask
        cache = KVCache() if use_cache else None

        def logits_of(tokens: Tensor, tokens_mask: Tensor) -> Tensor:
            return model(tokens, tokens_mask, cache, last_only=True)[:, -1]
    gen = sampling_generator(ids.device, seed) if temperature > 0 else None
    doc = out_mask[:, -1:]  # (B, 1): the document new tokens continue
    done = torch.zeros(B, dtype=torch.bool, device=ids.device)
    was_training = model.training
    model.eval()
    try:
        logits = logits_of(out, out_mask)  # (B, V): the whole prompt (or start token) once
        for step in range(max_new_tokens):
            new = next_token(logits, temperature, top_k, top_p, gen)
            new = torch.where(done, torch.full_like(new, pad_id), new)
            out, out_mask = torch.cat((out, new[:, None]), dim=1), torch.cat((out_mask, doc), dim=1)
            if eos_id is not None:
                done |= new == eos_id
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            logits = logits_of(new[:, None], doc) if use_cache else logits_of(out, out_mask)
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------- a run: text in, text out


@dataclass(frozen=True)
class GenerationSettings:
    """How to pick the new tokens (see `generate`); the CLI's --max-new-tokens ... --seed."""

    max_new_tokens: int = 40
    temperature: float = 1.0
    """0: greedy (deterministic); above 1 flatter, below 1 sharper than the model's distribution."""
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    """Each prompt is generated alone with this seed, so its text does not depend on the other prompts."""


@dataclass
class Generation:
    """One prompt's result."""

    prompt: str
    text: str
    """What the model wrote, decoded: a decoder's prompt and continuation (special tokens left out), an
    encoder-decoder's new text (its sentinels and [MASK] kept)."""
    continuation: str
    """The new tokens alone, decoded (an encoder-decoder's: the same as text)."""
    ids: list[int]
    """Every token id, the start token first: a decoder's prompt and new tokens, an encoder-decoder's
    decoder output."""
    n_prompt: int
    """Tokens of the prompt as the model read it (special tokens included, after any truncation)."""
    ended: bool
    """The model ended the text (produced the end-of-text token) before max_new_tokens."""
    dropped: int = 0
    """Prompt tokens cut to fit the context: a decoder's from the left, an encoder-decoder's from the right."""


ENCODER_COMMANDS = ("finetune (then evaluate, predict, explain)", "curve", "probe", "perplexity", "export")


def _note(message: str) -> None:
    log.info(f"note: {message}")


def generate_run(run: str | Path, prompts: Sequence[str], settings: GenerationSettings = GenerationSettings(),
                 note: Callable[[str], None] = _note) -> list[Generation]:
    """Generate from each prompt with a pre-training run's model: one function per backbone kind (a decoder
    continues the prompt, an encoder-decoder writes a new text from it).

    Settings are checked, and the run's kind read from its config.yaml, before any weights load.
    note: where remarks go (a prompt truncated to fit, text beyond the trained sequence length).
    """
    from .runs import is_classifier_dir, read_run_config

    s = settings
    check_settings(s.max_new_tokens, s.temperature, s.top_k, s.top_p)
    run = Path(run)
    if is_classifier_dir(run):
        raise GenerateError(f"{run} is a fine-tuned classifier; generate writes text with a pre-training run "
                            "(the --out of `pretrainlab pretrain` with model.backbone=decoder or encoder-decoder)")
    if not (run / "config.yaml").is_file():
        raise GenerateError(f"{run} is not a pretrainlab run directory (no config.yaml); give the --out of "
                            "`pretrainlab pretrain`")
    kind = read_run_config(run).model.backbone
    lm = BACKBONES[kind].lm
    if lm == "causal_lm":
        return generate_decoder(run, prompts, s, note)
    if lm == "seq2seq_lm":
        return generate_seq2seq(run, prompts, s, note)
    raise GenerateError(
        f"{run} is a {kind} run, a bidirectional encoder (its states read both sides of each token): it does not "
        f"generate text. Pre-train a causal decoder (--set model.backbone=decoder) to continue text, or an "
        f"encoder-decoder (--set model.backbone=encoder-decoder) to write a text from another. Commands that fit "
        f"this run: {', '.join(ENCODER_COMMANDS)}"
    )


def generate_decoder(run: str | Path, prompts: Sequence[str], settings: GenerationSettings,
                     note: Callable[[str], None] = _note) -> list[Generation]:
    """A decoder run: `[CLS] prompt` -> new tokens until [SEP] (end of text) or max_new_tokens."""
    from .runs import load_pretrained

    s = settings
    pre = load_pretrained(run)
    max_len, trained = pre.backbone.max_len, pre.config.data.seq_len
    room = max_len - s.max_new_tokens  # prompt tokens that fit beside the new ones
    if room < 1:
        raise GenerateError(f"--max-new-tokens {s.max_new_tokens} leaves no room for the prompt in the model's "
                            f"context of {max_len} tokens; ask for at most {max_len - 1}")
    model = pre.lm.eval()
    tok, cls, sep = pre.tokenizer, pre.special.cls, pre.special.sep
    encoded = [tok.encode(p, add_special_tokens=False).ids for p in prompts]
    if any(1 + len(ids) + s.max_new_tokens > trained for ids in encoded):
        note(f"the model was pre-trained on {trained}-token sequences; tokens past position {trained} are beyond "
             "what it was trained on")
    out = []
    for i, (prompt, ids) in enumerate(zip(prompts, encoded)):
        dropped = max(0, 1 + len(ids) - room)
        if dropped:
            note(f"prompt {i + 1} is {1 + len(ids)} tokens with its start token; the context of {max_len} with "
                 f"--max-new-tokens {s.max_new_tokens} leaves {room}: its first {dropped} tokens were cut")
            ids = ids[dropped:]
        x = torch.tensor([[cls, *ids]])
        y = generate(model, x, s.max_new_tokens, s.temperature, s.top_k, s.top_p, s.seed, eos_id=sep,
                     pad_id=pre.special.pad)[0].tolist()
        new = y[x.shape[1]:]
        out.append(Generation(prompt, tok.decode(y, skip_special_tokens=True),
                              tok.decode(new, skip_special_tokens=True), y, x.shape[1], sep in new, dropped))
    return out


def generate_seq2seq(run: str | Path, prompts: Sequence[str], settings: GenerationSettings,
                     note: Callable[[str], None] = _note) -> list[Generation]:
    """An encoder-decoder run: the encoder reads `[CLS] text [SEP]` (as its corrupted inputs looked in
    pre-training; [MASK] and <extra_id_N> in the text are its mask and sentinel tokens), the decoder
    writes from [SEP] (BART's decoder start) until [SEP] again or max_new_tokens (`generate`:
    KV cache, cross-attention keys computed once). One prompt at a time, each with the seed."""
    from .data.encoding import tokenize
    from .runs import load_pretrained

    s = settings
    pre = load_pretrained(run)
    max_len, trained = pre.backbone.max_len, pre.config.data.seq_len
    if 1 + s.max_new_tokens > max_len:
        raise GenerateError(f"--max-new-tokens {s.max_new_tokens}: the decoder writes at most {max_len - 1} tokens "
                            f"after its start token (model.max_len={max_len}); ask for fewer")
    if 1 + s.max_new_tokens > trained:
        note(f"the model was pre-trained on {trained}-token sequences; tokens past position {trained} are beyond "
             "what it was trained on")
    sp, model = pre.special, pre.lm.eval()
    full = [len(e.ids) for e in tokenize(pre.tokenizer, prompts, None, 1 << 30)]
    out = []
    for i, (prompt, enc) in enumerate(zip(prompts, tokenize(pre.tokenizer, prompts, None, max_len))):
        dropped = full[i] - len(enc.ids)
        if dropped:
            note(f"text {i + 1} is {full[i]} tokens with [CLS] and [SEP], more than the model's max_len={max_len}: "
                 f"its last {dropped} tokens were cut")
        x = torch.tensor([enc.ids])
        y = generate(model, x, s.max_new_tokens, s.temperature, s.top_k, s.top_p, s.seed, eos_id=sp.sep,
                     pad_id=sp.pad, decoder_start_id=model.backbone.decoder_start(sp.sep))[0].tolist()
        new = y[1:]
        # sentinels and [MASK] stay visible; the start, end and padding do not
        text = pre.tokenizer.decode([t for t in new if t not in (sp.pad, sp.cls, sp.sep)], skip_special_tokens=False)
        out.append(Generation(prompt, text, text, y, len(enc.ids), sp.sep in new, dropped))
    return out


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per non-blank line of a UTF-8 text file."""
    path = Path(path)
    if not path.is_file():
        raise GenerateError(f"--file {path}: no such file")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise GenerateError(f"--file {path} holds no prompt (only blank lines)")
    return prompts
