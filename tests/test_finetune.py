"""Fine-tuning with the one loop: it learns, it is reproducible, it saves a model that predict/evaluate read."""

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from pretrainlab.baselines import majority_baseline, tfidf_baseline
from pretrainlab.checkpoint import save_checkpoint
from pretrainlab.cli import main
from pretrainlab.config import ConfigError, load_config, save_config
from pretrainlab.data.encoding import collate, encode
from pretrainlab.data.tasks import load_task
from pretrainlab.errors import TaskError
from pretrainlab.evaluate import evaluate, predict
from pretrainlab.finetune import finetune, finetune_random_init
from pretrainlab.runs import build_pretrain_model, load_classifier
from pretrainlab.tokenizer import save_tokenizer, special_ids, train_tokenizer

from conftest import FINETUNE, TINY, TRANSFORMER

WORDS = "the a film movie story actor plot scene was is very quite rather good bad awful dull fun long short".split()
SETTINGS = TINY + TRANSFORMER + FINETUNE


pytestmark = pytest.mark.usefixtures("one_thread")


def cfg(*extra):
    return load_config(None, SETTINGS + list(extra))


def make_run(path, *settings):
    """A pre-training run directory as `pretrain` writes it: config, tokenizer, one checkpoint."""
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS + ["great"]) for _ in range(8)) for _ in range(300)]
    tok = train_tokenizer(texts, vocab_size=100)
    c = cfg(*settings)
    path.mkdir(parents=True)
    save_config(c, path / "config.yaml")
    save_tokenizer(tok, path / "tokenizer.json")
    torch.manual_seed(0)
    save_checkpoint(path, build_pretrain_model(c, tok.get_vocab_size(), special_ids(tok)), None, None, {"step": 1})
    return path


