"""The distillation's report: teacher against student, test scores, sizes and CPU speeds (report.md, report.json).

    markdown = report_markdown(result)          # result: DistillResult, from distill()
    texts_per_second(model, enc, pad_id, segments, batch_size=32)
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from ..data.encoding import Encoded, collate, encode
from ..metrics import Metrics, SeedResult, Summary
from ..models import Classifier


@dataclass
class ModelFigures:
    """One side of the report, teacher or student."""

    model: str
    accuracy: Summary
    """Test accuracy (the student's over seeds)."""
    macro_f1: Summary
    parameters: int
    disk_bytes: int
    """Size of model.safetensors."""
    texts_per_s_batch1: float
    """CPU, fp32, the same test texts for both, one at a time."""
    texts_per_s_batch32: float


@dataclass
class DistillResult:
    task: str
    teacher: ModelFigures
    student: ModelFigures
    agreement: Summary
    """Share of test texts on which the student predicts the teacher's label (over seeds)."""
    seeds: list[SeedResult]
    best_seed: int
    """The seed with the best validation accuracy (then loss): its student is the one saved."""
    test: Metrics
    """The saved student on the test split."""
    label_names: list[Any]
    texts: dict[str, Any]
    cache: dict[str, Any]
    settings: dict[str, Any]
    out_dir: str
    seconds: float = 0.0
    """Wall clock of the whole distillation (teacher labelling, every seed, this report)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BATCH1_TEXTS = 64
"""Batch-1 throughput is timed on the first this many of the timed texts."""


@torch.no_grad()
def texts_per_second(model: Classifier, enc: Encoded, pad_id: int, segments: bool, batch_size: int) -> float:
    """CPU, fp32 inference speed on the texts in their order, batch_size at a time, after one warm-up batch
    (padding to each batch's longest text; tokenization not included)."""
    model.eval()
    n = len(enc)
    batches = [collate(enc, list(range(i, min(i + batch_size, n))), pad_id, segments) for i in range(0, n, batch_size)]

    def run(b: dict[str, Tensor]) -> None:
        model(b["input_ids"], b["mask"], b.get("segment_ids"))

    run(batches[0])
    t0 = time.perf_counter()
    for b in batches:
        run(b)
    return n / max(time.perf_counter() - t0, 1e-9)


def speeds(model: Classifier, tokenizer, max_len: int, pad_id: int, segments: bool, texts: list[str]) -> tuple[float, float]:
    """(texts/s at batch 1 on the first BATCH1_TEXTS texts, texts/s at batch 32 on all of them)."""
    enc = encode(tokenizer, texts, None, max_len)
    one = Encoded(enc.ids[:BATCH1_TEXTS], enc.segments[:BATCH1_TEXTS], enc.labels[:BATCH1_TEXTS])
    return (texts_per_second(model, one, pad_id, segments, 1), texts_per_second(model, enc, pad_id, segments, 32))


def _size(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def _stops(seeds: list[SeedResult]) -> str:
    """Where each seed ended and where its best validation fell (a best on the last step: under-trained)."""
    return "; ".join(f"seed {s.seed} {'stopped early at' if s.stopped_early else 'ran'} {s.steps} steps, best "
                     f"validation at step {s.best_step}" for s in seeds)


def _copies(texts: dict[str, Any]) -> str:
    """The augmented copies among the texts (distill.augment), if any."""
    if not texts.get("augmented"):
        return ""
    learn = (", each learning the teacher's label of its piece: distill.augment_targets=source"
             if texts.get("augment_targets") == "source" else "")
    return (f", plus {texts['augmented']:,} augmented copies of those pieces ({texts['augment_held_out_dropped']:,} "
            f"equal to a validation/test text dropped{learn})")


def _kept(texts: dict[str, Any]) -> str:
    """How much of the pool the student learns (distill.confident_share), if not all of it."""
    if "kept" not in texts:
        return ""
    return (f"; the student learns {texts['kept']:,} of these pieces, those the soft labels are surest of "
            f"(distill.confident_share={texts['confident_share']:g}, class by class)")


def _mixed(settings: dict[str, Any]) -> str:
    """What the soft labels mix in besides the teacher (distill.tfidf_weight), if anything."""
    w = settings.get("tfidf_weight")
    return (f" (soft labels: {1 - w:g} x the teacher's + {w:g} x TF-IDF + LR's on the same labels: "
            f"distill.tfidf_weight)" if w else "")


def report_markdown(r: DistillResult) -> str:
    t, s = r.teacher, r.student
    rows = [("test accuracy", str(t.accuracy), str(s.accuracy), f"{s.accuracy.mean - t.accuracy.mean:+.4f}"),
            ("test macro-F1", str(t.macro_f1), str(s.macro_f1), f"{s.macro_f1.mean - t.macro_f1.mean:+.4f}"),
            ("parameters", _size(t.parameters), _size(s.parameters), f"{s.parameters / t.parameters:.3f}x"),
            ("size on disk", _size(t.disk_bytes, "B"), _size(s.disk_bytes, "B"), f"{s.disk_bytes / t.disk_bytes:.3f}x"),
            ("CPU texts/s, batch 1", f"{t.texts_per_s_batch1:.1f}", f"{s.texts_per_s_batch1:.1f}",
             f"{s.texts_per_s_batch1 / t.texts_per_s_batch1:.1f}x"),
            ("CPU texts/s, batch 32", f"{t.texts_per_s_batch32:.1f}", f"{s.texts_per_s_batch32:.1f}",
             f"{s.texts_per_s_batch32 / t.texts_per_s_batch32:.1f}x")]
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    x, c = r.texts, r.cache
    seeds = ", ".join(str(p.seed) for p in r.seeds)
    return (f"# Distillation on {r.task}\n\nTeacher `{t.model}`, student `{s.model}` "
            f"({r.settings['student_backbone']}, tokenizer {r.settings['tokenizer']}); seeds {seeds} "
            f"(mean ± std; the saved student is seed {r.best_seed}, best on validation).\n\n"
            f"| | teacher | student | student vs teacher |\n|---|---:|---:|---:|\n{table}\n\n"
            f"The student predicts the teacher's label on {r.agreement} of the test texts. Throughput: fp32 "
            f"on the CPU ({torch.get_num_threads()} threads), the same test texts for both, measured one after the "
            f"other in this run (batch 1: the first {BATCH1_TEXTS}); tokenization not included.\n\n"
            f"Texts: {x['labelled']:,} labelled training examples and {x['unlabelled']:,} unlabelled pieces of about "
            f"{x['piece_words']} words ({', '.join(f'{k}: {v:,}' for k, v in x['sources'].items())}; dropped: "
            f"{x['held_out_dropped']:,} validation/test texts, {x['labelled_dropped']:,} labelled ones, "
            f"{x['duplicates_dropped']:,} duplicates{'; a sample of ' + format(x['sampled_from'], ',') if x['sampled_from'] else ''}"
            f"){_copies(x)}{_kept(x)}; [UNK] rate {x['unk_rate']:.2%}.\nTeacher logits: {c['computed']:,} computed, {c['reused']:,} from "
            f"the cache ({c['dir']}){'; damaged shards refused and rebuilt: ' + str(len(c['refused'])) if c['refused'] else ''}.\n"
            f"Loss: T^2 KL at T={r.settings['temperature']}{_mixed(r.settings)} + {r.settings['alpha']} x CE on "
            "labelled examples"
            f"{' + ' + str(r.settings['hidden_weight']) + ' x hidden-state MSE' if r.settings['hidden_weight'] else ''}; "
            f"budget {', '.join(f'{k} {v}' for k, v in r.settings['budget'].items() if v is not None)} per seed, "
            f"validated every {r.settings['eval_every']} steps, patience {r.settings['patience']}: {_stops(r.seeds)}.\n"
            f"Took {r.seconds / 60:.1f} min, of which the teacher's labelling {c['seconds'] / 60:.1f} min.\n")