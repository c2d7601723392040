"""Regenerate the run directories in this folder: runs saved by pretrainlab as it was at f85dc63.

Made at f85dc63 (before the LM heads moved from the objectives into model classes, issue #25), so that
tests/test_old_runs.py can show that a run saved then still loads and gives the same outputs. Do NOT
rerun it with a later pretrainlab: its whole point is the old layout of the weights. To regenerate,
check f85dc63 out and run, from the repository root:

    python tests/data/old_runs/make_old_runs.py

Each run is a few steps of pre-training of a 2-layer d=32 model (the encoder-decoder: 1 + 1 layers) on
a tiny generated corpus (vocabulary 64); a fine-tuned classifier is a few steps of fine-tuning of one
of them. Only what loading needs is kept (config.yaml, tokenizer.json, the checkpoint's
model.safetensors and state.json; a classifier's four files), and `reference.safetensors` beside each
holds a fixed input and what the model computed on it then:

    input_ids, mask (1, T)                 the input ([CLS] text [SEP], no padding)
    hidden (1, T, D)                       the backbone's final states (encoder-decoder: the decoder's)
    logits                                 mlm / clm: the head at every position (1, T, V);
                                           bilm (rnn clm): fwd_logits and bwd_logits (1, T, V);
                                           encoder-decoder: the decoder's logits (1, T, V) on
                                           decoder_input_ids (the input shifted right behind [SEP]);
                                           a classifier: its logits (1, n_labels)
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from pretrainlab.config import load_config
from pretrainlab.data.prepare import prepare_corpus
from pretrainlab.finetune import finetune
from pretrainlab.files import sha256_file
from pretrainlab.runs import load_classifier, load_pretrained
from pretrainlab.train import pretrain

HERE = Path(__file__).resolve().parent
WORDS = "the cat dog sat on a mat and ran to house with big small red tree good bad film".split()
TEXT = "the cat sat on a mat and ran to the big red house"
BASE = ["model.preset=tiny", "model.n_layers=2", "model.d_model=32", "model.n_heads=2", "model.d_ff=32",
        "model.max_len=32", "model.dropout=0.0", "data.seq_len=16", "data.vocab_size=64", "train.budget=3",
        "train.batch_size=4", "train.warmup=0", "train.lr=0.01", "train.eval_every=0", "train.eval_batches=0",
        "train.progress=false", "train.precision=fp32", "train.device=cpu"]
RUNS = {
    "encoder-mlm-untied": ["model.style=modern", "objective.tie_embeddings=false"],
    "encoder-mlm-tied": ["model.style=bert", "objective.tie_embeddings=true"],
    "decoder-clm": ["model.backbone=decoder"],
    "seq2seq-infill-permute": ["model.backbone=encoder-decoder", "model.n_layers=1"],
    "rnn-clm": ["model.backbone=rnn", "objective.weights={clm: 1.0}"],
}
CLASSIFIERS = {"classifier-encoder": "encoder-mlm-untied", "classifier-seq2seq": "seq2seq-infill-permute"}
FINETUNE = ["finetune.max_len=16", "finetune.batch_size=8", "finetune.epochs=1", "finetune.min_steps=0",
            "finetune.steps=3", "finetune.lr=0.005", "finetune.pooling=mean"]


def corpus(tmp: Path) -> Path:
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20))).capitalize() + ". "
            + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))).capitalize() + "." for _ in range(120)]
    (tmp / "corpus.txt").write_text("\n\n".join(docs), encoding="utf-8")
    out = tmp / "prepared"
    prepare_corpus([str(tmp / "corpus.txt")], out, load_config(None, BASE + ["data.min_chars=5"]).data)
    return out


def task_file(tmp: Path) -> Path:
    rng = random.Random(1)
    rows = ["text,label"] + [" ".join(rng.choice(WORDS) for _ in range(6)) + f",{'pos' if i % 2 else 'neg'}"
                             for i in range(60)]
    (tmp / "task.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp / "task.csv"


def keep_run(src: Path, dst: Path) -> None:
    """config, tokenizer and the latest checkpoint's weights; state.json lists only model.safetensors."""
    dst.mkdir(parents=True)
    for name in ("config.yaml", "tokenizer.json"):
        shutil.copyfile(src / name, dst / name)
    step = (src / "checkpoints" / "latest").read_text().strip()
    ck = dst / "checkpoints" / step
    ck.mkdir(parents=True)
    (dst / "checkpoints" / "latest").write_text(step + "\n")
    shutil.copyfile(src / "checkpoints" / step / "model.safetensors", ck / "model.safetensors")
    state = json.loads((src / "checkpoints" / step / "state.json").read_text())
    state["files"] = {"model.safetensors": sha256_file(ck / "model.safetensors")}
    (ck / "state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")


def fixed_input(tok) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([tok.encode(TEXT).ids])
    return ids, torch.ones_like(ids)


@torch.no_grad()
def reference_of_run(run: Path) -> dict[str, torch.Tensor]:
    pre = load_pretrained(run)
    ids, mask = fixed_input(pre.tokenizer)
    kind, objs = pre.config.model.backbone, pre.model.objectives
    ref = {"input_ids": ids, "mask": mask}
    if kind == "encoder-decoder":
        from pretrainlab.backbones.seq2seq import shift_right

        dec = shift_right(ids, pre.special.sep, pre.special.pad)
        out = pre.backbone(ids, mask, dec)
        return {**ref, "decoder_input_ids": dec, "hidden": out.decoder_hidden, "logits": out.logits}
    hidden = pre.backbone(ids, mask).hidden
    ref["hidden"] = hidden
    if "mlm" in objs:
        ref["logits"] = objs["mlm"].head(hidden)
    elif kind == "decoder":
        ref["logits"] = objs["clm"].head(hidden)
    else:  # ELMo on the rnn
        fwd, bwd = hidden.split(hidden.shape[-1] // 2, dim=-1)
        ref["fwd_logits"] = objs["clm"].logits(fwd, objs["clm"].proj_fwd)
        ref["bwd_logits"] = objs["clm"].logits(bwd, objs["clm"].proj_bwd)
    return ref


@torch.no_grad()
def reference_of_classifier(path: Path) -> dict[str, torch.Tensor]:
    ftm = load_classifier(path)
    ids, mask = fixed_input(ftm.tokenizer)
    out = ftm.model(ids, mask)
    return {"input_ids": ids, "mask": mask, "hidden": out.hidden, "logits": out.logits}


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        prepared = corpus(tmp)
        for name, extra in RUNS.items():
            run = pretrain(load_config(None, BASE + extra), prepared, tmp / name)
            dst = HERE / name
            shutil.rmtree(dst, ignore_errors=True)
            keep_run(run, dst)
            save_file({k: v.contiguous() for k, v in reference_of_run(dst).items()}, str(dst / "reference.safetensors"))
        task = task_file(tmp)
        for name, source in CLASSIFIERS.items():
            cfg = load_config(None, BASE + RUNS[source] + FINETUNE)
            finetune(HERE / source, task, cfg, out_dir=tmp / name, seeds=(0,), quiet=True)
            dst = HERE / name
            shutil.rmtree(dst, ignore_errors=True)
            dst.mkdir()
            for f in ("model.safetensors", "config.yaml", "tokenizer.json", "classifier.json"):
                shutil.copyfile(tmp / name / f, dst / f)
            save_file({k: v.contiguous() for k, v in reference_of_classifier(dst).items()},
                      str(dst / "reference.safetensors"))
    print("wrote", ", ".join([*RUNS, *CLASSIFIERS]), "in", HERE, file=sys.stderr)


if __name__ == "__main__":
    main()
