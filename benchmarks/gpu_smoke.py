"""One prepared smoke run of the GPU paths (issue #27): every check prints PASS or FAIL, then a summary.

    bash benchmarks/gpu_smoke.sh                  # on a GPU machine (the lent one: ~3-4 min, offline)
    bash benchmarks/gpu_smoke.sh --device cpu     # the same checks, tiny, on a CPU (< 3 min; a test in the suite)

It runs against the repository's src/ on whatever Python has torch and transformers (no venv is made,
nothing is downloaded: the corpus and the task are synthetic, near-duplicate removal is `exact`, so neither
datasketch nor platformdirs is needed: the lent machine has neither), and writes results.json, summary.md
and log.txt under $OUT (or --out; default ./gpu_smoke_out), after every check, so a run stopped at its time
limit still leaves what it found. Sized for the device tool's 15 minutes: one call, `bash
benchmarks/gpu_smoke.sh` with timeout_s 480, leaves time to rerun it once. Checks:

  env           the device, torch / transformers versions, what precision=auto picks
  recipe        the default recipe on a synthetic corpus (precision auto: bf16 on a GPU of compute
                capability >= 8), its tokens/s and validation loss
  resume        exact resume in fp32 deterministic mode (dropout 0.1, so the GPU's RNG is restored too):
                the resumed run's max |weight difference| to the uninterrupted one must be 0
  families      20 steps of each backbone and objective family; on a GPU the host syncs per step are
                counted (torch.cuda.set_sync_debug_mode): goal 1, the loop's own read
  throughput    a base-size MLM step at seq 512 against BertForMaskedLM / ModernBertForMaskedLM with the
                same dimensions, ABBA (benchmarks/throughput.py's functions): tokens/s and share of the
                card's bf16 matmul peak (goals: >= 1.5x BertForMaskedLM, >= 40% of peak); tiny on a CPU
  downstream    fine-tune, predict, export (with its transformers check), generate (decoder and BART)
  gpu-on-cpu    the recipe's checkpoint (written on the device) continued on the CPU

A FAIL is a broken path (exit status 1); a goal not met is reported as GOAL-MISSED (exit status 0).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # benchmarks/throughput.py

from pretrainlab import loop  # noqa: E402
from pretrainlab.cli import main as cli  # noqa: E402

# --------------------------------------------------------------------------- sizes


SIZES = {
    # docs in the corpus, recipe steps, family steps, batch, seq, throughput (size, seq, batch, steps, repeats)
    "cuda": dict(docs=3000, recipe_steps=400, family_steps=20, batch=32, seq=64, resume_steps=40,
                 throughput=("base", 512, 16, 5, 3), finetune_rows=600),
    "cpu": dict(docs=300, recipe_steps=30, family_steps=20, batch=8, seq=32, resume_steps=8,
                throughput=("tiny", 64, 8, 2, 1), finetune_rows=120),
}

FAMILIES = {
    "transformer bert mlm": ["model.backbone=transformer", "model.style=bert"],
    "transformer modern mlm": ["model.backbone=transformer", "model.style=modern"],
    "mlm+nsp": ["objective.weights={mlm: 1.0, nsp: 1.0}"],
    "mlm+sop": ["objective.weights={mlm: 1.0, sop: 1.0}"],
    "plm": ["objective.weights={plm: 1.0}"],
    "rtd": ["objective.weights={rtd: 1.0}"],
    "rnn mlm": ["model.backbone=rnn"],
    "rnn bilm (ELMo)": ["model.backbone=rnn", "objective.weights={bilm: 1.0}"],
    "cnn mlm": ["model.backbone=cnn"],
    "decoder llama clm": ["model.backbone=decoder", "model.style=llama"],
    "decoder gpt2 clm": ["model.backbone=decoder", "model.style=gpt2"],
    "encoder-decoder bart infill+permute": ["model.backbone=encoder-decoder"],
    "encoder-decoder span": ["model.backbone=encoder-decoder", "objective.weights={span: 1.0}"],
}

# --------------------------------------------------------------------------- synthetic data

NOUNS = "cat dog bird farmer teacher river city senate nation film actor story garden engine market".split()
ADJECTIVES = "small large old young quiet loud bright dark quick slow".split()
VERBS = "sees follows builds watches finds praises hears likes crosses leaves".split()
GOOD, BAD = "wonderful superb moving brilliant charming".split(), "dull awful boring clumsy tedious".split()


def sentence(rng: random.Random) -> str:
    """A sentence of a small grammar: enough structure for a model to learn within a few hundred steps."""
    np1 = f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    np2 = f"a {rng.choice(NOUNS)}" if rng.random() < 0.5 else f"the {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
    tail = rng.choice(["", f" near the {rng.choice(NOUNS)}", f" and {rng.choice(VERBS)} it", " again"])
    return f"{np1} {rng.choice(VERBS)} {np2}{tail}.".capitalize()


def write_corpus(path: Path, n_docs: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    docs = [f"Report {i}. " + " ".join(sentence(rng) for _ in range(rng.randint(2, 8))) for i in range(n_docs)]
    path.write_text("\n\n".join(docs) + "\n", encoding="utf-8")


def write_task(path: Path, n_rows: int, seed: int = 1) -> None:
    """text,label rows: the label is whether the review's adjective is a good or a bad one (learnable)."""
    rng = random.Random(seed)
    rows = ["text,label"]
    for i in range(n_rows):
        good = i % 2 == 0
        word = rng.choice(GOOD if good else BAD)
        rows.append(f"{sentence(rng)[:-1]} and the film was {word} {i},{'pos' if good else 'neg'}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- running checks


class Smoke:
    """Runs the checks in order, each one's PASS / FAIL line as it ends; the results and the log at the end."""

    def __init__(self, device: str, out: Path, work: Path):
        self.device, self.out, self.work = device, out, work
        self.size = SIZES["cuda" if device.startswith("cuda") else "cpu"]
        self.results: list[dict] = []
        self.log = io.StringIO()

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.log.write(line + "\n")

    def cli(self, *argv: str) -> str:
        """pretrainlab's command line in this process; -> its output. A non-zero status raises with the output's end."""
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            status = cli([str(a) for a in argv])
        text = buf.getvalue()
        self.log.write(f"$ pretrainlab {' '.join(map(str, argv))}\n{text}\n")
        if status != 0:
            raise RuntimeError(f"pretrainlab {argv[0]} exited with {status}: {text[-1500:]}")
        return text

    def check(self, name: str, fn) -> dict | None:
        t = time.perf_counter()
        try:
            detail = fn() or {}
            status = "PASS"
        except Exception as e:  # a check that breaks is a FAIL with the reason; the others still run
            detail = {"error": f"{type(e).__name__}: {e}"}
            self.log.write(traceback.format_exc())
            status = "FAIL"
        seconds = round(time.perf_counter() - t, 1)
        goals = detail.pop("goals", {})
        self.results.append({"check": name, "status": status, "seconds": seconds, **detail, "goals": goals})
        shown = "; ".join(f"{k} {v}" for k, v in detail.items())
        self.say(f"{status} {name} ({seconds}s): {shown}")
        for goal, met in goals.items():
            self.say(f"  {'GOAL-MET' if met else 'GOAL-MISSED'} {goal}")
        self.save()  # after every check: a run stopped at the device's time limit still leaves what it found
        return detail if status == "PASS" else None

    def pretrain_args(self, out: Path, *settings: str) -> list[str]:
        s = self.size
        base = [f"train.device={self.device}", "train.progress=false", f"data.seq_len={s['seq']}",
                f"train.batch_size={s['batch']}"]
        return ["pretrain", "--corpus", self.work / "corpus", "--out", out,
                *[x for setting in base + list(settings) for x in ("--set", setting)]]

    def finish(self) -> int:
        failed = [r["check"] for r in self.results if r["status"] == "FAIL"]
        missed = [f"{r['check']}: {g}" for r in self.results for g, met in r["goals"].items() if not met]
        self.say(f"\nSUMMARY: {len(self.results) - len(failed)} of {len(self.results)} checks PASS"
                 + (f"; FAIL: {', '.join(failed)}" if failed else "")
                 + (f"; goals missed: {'; '.join(missed)}" if missed else "; every goal met"))
        self.save()
        return 1 if failed else 0

    def save(self) -> None:
        """results.json, summary.md and log.txt under the results folder, as they stand."""
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1), encoding="utf-8")
        (self.out / "summary.md").write_text(summary_markdown(self.results), encoding="utf-8")
        (self.out / "log.txt").write_text(self.log.getvalue(), encoding="utf-8")


