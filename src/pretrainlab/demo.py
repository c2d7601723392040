"""The main job, end to end on real data the tool fetches itself:

    SOTU speeches + the MR training sentences (task:mr) -> prepare + WordPiece tokenizer
    -> pre-train a tiny Transformer with MLM (the package's default recipe) for 5 minutes
    -> learning curve on MR (300, 1000, all labels x 3 seeds): pretrained, its random-init twin,
       TF-IDF + LR, majority class -> curve.csv / curve.md / curve.png
    -> Hugging Face export of the all-labels pretrained classifier + the model-card snippet.

Every step says what it does and where its output is (`pretrainlab demo --minutes N --labels ...`). The checkpoint
path (`make demo-checkpoint`) adds a real model: `--reference DIR` (all-MiniLM-L6-v2, imported) fine-tuned on the
same labels at REFERENCE_LR, and with `--student preset:tiny` the small student distilled from it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .config import REFERENCE_LR, load_config
from .data.task_text import write_task_text  # noqa: F401  (the demo's task text, re-exported)

log = logging.getLogger(__name__)


def say(msg: str) -> None:
    log.info(msg)


def run_demo(out: str | Path = "runs/demo", minutes: float = 5.0, seeds: tuple[int, ...] = (0, 1, 2),
             preset: str = "auto", epochs: int | None = 3, task_text: bool = True, corpus: str | Path | None = None,
             task_file: str | Path | None = None, settings: tuple[str, ...] = (),
             labels: tuple[str, ...] = ("300", "1000", "all"), self_train: bool = False,
             student: str | None = None, reference: str | Path | None = None,
             models: tuple[str, ...] | None = None, jobs: int | None = None) -> Path:
    """The demo into `out`. `corpus` (raw text) and `task_file` replace SOTU and MR (no download);
    `settings` (`section.key=value`) come after the demo's own and win. Tests use all three for a tiny run.
    self_train, student (preset:NAME or a run directory): the curve's X+self-train and X->student rows too;
    reference: a run (e.g. an imported all-MiniLM-L6-v2) fine-tuned alike at REFERENCE_LR; models: only these rows of
    the curve.
    jobs: the curve's fits at once (run_curve's jobs); None: demo_jobs, 2 on a CPU with 2 cores or more."""
    from .curve import DETAILS_FILE, cells, markdown_table, read_details, run_curve, stages_table
    from .curve_rows import CurveExtras
    from .data.prepare import prepare_corpus
    from .data.sources import get_source
    from .data.tasks import builtin_task_file, task_from_config
    from .export.hf import check_export, export, logits_fn
    from .train import pretrain

    out = Path(out)
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    say(f"== pretrainlab demo -> {out.resolve()}")

    say("[1/5] fetching the State of the Union corpus and the MR movie-review task (pinned, sha256-checked)")
    sotu = Path(corpus) if corpus else get_source("sotu")
    mr_file = Path(task_file) if task_file else builtin_task_file("mr")
    say(f"      corpus: {sotu}\n      task:   {mr_file}")

    # The package defaults are the recipe measured best for a CPU budget (benchmarks/results/recipe.md):
    # tiny modern Transformer, untied MLM softmax, no dropout, lr 2e-3, 64-token packed sequences,
    # WordPiece 8k; fine-tuning with mean pooling, dropout 0.1, lr 1e-3, a step floor for few labels.
    # The demo's own fine-tuning budget (3 epochs, patience 2, one validation an epoch) keeps the whole job
    # within 15 minutes on 2 cores; small label counts still get finetune.min_steps.
    overrides = [f"model.preset={preset}", f"train.budget={minutes * 60:.0f}s", "train.eval_batches=8",
                 f"finetune.task={task_file or 'mr'}", "finetune.max_len=64", "finetune.patience=2", "finetune.evals=0"]
    if epochs is not None:
        overrides.append(f"finetune.epochs={epochs}")
    cfg = load_config(None, overrides + list(settings))

    task = task_from_config(cfg.finetune)  # the same seeded splits for every model and baseline
    inputs = [str(sotu)]
    if task_text:
        # Task-adaptive pre-training (Gururangan et al. 2020): `task:` is the task's *training* texts,
        # unlabelled; validation and test texts never join the corpus.
        inputs.append(f"task:{task_file or 'mr'}")
    say("[2/5] preparing the corpus (" + ("+ the MR training sentences as unlabelled text, task:mr" if task_text else "")
        + "): normalise, split sentences, deduplicate, train a WordPiece tokenizer, tokenize into shards")
    prepared = out / "prepared"
    report = prepare_corpus(inputs, prepared, cfg.data, finetune_cfg=cfg.finetune)
    say("      " + report.summary().replace("\n", "\n      "))

    run_dir = out / "pretrain"
    if (run_dir / "summary.json").exists():
        say(f"[3/5] pre-training: already done in {run_dir} (delete it to train again)")
    else:
        say(f"[3/5] pre-training a Transformer (model.preset={preset}, {cfg.model.style} style) with masked LM for "
            f"{minutes:g} minutes")
        pretrain(cfg, prepared, run_dir, resume=(run_dir / "checkpoints" / "latest").exists())
    pre_summary = json.loads((run_dir / "summary.json").read_text())

    jobs = demo_jobs(cfg.train.device) if jobs is None else jobs
    say(f"[4/5] the learning curve on MR: {', '.join(labels)} labels x seeds {list(seeds)}; pretrained, random init, "
        "TF-IDF + logistic regression, majority class" + (f", the reference {reference}" if reference else "")
        + f", each on the same labels; {jobs} fine-tuning fit{'s' if jobs > 1 else ''} at a time (--jobs)")
    model_dir = out / "finetune-pretrained"
    extras = CurveExtras(self_train=self_train, student=student)
    ref_cfg = reference_config(reference, overrides, settings) if reference is not None else None
    points = run_curve(run_dir, task, labels, seeds, out / "curve", cfg, reference=reference, reference_cfg=ref_cfg,
                       save_model=model_dir, models=models, extras=extras, jobs=jobs)
    table = markdown_table(points)
    if reference is not None or extras.semi:
        table += ("\nWhat each stage adds (each row against the one it builds on), with the model's size and CPU "
                  "speed (fp32, batch 32) and its minutes:\n\n" + stages_table(points, read_details(
                      out / "curve" / DETAILS_FILE)))

    say("[5/5] exporting the pretrained classifier (all labels) to Hugging Face format and running the snippet")
    hf_dir = out / "hf-model"
    export(model_dir, hf_dir, overwrite=True)
    check = check_export(hf_dir, logits_fn(model_dir))

    text = (f"# pretrainlab demo\n\nMR test split ({len(task.test)} sentences), accuracy, mean ± std over seeds "
            f"{list(seeds)} [95% bootstrap interval over the test sentences, the seeds' bounds averaged], by number of "
            f"labelled training examples (a fifth of them for validation):\n\n{table}\n"
            f"{reading(cells(points))}\n\nPlot: {out / 'curve' / 'curve.png'}\n\n"
            f"Pre-training: {pre_summary['steps']} steps, {pre_summary['tokens']:,} tokens, "
            f"{pre_summary['tok_per_s']:,.0f} tok/s, final validation MLM loss "
            f"{pre_summary.get('val_mlm_loss', float('nan')):.3f}, accuracy {pre_summary.get('val_mlm_acc', float('nan')):.3f}.\n\n"
            f"Hugging Face export: {hf_dir} -- the snippet printed {check.label!r} for 'This is a great movie!'; "
            f"max |logit difference| vs pretrainlab {check.max_abs_diff:.2e}.\n")
    (out / "results.md").write_text(text, encoding="utf-8")
    print(text)
    say(f"== done in {(time.perf_counter() - t0) / 60:.1f} min. Everything is under {out.resolve()}:\n"
        f"   prepared corpus {prepared}, pre-training run {run_dir} (loss.png, metrics.jsonl),\n"
        f"   learning curve {out / 'curve'} (curve.csv, curve.md, curve.png), fine-tuned model {model_dir},\n"
        f"   Hugging Face model {hf_dir}, this summary {out / 'results.md'}")
    return out


def reference_config(reference: str | Path, overrides: list[str], settings: tuple[str, ...]):
    """The reference's fine-tuning settings: its run's own, then the demo's at REFERENCE_LR, then `settings`."""
    from .runs import load_pretrained

    return load_config(None, [*overrides, f"finetune.lr={REFERENCE_LR:g}", *settings],
                       base=load_pretrained(reference).config, base_sections=("finetune",))


def demo_jobs(device: str) -> int:
    """The curve's fits at once: 2 on a CPU with at least 2 usable cores (two one-thread fits of a tiny model finish
    sooner than one two-thread fit after the other), else 1 (one core, or a GPU the fits would share)."""
    from .curve_jobs import usable_cores
    from .loop import pick_device

    return 2 if pick_device(device).type == "cpu" and len(usable_cores()) >= 2 else 1


def reading(by: dict) -> str:
    """One sentence on what the curve shows, from its own numbers."""
    import statistics

    counts = sorted({n for n, _ in by})
    ahead, behind_tfidf = [], []
    for n in counts:
        mean = {m: statistics.fmean(p.accuracy for p in by[(n, m)]) for (k, m) in by if k == n}
        if mean["pretrained"] > mean["random-init"]:
            ahead.append(n)
        if mean["pretrained"] < mean["tfidf"]:
            behind_tfidf.append(n)
    return (f"What the figure shows: pre-training is ahead of its random-init twin on the mean at "
            f"{len(ahead)} of {len(counts)} label counts ({', '.join(map(str, ahead)) or 'none'}), and below "
            f"TF-IDF + logistic regression at {len(behind_tfidf)} of {len(counts)}.")