def great_rows(n, seed=1):
    """(text, label): label 1 exactly when the word 'great' appears; each text unique."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(6)]
        if i % 2:
            words[rng.randrange(6)] = "great"
        rows.append((" ".join(words) + f" {'x' * (1 + i % 7)}{i}", i % 2))
    return rows


def great_csv(path, n=160):
    lines = ["text,label"] + [f"{t},{'pos' if y else 'neg'}" for t, y in great_rows(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("ft") / "run")


@pytest.fixture(scope="module")
def task_file(tmp_path_factory):
    return great_csv(tmp_path_factory.mktemp("task") / "great.csv")


def test_finetuning_learns_a_separable_task_even_from_random_init(run, task_file):
    result = finetune_random_init(run, task_file, cfg("finetune.epochs=10", "finetune.patience=0"), seeds=(0,))
    assert result.init == "random"
    assert result.accuracy.mean > 0.9, result.seeds[0].history
    assert result.test.per_class["pos"]["recall"] > 0.8 and result.test.per_class["neg"]["recall"] > 0.8


def test_same_seed_same_result(run, task_file, tmp_path):
    a = finetune(run, task_file, cfg("finetune.epochs=2"), out_dir=tmp_path / "a", seeds=(0,))
    b = finetune(run, task_file, cfg("finetune.epochs=2"), out_dir=tmp_path / "b", seeds=(0,))
    assert [h.get("loss") for h in a.seeds[0].history] == [h.get("loss") for h in b.seeds[0].history]
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    c = finetune(run, task_file, cfg("finetune.epochs=2"), seeds=(1,))
    assert [h.get("loss") for h in c.seeds[0].history] != [h.get("loss") for h in a.seeds[0].history]


def test_several_seeds_summary_reports_and_saved_model(run, task_file, tmp_path):
    out = tmp_path / "ft"
    r = finetune(run, task_file, cfg("finetune.epochs=3"), out_dir=out, seeds=(0, 1, 2))
    accs = [s.accuracy for s in r.seeds]
    assert r.accuracy.values == accs
    assert r.accuracy.mean == pytest.approx(sum(accs) / 3)
    assert r.accuracy.median == sorted(accs)[1]
    assert r.accuracy.std == pytest.approx(torch.tensor(accs).std().item())
    # the best-validation seed's model is saved, and scores on test what the result says
    best = max(r.seeds, key=lambda s: (s.val_accuracy, -s.val_loss))
    assert r.best_seed == best.seed
    for f in ("results.json", "results.md", "per_class.md", "confusion.png", "model.safetensors", "config.yaml",
              "tokenizer.json", "classifier.json"):
        assert (out / f).is_file(), f
    info = json.loads((out / "classifier.json").read_text())
    assert info["id2label"] == {"0": "neg", "1": "pos"} and info["label2id"] == {"neg": 0, "pos": 1}
    saved = json.loads((out / "results.json").read_text())
    assert saved["accuracy"]["values"] == accs and saved["best_seed"] == r.best_seed
    metrics = evaluate(out, task_file)
    assert metrics.accuracy == pytest.approx(r.test.accuracy) and metrics.confusion == r.test.confusion
    assert (out / "eval-great" / "metrics.json").is_file() and (out / "eval-great" / "confusion.png").is_file()
    texts = ["the film was great", "the film was dull"]
    preds = predict(out, texts)
    assert preds == predict(load_classifier(out), texts)
    assert all(label in ("neg", "pos") and 0.5 <= p <= 1.0 for label, p in preds)


def test_a_killed_fine_tuning_resumes_its_seeds_to_the_same_model(run, task_file, tmp_path, monkeypatch, capsys):
    from pretrainlab.errors import Interrupted
    from pretrainlab.seeds import EpochBatches

    c = cfg("finetune.epochs=2", "finetune.dropout=0.1", "train.deterministic=true", "train.checkpoint_every=5")
    straight = finetune(run, task_file, c, out_dir=tmp_path / "straight", seeds=(0, 1), quiet=True)
    steps = straight.seeds[0].steps
    real, calls = EpochBatches.__call__, []

    def dies_in_the_second_seed(self):
        calls.append(1)
        if len(calls) == steps + 7:
            raise KeyboardInterrupt
        return real(self)

    killed = tmp_path / "killed"
    monkeypatch.setattr(EpochBatches, "__call__", dies_in_the_second_seed)
    with pytest.raises(Interrupted, match="continue with --resume"):
        finetune(run, task_file, c, out_dir=killed, seeds=(0, 1), quiet=True)
    monkeypatch.setattr(EpochBatches, "__call__", real)
    assert (killed / "seeds" / "seed-0" / "result.json").is_file()  # the first seed finished
    assert list((killed / "seeds" / "seed-1" / "checkpoints").glob("step_*"))  # the second has its checkpoint
    with pytest.raises(ConfigError, match="finetune.lr: checkpoint 0.005 vs now 0.001"):
        finetune(run, task_file, cfg("finetune.epochs=2", "finetune.dropout=0.1", "train.deterministic=true",
                                     "train.checkpoint_every=5", "finetune.lr=1e-3"), out_dir=killed, seeds=(0, 1),
                 quiet=True, resume=True)
    calls.clear()
    monkeypatch.setattr(EpochBatches, "__call__", dies_in_the_second_seed)  # counts the batches the resumed run draws
    resumed = finetune(run, task_file, c, out_dir=killed, seeds=(0, 1), quiet=True, resume=True)
    monkeypatch.setattr(EpochBatches, "__call__", real)
    assert len(calls) == straight.seeds[1].steps - 6  # seed 0 read back; seed 1 continued after its 6 steps
    assert [s.accuracy for s in resumed.seeds] == [s.accuracy for s in straight.seeds]
    assert [s.val_loss for s in resumed.seeds] == [s.val_loss for s in straight.seeds]
    a, b = load_file(str(tmp_path / "straight" / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (killed / "seeds").exists() and not (killed / "finetune-settings.json").exists()  # as before: the model
    # the command line: --resume, and without it a fresh start that says so
    assert main(["finetune", str(run), "--task", str(task_file), "--out", str(tmp_path / "cli"), "--seeds", "0",
                 *[a for s in SETTINGS + ["finetune.epochs=1"] for a in ("--set", s) if not s.startswith("model.")],
                 "--resume"]) == 0
    assert "written to" in capsys.readouterr().out


def test_split_sizes_a_small_test_split_and_intervals_are_reported(run, task_file, tmp_path, capsys):
    from pretrainlab.metrics import bootstrap_interval

    out = tmp_path / "ft"
    r = finetune(run, task_file, cfg("finetune.epochs=1"), out_dir=out, seeds=(0, 1))
    err = capsys.readouterr().err
    assert "great: 128 training / 16 validation / 16 test examples (stratified split)" in err
    width = 100 * bootstrap_interval([0, 1] * 8).width
    assert f"warning: the test split has only 16 examples: an accuracy's 95% interval is up to {width:.0f} points" in err
    assert r.splits == {"train": 128, "validation": 16, "test": 16}
    for s in r.seeds:
        assert s.accuracy_ci.n == 16 and s.accuracy_ci.low <= s.accuracy <= s.accuracy_ci.high
    assert r.accuracy_ci.n == 16 and r.accuracy_ci.low <= r.accuracy.mean <= r.accuracy_ci.high
    saved = json.loads((out / "results.json").read_text())
    assert saved["accuracy_ci"]["low"] == r.accuracy_ci.low and saved["test"]["accuracy_ci"]["n"] == 16
    assert f"95% interval {r.accuracy_ci} over the test examples" in (out / "results.md").read_text()
    evaluate(out, task_file)
    assert "great: scoring 16 test examples" in capsys.readouterr().err
    finetune(run, task_file, cfg("finetune.epochs=1"), seeds=(0,), quiet=True)
    err = capsys.readouterr().err
    assert "test examples" not in err and "the test split has only" not in err


def test_pairs_get_segment_ids_and_integer_labels_are_kept(run, tmp_path):
    tok = load_classifier_tokenizer(run)
    enc = encode(tok, ["the film"], ["was good"], max_len=16)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    a, b = tok.encode("the film", add_special_tokens=False).ids, tok.encode("was good", add_special_tokens=False).ids
    assert enc.ids[0] == [cls, *a, sep, *b, sep]
    assert enc.segments[0] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    cut = encode(tok, [" ".join(["film"] * 20)], [" ".join(["plot"] * 20)], max_len=10)
    n_b = cut.segments[0].count(1) - 1  # B's tokens, without its [SEP]
    assert len(cut.ids[0]) == 10 and abs((7 - n_b) - n_b) <= 1  # longest-first: both halves keep a share
    batch = collate(enc, [0], pad_id=0, segments=True)
    assert batch["segment_ids"].tolist() == [enc.segments[0]]
    assert "segment_ids" not in collate(enc, [0], pad_id=0, segments=False)  # modern style: none, as ModernBERT

    f = tmp_path / "pairs.jsonl"
    f.write_text("\n".join(json.dumps({"q": t.rsplit(" ", 1)[0], "d": t.rsplit(" ", 1)[1], "y": 7 + y})
                           for t, y in great_rows(80)) + "\n", encoding="utf-8")
    c = cfg("finetune.epochs=1", "finetune.text_column=q", "finetune.text_pair_column=d", "finetune.label_column=y")
    r = finetune(run, f, c, out_dir=tmp_path / "m", seeds=(0,))
    assert r.label_names == [7, 8]
    model = load_classifier(tmp_path / "m")
    assert model.label_names == [7, 8] and model.meta["pairs"] and model.meta["segments"]
    labels = [label for label, _ in predict(model, ["the film", "a plot"], pairs=["x1", "x2"])]
    assert all(label in (7, 8) for label in labels)
    with pytest.raises(TaskError, match="fine-tuned on text pairs"):
        predict(model, ["the film"])


def load_classifier_tokenizer(run):
    from pretrainlab.tokenizer import load_tokenizer

    return load_tokenizer(run / "tokenizer.json")


def test_baselines_on_the_same_splits(task_file):
    task = load_task(task_file)
    assert majority_baseline(task).accuracy == pytest.approx(0.5)
    tfidf = tfidf_baseline(task)
    assert tfidf.accuracy > 0.7 and tfidf.n == len(task.test)  # 128 training examples, mostly noise words


def test_cli_finetune_predict_evaluate(run, task_file, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["finetune", str(run), "--task", str(task_file), "--out", str(out), "--seeds", "0",
                 *sum((["--set", s] for s in ["train.precision=fp32", "train.progress=false"] + FINETUNE + ["finetune.epochs=1"]), [])]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["predict", str(out), "a great film", "a dull film"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].split("\t")[0] in ("neg", "pos")
    assert main(["evaluate", str(out)]) == 0
    assert "macro-F1" in capsys.readouterr().out
    assert main(["evaluate", str(run)]) == 2  # a pre-training run is not a fine-tuned model
    assert "not a fine-tuned model" in capsys.readouterr().err


def test_finetune_dropout_rebuilds_the_backbone_with_the_same_weights(run):
    """finetune.dropout replaces the run's dropout while fine-tuning; the pretrained weights stay."""
    from pretrainlab.finetune import _fresh_backbone
    from pretrainlab.runs import load_pretrained

    pre = load_pretrained(run)
    kept = _fresh_backbone(pre, random_init=False, dropout=0.3)
    ref = pre.backbone.state_dict()
    assert kept.state_dict().keys() == ref.keys() and all(torch.equal(v, ref[k]) for k, v in kept.state_dict().items())
    ps = {round(m.p, 3) for m in kept.modules() if hasattr(m, "p") and isinstance(m.p, float)}
    ps |= {round(m.dropout, 3) for m in kept.modules() if isinstance(getattr(m, "dropout", None), float)}
    assert ps == {0.3}, ps
    torch.manual_seed(5)
    a = _fresh_backbone(pre, random_init=True, dropout=0.3).state_dict()
    torch.manual_seed(5)
    b = _fresh_backbone(pre, random_init=True).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the dropout does not change the random init
    with pytest.raises(Exception, match="finetune.dropout"):
        cfg("finetune.dropout=1.5")