def summary_markdown(results: list[dict]) -> str:
    lines = ["| check | status | seconds | details |", "|---|---|---:|---|"]
    for r in results:
        details = "; ".join(f"{k} {v}" for k, v in r.items() if k not in ("check", "status", "seconds", "goals"))
        goals = "; ".join(f"{'met' if met else 'MISSED'}: {g}" for g, met in r["goals"].items())
        lines.append(f"| {r['check']} | {r['status']} | {r['seconds']} | {details}{' ' + goals if goals else ''} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the checks


def check_env(smoke: Smoke) -> dict:
    import transformers

    dev = loop.pick_device(smoke.device)
    info = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()}
    if dev.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(dev), capability=".".join(map(str, torch.cuda.get_device_capability(dev))),
                    gpus=torch.cuda.device_count())
    info["auto precision"] = str(loop.pick_dtype("auto", dev) or "fp32").replace("torch.", "")
    return info


def check_prepare(smoke: Smoke) -> dict:
    raw = smoke.work / "raw.txt"
    write_corpus(raw, smoke.size["docs"])
    smoke.cli("prepare", raw, "--out", smoke.work / "corpus", "--set", "data.dedup=exact", "--set", "data.min_chars=5")
    counts = json.loads((smoke.work / "corpus" / "manifest.json").read_text())["counts"]
    return {"documents": counts["docs"], "tokens": counts["tokens"]}


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def check_recipe(smoke: Smoke) -> dict:
    run = smoke.work / "recipe"
    text = smoke.cli(*smoke.pretrain_args(run, f"train.budget={smoke.size['recipe_steps']}", "train.eval_every=100",
                                          "train.eval_batches=5", "train.log_every=1"))
    s = summary_of(run)
    precision = next((line.split("precision ")[-1] for line in text.splitlines() if line.startswith("model:")), "?")
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    first, last = statistics.mean(r["loss"] for r in rows[:3]), statistics.mean(r["loss"] for r in rows[-3:])
    if not last < first:
        raise AssertionError(f"the training loss did not fall: {first:.3f} -> {last:.3f}")
    return {"precision": precision, "steps": s["steps"], "tok/s": round(s["tok_per_s"]),
            "loss": f"{first:.3f} -> {last:.3f}", "val_loss": round(s.get("val_loss", float("nan")), 3)}


