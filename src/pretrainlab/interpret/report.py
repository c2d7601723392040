"""One self-contained HTML report per call: attention, rollout, attributions, probes.

    model = load_explainable("runs/mr-finetuned")        # or Explainable(backbone, tokenizer, ...)
    page = build_report(model, ["a gripping, funny film"], task=read_task_file("dev.tsv"))
    explain("runs/mr-finetuned", ["a gripping, funny film"], out="report.html")   # both, written to a file

The page needs nothing but a browser: images are inlined as base64 PNGs, the head view's JS, CSS
and data are inline, and it names no external URL. Sections that a backbone cannot support
(attention for RNN/CNN, attributions for a model without a classification head) are replaced by
a sentence saying why.
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from ..data.encoding import Encoded, collate, tokenize
from ..data.tasks import read_rows
from ..errors import CheckpointError, TaskError
from . import ExplainError
from ..backbones.seq2seq import Seq2SeqTransformer
from .attention import (
    HEAD_VIEW_CSS,
    HEAD_VIEW_JS,
    attention_rollout,
    attention_weights,
    head_view_html,
    plot_attention_heads,
    plot_rollout,
    seq2seq_attention,
)
from .attributions import (
    MAX_STEPS,
    TOLERANCE,
    TokenAttribution,
    aggregate_attributions,
    attribution_html,
    integrated_gradients,
)
from .probes import ProbeResult, plot_probes, probe_layers

# --------------------------------------------------------------------------- inputs


@dataclass
class Explainable:
    """What the report explains: a backbone, its tokenizer and (if fine-tuned) the classifier around it."""

    backbone: nn.Module
    tokenizer: object
    """A `tokenizers.Tokenizer` with the [CLS] A [SEP] (B [SEP]) template."""
    classifier: nn.Module | None = None
    """A `models.Classifier` wrapping `backbone`; None for a pre-trained encoder (no attributions)."""
    label_names: list[str] | None = None
    """Class names in logit order."""
    max_len: int = 128
    """Inputs are truncated to this many tokens."""
    name: str = ""
    """Where the model came from (shown in the report)."""
    segments: bool | None = None
    """Pass segment ids: True always, False never, None only for text pairs (as the model was trained)."""
    pairs: bool = False
    """The classifier was fine-tuned on text pairs: every text needs its pair."""


def load_explainable(path: str | Path) -> Explainable:
    """A fine-tuned model directory (classifier + tokenizer) or a pre-training run directory."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"{path}: no such model directory; give a fine-tuned model directory or a pre-training run directory"
        )
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file, not a model directory; give the directory that holds the model")
    finetuned = _load_finetuned(path)
    if finetuned is not None:
        return finetuned
    if (path / "config.yaml").is_file():
        from ..runs import load_pretrained

        pre = load_pretrained(path)
        backbone = pre.backbone
        backbone.eval()
        return Explainable(backbone, pre.tokenizer, None, None, max_len=pre.config.data.seq_len, name=str(path))
    raise CheckpointError(
        f"{path} is not a pretrainlab model directory (no fine-tuned model and no config.yaml); "
        "give the output directory of `pretrainlab finetune` or `pretrainlab pretrain`"
    )


def _load_finetuned(path: Path) -> Explainable | None:
    """The fine-tuned classifier saved by `finetune.finetune`, or None when `path` is not one."""
    from ..runs import is_classifier_dir, load_classifier

    if not is_classifier_dir(path):
        return None
    ft = load_classifier(path)
    return Explainable(
        ft.model.backbone, ft.tokenizer, ft.model, [str(x) for x in ft.label_names],
        max_len=int(ft.meta.get("max_len", 128)), name=str(path),
        segments=ft.meta.get("segments"), pairs=bool(ft.meta.get("pairs")),
    )


@dataclass
class TaskData:
    """A labelled task file read for probing and the per-class attribution summary."""

    texts: list[str]
    labels: list[str]
    pairs: list[str] | None = None
    path: str = ""