def test_predict_file_equals_predict_on_the_same_texts(run, task_file, tmp_path, capsys):
    """Finding 8: predict --file IN.csv|IN.jsonl --out OUT.csv streams rows; its labels equal predict's."""
    import csv

    model = tmp_path / "m"
    finetune(run, task_file, cfg("finetune.epochs=1"), out_dir=model, seeds=(0,))
    texts = ["a great film", "a dull film", 'said "great", twice', "great great", "nothing at all"]
    src = tmp_path / "in.csv"
    with src.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["id", "review"]] + [[i, t] for i, t in enumerate(texts)])
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"review": t}) + "\n" for t in texts), encoding="utf-8")
    expected = predict(model, texts)
    for path in (src, jsonl):
        out = tmp_path / f"{path.suffix[1:]}-out.csv"
        assert main(["predict", str(model), "--file", str(path), "--text-column", "review", "--out", str(out)]) == 0
        assert "labelled 5 rows" in capsys.readouterr().out
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
        assert [r["review"] for r in rows] == texts
        assert [(r["label"], float(r[f"p_{r['label']}"])) for r in rows] == [
            (label, pytest.approx(p, abs=1e-5)) for label, p in expected]
        assert all(sum(float(r[k]) for k in ("p_neg", "p_pos")) == pytest.approx(1, abs=1e-4) for r in rows)

    from pretrainlab.evaluate import predict_file

    assert predict_file(model, src, tmp_path / "small.csv", "review", batch_size=2) == 5  # batches of 2: same file
    assert (tmp_path / "small.csv").read_text() == (tmp_path / "csv-out.csv").read_text()

    assert main(["predict", str(model), "--file", str(src), "--out", str(tmp_path / "x.csv")]) == 2
    assert "line 2 has no column 'text'" in capsys.readouterr().err and "--text-column" in capsys.readouterr().err + "--text-column"
    assert main(["predict", str(model), "--file", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "in.txt").write_text("a\n")
    assert main(["predict", str(model), "--file", str(tmp_path / "in.txt"), "--out", str(tmp_path / "x.csv")]) == 2
    assert ".csv (with a header line) or .jsonl" in capsys.readouterr().err
    jsonl.write_text('{"review": "ok"}\nnot json\n', encoding="utf-8")
    assert main(["predict", str(model), "--file", str(jsonl), "--text-column", "review", "--out", str(tmp_path / "x.csv")]) == 2
    assert "line 2 is not valid JSON" in capsys.readouterr().err
    assert main(["predict", str(model), "--file", str(src)]) == 2
    assert "needs --out" in capsys.readouterr().err


def test_early_stopping_counts_patience_only_from_min_steps():
    """Evaluations on a plateau before finetune.min_steps do not stop the run; after it they do."""
    from pretrainlab.seeds import EarlyStopping
    from pretrainlab.metrics import Metrics

    model = torch.nn.Linear(1, 1)
    flat = Metrics(accuracy=0.5, macro_f1=0.5, n=10)
    best = EarlyStopping(patience=2, min_steps=100)
    for step in (10, 20, 30, 40, 50, 60, 70, 80, 90):  # nine evaluations without improvement, all early
        best.update(flat, 1.0, step, model)
    assert not best.should_stop()
    best.update(flat, 1.0, 100, model)
    assert not best.should_stop()
    best.update(flat, 1.0, 110, model)
    assert best.should_stop() and best.step == 10
    without_floor = EarlyStopping(patience=2)
    for step in (10, 20, 30):
        without_floor.update(flat, 1.0, step, model)
    assert without_floor.should_stop()


# --------------------------------------------------------------------------- inference: batching, precision


@pytest.fixture(scope="module")
def trained(run, task_file, tmp_path_factory):
    """A classifier fine-tuned until it has learned the 'great' task (confident labels, not coin flips)."""
    out = tmp_path_factory.mktemp("trained") / "m"
    finetune(run, task_file, cfg("finetune.epochs=10", "finetune.patience=0"), out_dir=out, seeds=(0,))
    return out


def varied_texts(n, seed=3):
    """Texts of 1 to 20 words: sorted batches pad them differently than one at a time does."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS + ["great"]) for _ in range(rng.randint(1, 20))) for _ in range(n)]


def test_sorted_batched_prediction_equals_one_by_one_in_fp32(trained):
    from pretrainlab.evaluate import predict_logits

    ftm = load_classifier(trained)
    texts = varied_texts(50)
    enc = encode(ftm.tokenizer, texts, None, ftm.meta["max_len"])
    assert len({len(ids) for ids in enc.ids}) > 5  # lengths vary: the length sort reorders the examples
    batched = predict_logits(ftm.model, enc, ftm.special.pad, ftm.meta["segments"], torch.device("cpu"), None,
                             batch_size=8)
    with torch.no_grad():  # unsorted, unbatched, the model called directly
        alone = torch.cat([ftm.model(b["input_ids"], b["mask"], b.get("segment_ids")).logits
                           for b in (collate(enc, [i], ftm.special.pad, ftm.meta["segments"]) for i in range(len(enc)))])
    torch.testing.assert_close(batched, alone, rtol=0, atol=1e-5)
    probs = alone.softmax(-1)
    assert predict(trained, texts, batch_size=8, precision="fp32") == [
        (ftm.label_names[int(k)], pytest.approx(float(p), abs=1e-6)) for p, k in zip(*probs.max(-1))]
    assert predict(trained, texts) == predict(trained, texts, precision="fp32")  # the tests' models: fp32 (TINY)


def test_bf16_inference_agrees_with_fp32_on_the_labels(trained, tmp_path, capsys):
    """Issue #19: bf16 inference (finetune.inference_precision=auto where the CPU has it) keeps >= 99% of labels."""
    from pretrainlab.evaluate import predict_logits
    from pretrainlab.loop import pick_dtype

    ftm = load_classifier(trained)
    rows = great_rows(400, seed=7)  # unseen texts of the task it learned
    enc = encode(ftm.tokenizer, [t for t, _ in rows], None, ftm.meta["max_len"])
    args = (ftm.model, enc, ftm.special.pad, ftm.meta["segments"], torch.device("cpu"))
    fp32, bf16 = predict_logits(*args, None), predict_logits(*args, torch.bfloat16)
    assert (fp32.argmax(-1) == torch.tensor([y for _, y in rows])).float().mean() > 0.9  # it has learned the task
    assert not torch.equal(fp32, bf16)  # bf16 did run
    assert (fp32.argmax(-1) == bf16.argmax(-1)).float().mean() >= 0.99

    texts = [t for t, _ in rows[:20]]
    if pick_dtype("auto", torch.device("cpu")) is None:
        with pytest.raises(Exception, match="no fast bf16"):
            predict(trained, texts, precision="bf16")
        return
    assert [label for label, _ in predict(trained, texts, precision="bf16")] == [
        label for label, _ in predict(trained, texts, precision="fp32")]
    assert main(["predict", str(trained), *texts[:3], "--precision", "bf16"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.strip().splitlines()] == [
        label for label, _ in predict(trained, texts[:3], precision="fp32")]
    with pytest.raises(Exception, match="finetune.inference_precision"):
        cfg("finetune.inference_precision=fp16")