def weights_of(run: Path, step: int | None = None) -> dict:
    from safetensors.torch import load_file

    name = f"step_{step:07d}" if step else (run / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run / "checkpoints" / name / "model.safetensors"))


def cut_back(run: Path, step: int, into: Path) -> Path:
    """A copy of `run` whose latest checkpoint is the one at `step`."""
    shutil.copytree(run, into)
    for ckpt in (into / "checkpoints").glob("step_*"):
        if ckpt.name != f"step_{step:07d}":
            shutil.rmtree(ckpt)
    (into / "checkpoints" / "latest").write_text(f"step_{step:07d}\n")
    return into


def check_resume(smoke: Smoke) -> dict:
    n = smoke.size["resume_steps"]
    settings = ["train.precision=fp32", "train.deterministic=true", "model.dropout=0.1", f"train.budget={n}",
                f"train.checkpoint_every={n // 2}", "train.eval_every=0", "train.eval_batches=1"]
    straight = smoke.work / "resume-straight"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        smoke.cli(*smoke.pretrain_args(straight, *settings))
        resumed = cut_back(straight, n // 2, smoke.work / "resume-resumed")
        shutil.rmtree(resumed / "checkpoints" / f"step_{n:07d}", ignore_errors=True)
        smoke.cli(*smoke.pretrain_args(resumed, *settings), "--resume")
    torch.use_deterministic_algorithms(False)  # set_seed turned it on for this process
    a, b = weights_of(straight, n), weights_of(resumed, n)
    diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    nondeterministic = sorted({str(w.message).split(".")[0][:120] for w in caught
                               if "deterministic" in str(w.message)})
    detail = {"steps": f"{n // 2} + {n - n // 2}", "max |weight difference|": f"{diff:.3g}"}
    if nondeterministic:
        detail["nondeterministic ops warned"] = nondeterministic
    if diff != 0:
        raise AssertionError(f"resumed weights differ from the uninterrupted run's by up to {diff:.3g}; "
                             f"{nondeterministic or 'no nondeterminism warnings'}")
    return detail


class SyncCounter:
    """Host syncs per training step on a GPU: torch's sync debug mode warns at each, and loop.settle (the one
    read a step needs) marks where a step ends. None on a CPU."""

    def __init__(self, device: str):
        self.on = device.startswith("cuda")
        self.per_step: list[int] = []

    @contextlib.contextmanager
    def counting(self):
        if not self.on:
            yield self
            return
        real_settle, caught = loop.settle, []

        def settle(*args):
            agreed = real_settle(*args)
            self.per_step.append(sum("synchroniz" in str(w.message) for w in caught))
            caught.clear()
            return agreed

        loop.settle = settle
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            caught = record
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield self
            finally:
                torch.cuda.set_sync_debug_mode("default")
                loop.settle = real_settle

    def summary(self) -> tuple[float, int] | None:
        """(median, max) syncs per step; the first step is left out (its count includes the set-up before it)."""
        steps = self.per_step[1:]
        return (statistics.median(steps), max(steps)) if steps else None


def check_families(smoke: Smoke) -> dict:
    """20 steps of each family; a failure names the families that broke."""
    done, broken, syncs = {}, {}, {}
    for name, settings in FAMILIES.items():
        run = smoke.work / ("family-" + name.replace(" ", "-").replace("(", "").replace(")", "").replace("+", "-"))
        counter = SyncCounter(smoke.device)
        try:
            with counter.counting():
                smoke.cli(*smoke.pretrain_args(run, *settings, f"train.budget={smoke.size['family_steps']}",
                                               "train.eval_every=0", "train.eval_batches=1", "train.log_every=1"))
            s = summary_of(run)
            done[name] = f"{s['tok_per_s']:,.0f} tok/s, loss {s.get('val_loss', float('nan')):.3f}"
            if counter.summary() is not None:
                syncs[name] = counter.summary()
        except Exception as e:
            broken[name] = f"{type(e).__name__}: {str(e)[-300:]}"
    smoke.say("  " + "\n  ".join(f"{k}: {v}" + (f", host syncs/step median {syncs[k][0]:g}, max {syncs[k][1]}"
                                                  if k in syncs else "") for k, v in done.items()))
    if broken:
        raise AssertionError(f"{len(broken)} of {len(FAMILIES)} families failed: {broken}")
    detail = {"families": len(done)}
    if syncs:  # the RNN and CNN read their documents' lengths (data-dependent shapes): shown, not held to 1
        over = {k: v for k, v in syncs.items() if v[1] > 1 and not k.startswith(("rnn", "cnn"))}
        detail["goals"] = {"1 host sync per step in every attention family" + (f" (not: {over})" if over else ""):
                           not over}
    return detail


def check_throughput(smoke: Smoke) -> dict:
    import throughput as tp

    size, seq, batch, steps, repeats = smoke.size["throughput"]
    dev = loop.pick_device(smoke.device)
    args = tp.parse_args(["--batch", str(batch), "--steps", str(steps), "--repeats", str(repeats),
                          "--device", str(dev)])
    bf16 = loop.pick_dtype("auto", dev) == torch.bfloat16
    precision = "bf16" if bf16 else "fp32"
    peak_dtype = torch.bfloat16 if bf16 else torch.float32
    n = 8192 if dev.type == "cuda" else 512
    peak = max(tp.matmul_peak(peak_dtype, n, 10, 3, dev) for _ in range(2))
    detail, goals = {"size": f"{size} seq {seq} batch {batch} {precision}", "peak": f"{peak / 1e9:,.0f} GFLOP/s"}, {}
    for style, peer in (("bert", "BertForMaskedLM"), ("modern", "ModernBertForMaskedLM")):
        row = tp.Row(style, size, 30522, seq, precision)
        ours, theirs, predicted = tp.measure(row, args)
        p = tp.PRESETS[size]
        per_token = tp.needed_flops(style, p["n_layers"], p["d_model"], p["d_ff"], seq, batch, 30522, predicted) / (batch * seq)
        share = ours * per_token / peak
        detail[style] = (f"{ours:,.0f} vs {peer} {theirs:,.0f} tok/s = {ours / theirs:.2f}x, "
                         f"{share:.0%} of peak (HF {theirs * per_token / peak:.0%})")
        if dev.type == "cuda" and style == "bert":
            goals[f"bert >= 1.5x {peer} ({ours / theirs:.2f}x)"] = ours / theirs >= 1.5
            goals[f"bert >= 40% of the bf16 peak ({share:.0%})"] = share >= 0.40
    detail["goals"] = goals
    return detail


def check_downstream(smoke: Smoke) -> dict:
    task = smoke.work / "task.csv"
    write_task(task, smoke.size["finetune_rows"])
    ft = smoke.work / "recipe-mr"
    dev = [f"train.device={smoke.device}", "train.progress=false"]
    steps = ["finetune.epochs=3", "finetune.min_steps=0"] if not smoke.device.startswith("cuda") else []
    text = smoke.cli("finetune", smoke.work / "recipe", "--task", task, "--out", ft, "--seeds", "0",
                     *[x for s in dev + steps for x in ("--set", s)])
    accuracy = next((line.split("test accuracy ")[1].split(" ")[0] for line in text.splitlines()
                     if "test accuracy" in line and line.startswith(task.stem)), "?")
    predicted = smoke.cli("predict", ft, "the film was wonderful", "the film was tedious")
    labels = [line.split("\t")[0] for line in predicted.strip().splitlines()[-2:]]
    exported = smoke.cli("export", ft, "--out", smoke.work / "hf-classifier")
    check = next((line for line in exported.splitlines() if line.startswith("transformers (offline)")), "?")
    decoder = smoke.work / "family-decoder-llama-clm"
    generated = smoke.cli("generate", decoder, "the old cat", "--temperature", "0", "--max-new-tokens", "8")
    bart = smoke.work / "family-encoder-decoder-bart-infill-permute"
    written = smoke.cli("generate", bart, "the old [MASK] sees a dog.", "--temperature", "0", "--max-new-tokens", "8")
    return {"fine-tuned test accuracy": accuracy, "predict": labels, "export": check[:160],
            "decoder writes": generated.strip().splitlines()[-1][:80], "BART writes": written.strip().splitlines()[-1][:80]}


def check_gpu_checkpoint_on_cpu(smoke: Smoke) -> dict:
    run = cut_back(smoke.work / "recipe", json.loads((smoke.work / "recipe" / "summary.json").read_text())["steps"],
                   smoke.work / "recipe-on-cpu")
    steps = summary_of(run)["steps"]
    smoke.cli("pretrain", "--corpus", smoke.work / "corpus", "--out", run, "--resume",
              *[x for s in ("train.device=cpu", "train.progress=false", f"data.seq_len={smoke.size['seq']}",
                            f"train.batch_size={smoke.size['batch']}", f"train.budget={steps + 5}",
                            "train.eval_every=0") for x in ("--set", s)])
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    return {"written on": smoke.device, "continued on": "cpu", "steps": f"{steps} -> {summary_of(run)['steps']}",
            "last loss": round(rows[-1]["loss"], 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_smoke_out", help="where results go (default $OUT)")
    ap.add_argument("--keep", help="keep the runs and corpus in this directory (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"FAIL env: --device {args.device} but torch {torch.__version__} sees no CUDA GPU; "
              "use --device cpu for the CPU run", flush=True)
        return 1
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, before its first handle
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gpu_smoke_"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PRETRAINLAB_CACHE", str(work / "cache"))  # no user cache (nor platformdirs) needed
    smoke = Smoke(args.device, Path(args.out), work)
    t0 = time.perf_counter()
    smoke.say(f"gpu_smoke --device {args.device}: work in {work}, results to {args.out}")
    try:
        smoke.check("env", lambda: check_env(smoke))
        if smoke.check("prepare", lambda: check_prepare(smoke)) is not None:
            recipe = smoke.check("recipe", lambda: check_recipe(smoke))
            smoke.check("resume", lambda: check_resume(smoke))
            smoke.check("families", lambda: check_families(smoke))
            if recipe is not None:
                smoke.check("downstream", lambda: check_downstream(smoke))
                smoke.check("gpu-on-cpu", lambda: check_gpu_checkpoint_on_cpu(smoke))
        smoke.check("throughput", lambda: check_throughput(smoke))
    finally:
        smoke.say(f"total {time.perf_counter() - t0:.0f}s")
        status = smoke.finish()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