def read_task_file(
    path: str | Path, text_column: str = "text", label_column: str = "label", text_pair_column: str | None = None
) -> TaskData:
    """Read a .csv, .tsv or .jsonl task file with a text and a label column (and optionally a pair column)."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"{path}: task file not found" + (" (it is a directory)" if path.is_dir() else ""))
    columns, rows = read_rows(path)
    if not rows:
        raise TaskError(f"{path}: the task file has no examples")
    wanted = [text_column, label_column] + ([text_pair_column] if text_pair_column else [])
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise TaskError(
            f"{path}: no column {', '.join(map(repr, missing))}; it has {', '.join(map(repr, sorted(columns)))}; "
            "name the columns with --text-column / --label-column / --pair-column"
        )
    texts, labels, pairs = [], [], []
    for n, row in rows:
        text, label = row.get(text_column), row.get(label_column)
        if text is None or not str(text).strip():
            raise TaskError(f"{path}: line {n}: empty {text_column!r}")
        if label is None or str(label).strip() == "":
            raise TaskError(f"{path}: line {n}: empty {label_column!r}")
        texts.append(str(text))
        labels.append(str(label).strip())
        if text_pair_column:
            pairs.append(str(row.get(text_pair_column) or ""))
    return TaskData(texts, labels, pairs if text_pair_column else None, str(path))


@dataclass
class Inputs:
    """A padded batch to explain, with the text of each token for display."""

    ids: Tensor
    """(B, T) padded with [PAD]."""
    mask: Tensor
    """(B, T) 1 for real tokens, 0 for padding (one document per row)."""
    segment_ids: Tensor | None
    """(B, T) 0/1 for sentence pairs, None for single texts."""
    tokens: list[list[str]]
    """Display string per real token, per row."""


def prepare_inputs(tokenizer, texts: list[str], pairs: list[str] | None, max_len: int, pad_id: int,
                   segments: bool | None = None) -> Inputs:
    """Tokenize as fine-tuning does (data.encoding), pad to the longest row, and keep each token's text.

    segments: return segment ids always (True), never (False) or only for pairs (None).
    """
    encs = tokenize(tokenizer, texts, pairs, max_len)
    enc = Encoded([e.ids for e in encs], [e.type_ids for e in encs], [0] * len(encs))
    batch = collate(enc, range(len(enc)), pad_id, segments=True)
    tokens = [_display(e, (texts[b], pairs[b] if pairs is not None else "")) for b, e in enumerate(encs)]
    with_segments = segments if segments is not None else pairs is not None
    return Inputs(batch["input_ids"], batch["mask"], batch["segment_ids"] if with_segments else None, tokens)


def _display(enc, sources: tuple[str, str]) -> list[str]:
    """The original text of each token (WordPiece continuations keep their '##'); specials as is."""
    out = []
    for tok, (s, e), seq, special in zip(enc.tokens, enc.offsets, enc.sequence_ids, enc.special_tokens_mask):
        if special or seq is None or e <= s:
            out.append(tok)
        else:
            piece = sources[seq][s:e]
            out.append("##" + piece if tok.startswith("##") else piece)
    return out


# --------------------------------------------------------------------------- the report


@dataclass
class _Page:
    parts: list[str] = field(default_factory=list)
    n_views: int = 0

    def add(self, s: str) -> None:
        self.parts.append(s)


def _img(png: bytes, alt: str) -> str:
    return f"<img alt=\"{html.escape(alt)}\" src=\"data:image/png;base64,{base64.b64encode(png).decode()}\">"


def _p(text: str, cls: str = "") -> str:
    c = f" class=\"{cls}\"" if cls else ""
    return f"<p{c}>{html.escape(text)}</p>"


def describe_backbone(backbone: nn.Module) -> str:
    kind = type(backbone).__name__
    bits = [f"d_model={getattr(backbone, 'd_model', '?')}", f"layers={getattr(backbone, 'n_layers', '?')}"]
    if isinstance(backbone, Seq2SeqTransformer):
        bits[1] = f"encoder layers={backbone.n_layers}, decoder layers={backbone.n_decoder_layers}"
    if hasattr(backbone, "n_heads"):
        bits.append(f"heads={backbone.n_heads}")
    if hasattr(backbone, "style"):
        bits.append(f"style={backbone.style}")
    if hasattr(backbone, "cell"):
        bits.append(f"cell={backbone.cell}")
    return f"{kind} ({', '.join(bits)})"


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#1f2328}
h1{font-size:22px} h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
h3{font-size:15px;margin-bottom:4px}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}
th{background:#f6f8fa} .num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555;background:#f6f8fa;border-left:3px solid #bbb;padding:4px 10px}
.warn{color:#7a4b00;background:#fff8e6;border-left:3px solid #e0a000;padding:4px 10px}
.attr-text{line-height:2;margin:6px 0} .attr{padding:2px 3px;border-radius:3px}
.example{border:1px solid #e5e5e5;border-radius:6px;padding:4px 14px 12px;margin:14px 0}
img{max-width:100%;height:auto;display:block;margin:6px 0}
details{margin:6px 0} summary{cursor:pointer}
.legend span{padding:1px 6px;border-radius:3px;margin-right:6px}
"""


