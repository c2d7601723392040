"""`pretrainlab pipeline`: a corpus and a few labels in, the model best on validation out as a fine-tuned directory
that predict / evaluate / export take, with a curve of what each stage paid; the test split never chooses."""

import json
import random

import pytest

from pretrainlab.cli import main
from pretrainlab.config import ConfigError
from pretrainlab.curve import DETAILS_FILE, CurvePoint, read_csv, read_details
from pretrainlab.evaluate import evaluate, predict
from pretrainlab.pipeline import choose
from pretrainlab.runs import load_classifier

from conftest import FAST, TINY, TRANSFORMER, review_docs
from test_semisup import FAST as CURVE_FAST
from test_semisup import rows, write_task

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = TINY + TRANSFORMER + FAST + CURVE_FAST + [
    "data.vocab_size=120", "data.min_chars=5", "finetune.max_len=16", "finetune.batch_size=16", "finetune.lr=0.005"]


def sets(*extra):
    return [a for s in SETTINGS + list(extra) for a in ("--set", s)]


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    (root / "notes.txt").write_text(review_docs(random.Random(0), 120), encoding="utf-8")
    task = write_task(root / "great.csv", rows(150, seed=1))
    out = root / "out"
    args = ["pipeline", "--corpus", str(root / "notes.txt"), "--task", str(task), "--out", str(out), "--budget", "3",
            "--seeds", "0", "1", "--pool-texts", "60", *sets()]
    assert main(args) == 0
    return root, out, task, args


def test_the_model_chosen_on_validation_is_a_directory_every_command_takes(piped, tmp_path, capsys):
    root, out, task, args = piped
    result = json.loads((out / "pipeline.json").read_text())
    details = read_details(out / "curve" / DETAILS_FILE)
    points = read_csv(out / "curve" / "curve.csv")
    rows_seen = {m for (_, m, _) in details}
    assert {"pretrained", "pretrained+self-train", "pretrained->student", "pretrained+self-train->student",
            "random-init", "tfidf"} <= rows_seen
    # the choice: the best mean validation accuracy among the models (baselines excluded), then its best seed
    val = {}
    for (_, m, s), d in details.items():
        if m not in ("tfidf", "majority"):
            val.setdefault(m, []).append(d["val_accuracy"])
    best = max(val, key=lambda m: (sum(val[m]) / len(val[m]), -details[(90, m, 0)]["parameters"]))
    assert result["chosen"]["model"] == best
    seed = result["chosen"]["seed"]
    ftm = load_classifier(out / "model")
    assert ftm.meta["curve"] == {"labels": 90, "model": best, "seed": seed}
    # evaluate scores the saved model on the task's test split exactly as the curve did
    row = next(p for p in points if (p.labels, p.model, p.seed) == (90, best, seed))
    assert evaluate(out / "model").accuracy == pytest.approx(row.accuracy)
    assert [label for label, _ in predict(out / "model", ["a great film", "a dull film"])][0] in ("neg", "pos")
    from pretrainlab.export import export

    assert (export(out / "model", tmp_path / "hf") / "config.json").is_file()
    md = (out / "pipeline.md").read_text()
    assert f"Chosen on validation: **{best}**" in md and "| pre-training | pretrained | random-init |" in md
    assert "| self-training | pretrained+self-train | pretrained |" in md and "| distillation |" in md
    assert "| distilling the self-trained model | pretrained+self-train->student | pretrained+self-train |" in md
    # the same command again: every step is done, nothing trains again
    before = (out / "curve" / "curve.csv").read_text()
    capsys.readouterr()
    assert main(args) == 0
    assert (out / "curve" / "curve.csv").read_text() == before and "up to date" in capsys.readouterr().err


def test_the_choice_reads_validation_only_and_keeps_to_the_size_cap():
    def d(m, s, val, params, loss=0.5):
        return (90, m, s), {"labels": 90, "model": m, "seed": s, "val_accuracy": val, "val_loss": loss,
                            "parameters": params, "texts_per_s": 1.0}

    details = dict([d("pretrained", 0, 0.7, 1000), d("pretrained", 1, 0.8, 1000),
                    d("pretrained->student", 0, 0.75, 5000), d("pretrained->student", 1, 0.75, 5000, loss=0.1),
                    d("random-init", 0, 0.6, 1000), d("random-init", 1, 0.6, 1000)])
    details[(90, "tfidf", 0)] = {"val_accuracy": 0.99}  # a baseline is never chosen
    points = [CurvePoint(90, m, s, 0.99 if m == "random-init" else 0.1, 0.1) for (_, m, s) in details]
    assert (choose(points, details).model, choose(points, details).seed) == ("pretrained", 1)  # tie 0.75: fewer params
    assert choose(points, details, max_parameters=1000).model == "pretrained"
    details[(90, "pretrained", 0)]["val_accuracy"] = 0.6
    assert choose(points, details).model == "pretrained->student" and choose(points, details).seed == 1  # lower loss
    with pytest.raises(ConfigError, match="--max-parameters 10: no model is that small"):
        choose(points, details, max_parameters=10)


def test_a_corpus_holding_a_test_text_is_refused_before_any_work(tmp_path, capsys):
    table = rows(150, seed=1)
    task = write_task(tmp_path / "great.csv", table)
    test_text = next(t for t, _, s in table if s == "test")
    (tmp_path / "notes.txt").write_text(review_docs(random.Random(0), 20) + "\n\n" + test_text + "\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["pipeline", "--corpus", str(tmp_path / "notes.txt"), "--task", str(task), "--out", str(out),
                 *sets()]) == 2
    assert "notes.txt: it holds 1 of great's 30 test texts" in capsys.readouterr().err
    assert not out.exists()
    assert main(["pipeline", "--corpus", str(tmp_path / "notes.txt"), "--task", str(task), "--out", str(out),
                 "--student", "preset:huge", *sets()]) == 2
    assert "--student preset:huge" in capsys.readouterr().err and not out.exists()


def test_the_checkpoint_fine_tunes_at_a_trained_models_rate(tmp_path, monkeypatch, capsys):
    """--reference: the imported model fine-tunes at --reference-lr (1e-4 by default), the run at finetune.lr."""
    from pretrainlab import pipeline as P
    from pretrainlab.config import REFERENCE_LR

    from test_finetune import make_run

    seen = {}

    def captured(corpus, task, out, cfg, **kw):
        seen.update(run=cfg.finetune.lr, reference=kw["reference_cfg"].finetune.lr)
        raise ConfigError("captured")

    monkeypatch.setattr(P, "pipeline", captured)
    reference = make_run(tmp_path / "imported")
    base = ["pipeline", "--corpus", "notes.txt", "--task", "great.csv", "--out", str(tmp_path / "out"),
            "--reference", str(reference), *sets()]
    for extra, rate in (([], REFERENCE_LR), (["--reference-lr", "3e-5"], 3e-5)):
        assert main(base + extra) == 2 and "captured" in capsys.readouterr().err
        assert seen == {"run": 0.005, "reference": rate}  # the run's from SETTINGS' finetune.lr
    assert REFERENCE_LR == 1e-4  # what docs/usage.md says