def build_report(
    model: Explainable,
    texts: list[str],
    text_pairs: list[str] | None = None,
    task: TaskData | None = None,
    n_steps: int = 50,
    max_examples: int = 200,
    max_probe_examples: int = 2000,
    seed: int = 0,
    max_steps: int = MAX_STEPS,
) -> str:
    """The report as one HTML string (see the module docstring for what it holds)."""
    texts = list(texts)
    for i, t in enumerate(texts):
        if not t or not t.strip():
            raise ExplainError(f"text {i + 1} is empty; give the sentence to explain, e.g. --text 'a gripping film'")
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise ExplainError(f"{len(text_pairs)} --text-pair for {len(texts)} --text; give one pair per text (or none)")
    if not texts and task is None:
        raise ExplainError("nothing to explain: give --text (one or more) and/or --file (a labelled task file)")
    if model.pairs and texts and text_pairs is None:
        raise ExplainError("this model was fine-tuned on text pairs; give the second text of each with --text-pair")
    if model.pairs and task is not None and task.pairs is None:
        raise ExplainError("this model was fine-tuned on text pairs; name the task file's second-text column with --pair-column")

    from ..tokenizer import special_ids

    special = special_ids(model.tokenizer)
    backbone, clf = model.backbone, model.classifier
    was = [(m, m.training) for m in (backbone, clf) if m is not None]
    for m, _ in was:
        m.eval()
    page = _Page()
    try:
        started = time.perf_counter()
        _header(page, model)
        if texts:
            _texts_section(page, model, texts, text_pairs, special, (n_steps, max_steps))
        if task is not None:
            _task_section(page, model, task, special, (n_steps, max_steps), max_examples, max_probe_examples, seed)
        _method_section(page, model)
        page.add(_p(f"Report made in {time.perf_counter() - started:.1f} s.", "note"))
    finally:
        for m, training in was:
            m.train(training)
    title = f"pretrainlab explain: {model.name or 'model'}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_CSS}{HEAD_VIEW_CSS}</style>"
        f"<script>{HEAD_VIEW_JS}</script></head><body>" + "\n".join(page.parts) + "</body></html>\n"
    )


def _header(page: _Page, model: Explainable) -> None:
    page.add(f"<h1>{html.escape(model.name or 'Model')}: what the model looks at</h1>")
    rows = [("backbone", describe_backbone(model.backbone))]
    if model.classifier is not None:
        names = model.label_names or [str(i) for i in range(model.classifier.head.out_features)]
        rows.append(("classes", ", ".join(names)))
    else:
        rows.append(("head", "none (pre-trained encoder): no prediction, no token attributions"))
    rows.append(("max tokens", str(model.max_len)))
    page.add("<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows) + "</table>")


def _texts_section(page: _Page, model: Explainable, texts: list[str], pairs: list[str] | None, special,
                   steps: tuple[int, int]) -> None:
    """steps: integrated gradients' (first, most) steps of a text."""
    enc = prepare_inputs(model.tokenizer, texts, pairs, model.max_len, special.pad, model.segments)
    backbone, clf = model.backbone, model.classifier
    attrs: list[TokenAttribution] | None = None
    if clf is not None:
        attrs = integrated_gradients(
            clf, enc.ids, enc.mask, enc.segment_ids, pad_id=special.pad, keep_ids=(special.cls, special.sep),
            tokens=enc.tokens, label_names=model.label_names, n_steps=steps[0], max_steps=steps[1],
        )
        with torch.no_grad():
            probs = clf(enc.ids, enc.mask, enc.segment_ids).logits.float().softmax(-1)
    page.add("<h2>Texts</h2>")
    for b, toks in enumerate(enc.tokens):
        n = len(toks)
        ids, mask = enc.ids[b : b + 1, :n], enc.mask[b : b + 1, :n]
        seg = enc.segment_ids[b : b + 1, :n] if enc.segment_ids is not None else None
        page.add("<div class=\"example\">")
        page.add(f"<h3>Text {b + 1}</h3>" + _p(texts[b]) + (_p(f"pair: {pairs[b]}") if pairs is not None else ""))
        if n == model.max_len:
            page.add(_p(f"Cut to the model's {model.max_len} tokens; the rest was not seen.", "note"))
        if attrs is not None:
            a = attrs[b]
            names = model.label_names or [str(i) for i in range(probs.shape[-1])]
            page.add(
                "<table><tr><th>class</th><th>probability</th></tr>"
                + "".join(
                    f"<tr><td>{'<b>' if i == a.target else ''}{html.escape(name)}{'</b>' if i == a.target else ''}</td>"
                    f"<td class=\"num\">{float(probs[b, i]):.3f}</td></tr>"
                    for i, name in enumerate(names)
                )
                + "</table>"
            )
            page.add(f"<h3>Token attributions toward {html.escape(a.label)} (integrated gradients)</h3>")
            page.add(
                "<div class=\"legend\"><span style=\"background:rgba(22,163,74,.6)\">pushes toward</span>"
                "<span style=\"background:rgba(220,38,38,.6)\">pushes away</span>hover a token for its score</div>"
            )
            page.add(attribution_html(a))
            page.add(_completeness(a))
        if isinstance(backbone, Seq2SeqTransformer):
            _seq2seq_attention_block(page, backbone, ids, mask, toks, special)
        else:
            _attention_block(page, backbone, ids, mask, seg, toks, clf is not None)
        page.add("</div>")


def _attention_block(page: _Page, backbone: nn.Module, ids: Tensor, mask: Tensor, seg: Tensor | None,
                     toks: list[str], attributed: bool) -> None:
    """One text's self-attention: the head view, rollout and every head's heatmap (or why there is none)."""
    weights = attention_weights(backbone, ids, mask, seg)
    if weights is None:
        page.add(_p(
            f"No attention maps or rollout: the {type(backbone).__name__} has no attention. "
            + ("The attributions above come from gradients through its input embeddings, which it has like any backbone."
               if attributed else ""), "note"))
        return
    w = torch.stack([x[0] for x in weights])  # (L, H, T, T)
    page.n_views += 1
    page.add("<h3>Attention, per layer and head (interactive)</h3>")
    page.add(head_view_html(w, toks, f"headview{page.n_views}"))
    roll = attention_rollout(w.unsqueeze(1))[0]  # (T, T)
    page.add("<h3>Attention rollout</h3>")
    page.add(_p("Share of each input token in the [CLS] position after the last layer "
                "(heads averaged, residual added, multiplied through the layers):"))
    page.add(_shaded(toks, roll[0].tolist()))
    page.add(_img(plot_rollout(roll, toks), "attention rollout heatmap"))
    page.add("<details><summary>Heatmaps of every head</summary>")
    page.add(_img(plot_attention_heads(w, toks), "attention heatmaps per layer and head"))
    page.add("</details>")


def _seq2seq_attention_block(page: _Page, backbone: Seq2SeqTransformer, ids: Tensor, mask: Tensor,
                             toks: list[str], special) -> None:
    """One text through an encoder-decoder: its encoder's self-attention, its decoder's causal self-attention
    (over the text shifted right behind the start token, as its classifier reads it) and the cross-attention."""
    att = seq2seq_attention(backbone, ids, mask, special.sep)
    start = special.names[special.all.index(int(att.decoder_ids[0, 0]))]  # [SEP] (bart) or [PAD] (t5)
    dec_toks = [start] + toks[:-1]  # what the decoder read: the start token, then the text
    enc, dec, cross = (torch.stack([x[0] for x in a]) for a in (att.encoder, att.decoder, att.cross))  # (L, H, q, k)
    for title, w, queries, what in (("Encoder self-attention", enc, toks, "the encoder reads the text"),
                                    ("Decoder self-attention (causal)", dec, dec_toks,
                                     "the decoder reads the text shifted right behind its start token; each token "
                                     "sees itself and the tokens before it")):
        page.n_views += 1
        page.add(f"<h3>{title}, per layer and head (interactive)</h3>" + _p(what + "."))
        page.add(head_view_html(w, queries, f"headview{page.n_views}", title))
    roll = attention_rollout(enc.unsqueeze(1))[0]  # (S, S)
    page.add("<h3>Encoder attention rollout</h3>")
    page.add(_p("The encoder's self-attention only (heads averaged, residual added, multiplied through its layers); "
                "the decoder reads the encoder's last layer through cross-attention, shown below."))
    page.add(_img(plot_rollout(roll, toks, "encoder attention rollout"), "encoder attention rollout heatmap"))
    page.add("<h3>Cross-attention: decoder tokens (rows) over encoder tokens (columns)</h3>")
    page.add(_img(plot_attention_heads(cross, dec_toks, "cross-attention", key_tokens=toks),
                  "cross-attention heatmaps per decoder layer and head"))
    for title, w, queries in (("encoder self-attention", enc, toks), ("decoder self-attention", dec, dec_toks)):
        page.add(f"<details><summary>Heatmaps of every head: {title}</summary>")
        page.add(_img(plot_attention_heads(w, queries, title), f"{title} heatmaps per layer and head"))
        page.add("</details>")


def _completeness(a: TokenAttribution) -> str:
    """How far the scores' sum is from the logit change; a warning where it is over the tolerance at the cap."""
    share = f"{a.relative_delta:.1%}" if a.relative_delta != float("inf") else "all"
    line = (f"sum of scores {_num(sum(a.scores))} vs logit {_num(a.logit)} - baseline logit {_num(a.baseline_logit)} "
            f"= {_num(a.logit - a.baseline_logit)}: convergence delta {a.delta:+.2e} ({share} of the change) "
            f"after {a.steps} steps")
    if a.converged:
        return _p(line, "note")
    return _p(f"Warning: these scores do not add up. {line}, the most allowed (--max-steps), and still over "
              f"{TOLERANCE:.0%} of the change: read the colours as rough, or raise --max-steps.", "warn")


def _num(x: float) -> str:
    return f"{x:+.4f}" if x == 0 or abs(x) >= 1e-3 else f"{x:+.2e}"


def _shaded(tokens: list[str], values: list[float]) -> str:
    top = max(values, default=0.0) or 1.0
    return "<div class=\"attr-text\">" + " ".join(
        f"<span class=\"attr\" style=\"background:rgba(37,99,235,{min(1.0, v / top):.2f})\" title=\"{v:.4f}\">{html.escape(t)}</span>"
        for t, v in zip(tokens, values)
    ) + "</div>"


def _task_section(page: _Page, model: Explainable, task: TaskData, special, steps: tuple[int, int],
                  max_examples: int, max_probe_examples: int, seed: int) -> None:
    page.add(f"<h2>Task: {html.escape(task.path or 'task')}</h2>")
    page.add(_p(f"{len(task.texts)} examples, labels: {', '.join(sorted(set(task.labels)))}"))

    # probes: frozen backbone, mean-pooled states of every layer
    n = min(len(task.texts), max_probe_examples)
    pairs = task.pairs[:n] if task.pairs is not None else None
    enc = prepare_inputs(model.tokenizer, task.texts[:n], pairs, model.max_len, special.pad, model.segments)
    page.add("<h3>Linear probes per layer</h3>")
    try:
        result = probe_layers(model.backbone, enc.ids, enc.mask, task.labels[:n], enc.segment_ids, seed=seed,
                              eos_id=special.sep)  # an encoder-decoder's decoder reads the text behind its start
    except ExplainError as e:
        page.add(_p(f"No probes: {e}", "note"))
    else:
        _probe_block(page, result, n, len(task.texts))

    # attributions aggregated per class
    clf = model.classifier
    page.add("<h3>Most influential tokens per class</h3>")
    if clf is None:
        page.add(_p("No attributions: this model has no classification head (a pre-trained encoder); "
                    "fine-tune it to see which tokens drive its predictions.", "note"))
        return
    names = model.label_names or [str(i) for i in range(clf.head.out_features)]
    index = {name: i for i, name in enumerate(names)}
    k = min(len(task.texts), max_examples)
    gold = [index.get(label) for label in task.labels[:k]]
    toward_gold = all(g is not None for g in gold)
    attrs: list[TokenAttribution] = []
    for start in range(0, k, 16):
        sl = slice(start, min(k, start + 16))
        e = prepare_inputs(model.tokenizer, task.texts[sl], task.pairs[sl] if task.pairs is not None else None,
                   model.max_len, special.pad, model.segments)
        attrs += integrated_gradients(
            clf, e.ids, e.mask, e.segment_ids, pad_id=special.pad, keep_ids=(special.cls, special.sep),
            target=gold[sl] if toward_gold else None, tokens=e.tokens, label_names=names, n_steps=steps[0],
            max_steps=steps[1],
        )
    how = ("toward each example's gold label" if toward_gold else
           "toward each example's predicted label (the task's labels are not all among the model's classes)")
    page.add(_p(f"Integrated-gradients scores summed over {k} examples, {how}; "
                "largest totals first. Mean |delta| "
                f"{sum(abs(a.delta) for a in attrs) / len(attrs):.2e}."))
    off = [a for a in attrs if not a.converged]
    if off:
        page.add(_p(f"Warning: for {len(off)} of these {k} examples the scores do not add up to the logit change "
                    f"within {TOLERANCE:.0%} even after {steps[1]} steps (--max-steps); their tokens count in the "
                    "totals below all the same.", "warn"))
    summary = aggregate_attributions(attrs, top_k=12)
    cells = []
    for label, rows in summary.items():
        body = "".join(
            f"<tr><td>{html.escape(tok)}</td><td class=\"num\">{total:+.3f}</td><td class=\"num\">{mean:+.3f}</td>"
            f"<td class=\"num\">{count}</td></tr>" for tok, total, mean, count in rows
        )
        cells.append(f"<td style=\"vertical-align:top\"><b>{html.escape(label)}</b><table><tr><th>token</th>"
                     f"<th>total</th><th>mean</th><th>count</th></tr>{body}</table></td>")
    page.add("<table><tr>" + "".join(cells) + "</tr></table>")


def _probe_block(page: _Page, result: ProbeResult, used: int, total: int) -> None:
    page.add(_p(f"A logistic regression per layer on mean-pooled hidden states of the frozen backbone; "
                f"{result.n_train} train / {result.n_test} held-out examples"
                + (f" (the first {used} of {total})" if used < total else "") + "."))
    if result.note:
        page.add(_p(result.note.capitalize() + ".", "note"))
    page.add(_img(plot_probes(result), "probe accuracy per layer"))
    page.add(
        "<table><tr><th>layer</th><th>held-out accuracy</th><th>train accuracy</th></tr>"
        + "".join(
            f"<tr><td>{html.escape(name)}</td><td class=\"num\">{te:.3f}</td><td class=\"num\">{tr:.3f}</td></tr>"
            for name, te, tr in zip(result.layers, result.test_accuracy, result.train_accuracy)
        )
        + f"<tr><td>majority label</td><td class=\"num\">{result.majority:.3f}</td><td></td></tr></table>"
    )


def _method_section(page: _Page, model: Explainable) -> None:
    page.add("<h2>How to read this</h2><ul>")
    if page.n_views:
        _attention_notes(page)
    seq2seq = isinstance(model.backbone, Seq2SeqTransformer)
    if seq2seq:
        page.add("<li>An encoder-decoder has three kinds of attention: the encoder's self-attention over the text, "
                 "the decoder's causal self-attention over the text shifted right behind its start token (as its "
                 "classifier and BART's denoising read it), and cross-attention from each decoder token to the "
                 "encoder's tokens.</li>")
    if model.classifier is not None:
        page.add("<li>Integrated gradients (Sundararajan et al., 2017) on the token embeddings, baseline = the same "
                 "sequence with every word replaced by [PAD] ([CLS] and [SEP] kept). Scores sum to the change in the "
                 "target logit from baseline to input, up to the convergence delta; a text's steps are doubled until "
                 f"the delta is within {TOLERANCE:.0%} of that change (or the cap is reached, which the text's note "
                 "flags)."
                 + (" The classifier feeds the text to the encoder and, shifted right, to the decoder: each token's "
                    "one embedding is interpolated on both sides at once, so its score is what it adds through both."
                    if seq2seq else "") + "</li>")
    page.add("<li>Probes: linear classifiers on frozen, mean-pooled hidden states; high accuracy means the "
             "labels are linearly decodable from that layer, compared with the majority-label floor."
             + (" The encoder's layers come first, then the decoder's." if seq2seq else "") + "</li>")
    page.add("</ul>")


def _attention_notes(page: _Page) -> None:
    page.add("<li>Attention: the weights softmax(q k<sup>T</sup>/&#8730;d) each head used in the forward pass; "
             "rows (query tokens) sum to 1. Attention shows where information was read from, not why a prediction "
             "was made.</li>")
    page.add("<li>Attention rollout (Abnar &amp; Zuidema, 2020): heads averaged, identity added for the residual "
             "connection, rows renormalised, then multiplied through the layers.</li>")


# --------------------------------------------------------------------------- one call


def explain(
    model_dir: str | Path,
    texts: list[str],
    text_pairs: list[str] | None = None,
    task_file: str | Path | None = None,
    out: str | Path = "report.html",
    *,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    n_steps: int = 50,
    max_examples: int = 200,
    max_steps: int | None = None,
) -> Path:
    """Load a model directory, build the report and write it to `out`; returns the path written."""
    for i, t in enumerate(texts):  # fail before the (slow) model load
        if not t or not t.strip():
            raise ExplainError(f"--text number {i + 1} is empty; give the sentence to explain, e.g. --text 'a gripping film'")
    if not texts and task_file is None:
        raise ExplainError("nothing to explain: give --text (one or more) and/or --file (a labelled task file)")
    if text_pairs and len(text_pairs) != len(texts):
        raise ExplainError(f"{len(text_pairs)} --text-pair for {len(texts)} --text; give one pair per text (or none)")
    if n_steps < 1:
        raise ExplainError(f"--steps must be at least 1, got {n_steps}")
    max_steps = MAX_STEPS if max_steps is None else max_steps
    if max_steps < n_steps:
        raise ExplainError(f"--max-steps {max_steps} is below --steps {n_steps}; give at least as many")
    if max_examples < 1:
        raise ExplainError(f"--max-examples must be at least 1, got {max_examples}")
    task = read_task_file(task_file, text_column, label_column, text_pair_column) if task_file else None
    model = load_explainable(model_dir)
    page = build_report(model, texts, text_pairs, task, n_steps=n_steps, max_examples=max_examples, max_steps=max_steps)
    out = Path(out)
    if out.is_dir():
        out = out / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out
