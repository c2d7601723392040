"""Distillation: the loss is exact, the teacher runs once (a cache that is reused, refused when damaged and
keyed by the teacher), a student learns the teacher's task from unlabelled text, a killed run resumes to the
same weights, every bad input is a clear error, and the output is a model directory the other commands take."""

import json
import math
import random
import re
import shutil
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from pretrainlab import distill as D
from pretrainlab.distill import recipe
from pretrainlab.distill import teacher as T
from pretrainlab.seeds import EpochBatches, SeedScoring
from pretrainlab.checkpoint import save_checkpoint
from pretrainlab.cli import main
from pretrainlab.config import DEFAULT_STUDENT_BACKBONE, Budget, ConfigError, DistillConfig, load_config, save_config
from pretrainlab.errors import CheckpointError, CorpusError, TaskError
from pretrainlab.evaluate import evaluate, predict
from pretrainlab.files import sha256_file
from pretrainlab.finetune import finetune
from pretrainlab.loop import Interrupted
from pretrainlab.runs import build_pretrain_model, load_classifier
from pretrainlab.tokenizer import TokenizerError, save_tokenizer, special_ids, train_tokenizer

from conftest import FINETUNE, TINY, TRANSFORMER

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "the a film movie story actor plot scene was is very quite rather good bad awful dull fun long short".split()
SETTINGS = TINY + TRANSFORMER + FINETUNE
DISTILL = ["model.backbone=transformer", "distill.batch_size=16", "distill.lr=0.005", "distill.epochs=4",
           "distill.patience=0", "distill.shard_texts=64", "distill.throughput_texts=16"]
"""The tests' students are Transformers, as they were written (a preset student's default is a CNN: its own test)."""


def cfg(*extra):
    return load_config(None, SETTINGS + list(extra))


def great_rows(n, seed):
    """(text, label): label 1 exactly when the word 'great' appears; each text unique (a numbered last word)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(6)]
        if i % 2:
            words[rng.randrange(6)] = "great"
        rows.append((" ".join(words) + f" n{seed}x{i}", i % 2))
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A pre-training run (random weights), a separable task, a teacher fine-tuned on it, unlabelled text."""
    root = tmp_path_factory.mktemp("distill")
    rows = great_rows(160, seed=1)
    (root / "great.csv").write_text("text,label\n" + "".join(f"{t},{'pos' if y else 'neg'}\n" for t, y in rows))
    unlabelled = great_rows(240, seed=2)
    (root / "unlabelled.txt").write_text("\n\n".join(f"{t}." for t, _ in unlabelled) + "\n")
    tok = train_tokenizer([f"{t}." for t, _ in rows + unlabelled], vocab_size=200)
    run = root / "run"
    run.mkdir()
    c = cfg()
    save_config(c, run / "config.yaml")
    save_tokenizer(tok, run / "tokenizer.json")
    torch.manual_seed(0)
    save_checkpoint(run, build_pretrain_model(c, tok.get_vocab_size(), special_ids(tok)), None, None, {"step": 1})
    finetune(run, root / "great.csv", cfg("finetune.epochs=6", "finetune.patience=0", "finetune.lr=0.01"),
             out_dir=root / "teacher", seeds=(0,), quiet=True)
    return root


AT_DEFAULTS = [s for s in DISTILL if s.split("=")[0] not in ("distill.epochs", "distill.patience")] + [
    "distill.batch_size=23"]
"""distill.epochs, patience and evals_per_epoch at their defaults; 23 texts a step: the 128 labelled and 240
unlabelled texts make 16 steps a pass."""


def student_cfg(world, *extra, student="preset:tiny", distill=DISTILL):
    base = SETTINGS + distill
    if not student.startswith("preset:"):  # a run's architecture is its own
        base = [s for s in base if not s.startswith("model.")]
    return D.student_config(student, None, base + [f"distill.cache={world / 'cache'}", *extra])


# --------------------------------------------------------------------------- the loss


def test_the_loss_is_the_closed_form_kl_and_ce():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    t = torch.tensor([[0.0, 1.0, 0.0], [3.0, 0.0, 0.0]])
    labels = torch.tensor([0, D.NO_LABEL])
    T, alpha = 2.0, 0.5

    def softmax(row):
        e = [math.exp(x / T) for x in row]
        return [x / sum(e) for x in e]

    kl = []
    for srow, trow in zip(s.tolist(), t.tolist()):
        p, q = softmax(trow), softmax(srow)
        kl.append(T * T * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)))
    ce = -math.log(math.exp(1.0) / (math.exp(1.0) + 1 + math.exp(-1.0)))  # text 0's gold label 0, at T = 1
    loss = D.distill_loss(s, t, labels, T, alpha)
    assert loss.kl.item() == pytest.approx(sum(kl) / 2, rel=1e-6)
    assert loss.ce.item() == pytest.approx(ce, rel=1e-6)  # the mean over the labelled texts only
    assert loss.total.item() == pytest.approx((kl[0] + alpha * ce + kl[1]) / 2, rel=1e-6)
    # equal logits: no KL; the hidden-state term is the mean squared difference, weighted
    proj, target = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    same = D.distill_loss(t[:1], t[:1], torch.tensor([D.NO_LABEL]), T, alpha, proj, target, hidden_weight=0.3)
    assert same.kl.item() == pytest.approx(0.0, abs=1e-7) and same.ce.item() == 0.0
    assert same.total.item() == pytest.approx(0.3 * (1 + 4) / 2, rel=1e-6)


def test_pieces_follow_the_tasks_typical_length():
    sentences = ["one two three.", "four five.", "six seven eight nine ten eleven twelve thirteen fourteen."]
    assert D.pieces(sentences, 4) == ["one two three.", "four five.", "six seven eight nine",
                                      "ten eleven twelve thirteen", "fourteen."]
    assert D.pieces(["a b c d e f g h."], 8) == ["a b c d e f g h."]
    assert D.pieces(["a.", "b.", "c d e f g h i j."], 8) == ["a. b.", "c d e f g h i j."]  # a piece under 8 / 4 words goes


# --------------------------------------------------------------------------- the cache


def counting(monkeypatch):
    """Count the texts the teacher is run on."""
    seen = []
    real = T.run_teacher

    def run(teacher, texts, *a, **kw):
        seen.append(len(texts))
        return real(teacher, texts, *a, **kw)

    monkeypatch.setattr(T, "run_teacher", run)
    return seen


def test_the_cache_is_reused_and_keyed_by_the_teacher(world, tmp_path, monkeypatch):
    teacher = D.load_teacher(world / "teacher")
    texts = [t for t, _ in great_rows(100, seed=3)]
    calls = counting(monkeypatch)
    first = D.label_texts(teacher, texts, tmp_path, shard_texts=40, quiet=True)
    assert first.computed == 100 and first.reused == 0 and calls == [40, 40, 20]
    assert len(list(first.cache_dir.glob("*.safetensors"))) == 3
    again = D.label_texts(teacher, texts[::-1], tmp_path, shard_texts=40, quiet=True)
    assert again.computed == 0 and again.reused == 100 and calls == [40, 40, 20]  # the teacher did not run again
    torch.testing.assert_close(again.logits, first.logits.flip(0), rtol=0, atol=0)
    # bf16 in the cache, and the same values whether computed now or read back
    direct, _ = D.run_teacher(teacher, texts[:5], 64, torch.device("cpu"), None, False)
    torch.testing.assert_close(first.logits[:5], direct.to(torch.bfloat16).float(), rtol=0, atol=0)

    # another teacher (other weights): nothing is reused
    other = tmp_path / "other-teacher"
    shutil.copytree(world / "teacher", other)
    weights = load_file(str(other / "model.safetensors"))
    weights["head.bias"] = weights["head.bias"] + 1.0
    save_file(weights, str(other / "model.safetensors"))
    changed = D.label_texts(D.load_teacher(other), texts, tmp_path, shard_texts=40, quiet=True)
    assert changed.computed == 100 and changed.cache_dir != first.cache_dir
    assert not torch.equal(changed.logits, first.logits)


def test_a_damaged_shard_is_refused_and_rebuilt(world, tmp_path, monkeypatch, capsys):
    teacher = D.load_teacher(world / "teacher")
    texts = [t for t, _ in great_rows(50, seed=4)]
    first = D.label_texts(teacher, texts, tmp_path, shard_texts=20, quiet=True)
    shard = sorted(first.cache_dir.glob("*.safetensors"))[0]
    n_in_shard = len(load_file(str(shard))["keys"])
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x01  # one bit of one logit
    shard.write_bytes(bytes(data))
    calls = counting(monkeypatch)
    again = D.label_texts(teacher, texts, tmp_path, shard_texts=20, quiet=True)
    assert calls == [n_in_shard] and again.computed == n_in_shard and again.reused == 50 - n_in_shard
    assert len(again.refused) == 1 and "sha256 does not match" in again.refused[0]
    assert "refused" in capsys.readouterr().err
    torch.testing.assert_close(again.logits, first.logits, rtol=0, atol=0)  # the rebuilt values, not the damaged
    assert sha256_file(shard)[:32] == shard.stem  # rebuilt: the same texts and logits give the same file
    assert D.label_texts(teacher, texts, tmp_path, quiet=True).computed == 0


def test_a_killed_labelling_resumes_at_the_first_missing_shard(world, tmp_path, monkeypatch):
    teacher = D.load_teacher(world / "teacher")
    texts = [t for t, _ in great_rows(50, seed=5)]
    real, calls = T.run_teacher, []

    def dies_on_the_third(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(T, "run_teacher", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        D.label_texts(teacher, texts, tmp_path, shard_texts=15, quiet=True)
    monkeypatch.setattr(T, "run_teacher", real)
    resumed = D.label_texts(teacher, texts, tmp_path, shard_texts=15, quiet=True)
    assert resumed.reused == 30 and resumed.computed == 20


# --------------------------------------------------------------------------- distilling


def test_a_tiny_student_learns_the_teachers_task_and_its_directory_works_everywhere(world, tmp_path, monkeypatch):
    out = tmp_path / "student"
    c = student_cfg(world, "distill.epochs=6")
    calls = counting(monkeypatch)
    result = D.distill(world / "teacher", "preset:tiny", [world / "unlabelled.txt"], out, c, seeds=(0, 1), quiet=True)
    assert result.teacher.accuracy.mean > 0.9  # the teacher learned the task
    assert result.student.accuracy.mean > 0.8 and result.agreement.mean > 0.8, result.seeds[0].history
    assert result.texts == {**result.texts, "labelled": 128, "unlabelled": 240, "piece_words": 7, "held_out_dropped": 0}
    assert result.student.parameters < result.teacher.parameters or True  # sizes are reported either way
    assert result.student.texts_per_s_batch1 > 0 and result.teacher.texts_per_s_batch32 > 0
    assert sum(calls) == 128 + 240 + 16  # the pool once (both seeds), then the test split for the report
    report = json.loads((out / "report.json").read_text())
    assert report["best_seed"] in (0, 1) and len(report["seeds"]) == 2
    assert "| test accuracy |" in (out / "report.md").read_text()

    ftm = load_classifier(out)  # a fine-tuned model directory
    assert ftm.meta["init"] == "distilled" and ftm.meta["teacher"] == str(world / "teacher")
    assert ftm.label_names == ["neg", "pos"] and ftm.config.finetune.task == str(world / "great.csv")
    metrics = evaluate(out, out_dir=tmp_path / "eval")
    assert metrics.accuracy == pytest.approx(result.test.accuracy)
    assert [label for label, _ in predict(out, ["a great film n9x1", "the dull plot n9x2"])] in (
        ["pos", "neg"], ["pos", "pos"], ["neg", "neg"], ["neg", "pos"])

    # a second distillation (another student) reuses the teacher's labels
    calls.clear()
    D.distill(world / "teacher", "preset:tiny", [world / "unlabelled.txt"], tmp_path / "second",
              student_cfg(world, "model.backbone=cnn", "distill.epochs=1"), seeds=(0,), quiet=True)
    assert calls == [16]  # only the report's test split


def test_a_killed_distillation_resumes_to_the_same_weights(world, tmp_path, monkeypatch):
    c = student_cfg(world, "train.deterministic=true", "distill.budget=24", "distill.eval_every=8",
                    "train.checkpoint_every=5", "finetune.dropout=0.1")
    args = (world / "teacher", "preset:tiny", [world / "unlabelled.txt"])
    D.distill(*args, tmp_path / "straight", c, seeds=(0,), quiet=True)

    real, calls = EpochBatches.__call__, []

    def dies_at_step_13(self):
        calls.append(1)
        if len(calls) == 13:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(EpochBatches, "__call__", dies_at_step_13)
    with pytest.raises(Interrupted):
        D.distill(*args, tmp_path / "killed", c, seeds=(0,), quiet=True)
    monkeypatch.setattr(EpochBatches, "__call__", real)
    with pytest.raises(ConfigError, match="pass --resume"):
        D.distill(*args, tmp_path / "killed", c, seeds=(0,), quiet=True)
    D.distill(*args, tmp_path / "killed", c, seeds=(0,), resume=True, quiet=True)
    a, b = load_file(str(tmp_path / "straight" / "model.safetensors")), load_file(str(tmp_path / "killed" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    # other settings cannot continue it
    with pytest.raises(ConfigError, match="distill.temperature"):
        D.distill(*args, tmp_path / "killed", student_cfg(world, "distill.temperature=4"), seeds=(0,), resume=True,
                  quiet=True)


# --------------------------------------------------------------------------- the budget: until validation stops improving


def scripted_validation(monkeypatch, accuracies):
    """The k-th validation scores accuracies[k] (the last one after them: no progress); the test split is scored for
    real. Returns the student's weights at each validation."""
    real, seen = SeedScoring.logits, []

    def logits(self, model, enc):
        if enc is not self.validation:
            return real(self, model, enc)
        seen.append({k: v.detach().clone() for k, v in self.classifier(model).state_dict().items()})
        labels = torch.tensor(enc.labels)
        right = round(accuracies[min(len(seen), len(accuracies)) - 1] * len(labels))
        return F.one_hot(torch.where(torch.arange(len(labels)) < right, labels, 1 - labels), 2).float()

    monkeypatch.setattr(SeedScoring, "logits", logits)
    return seen


def test_by_default_a_student_trains_until_validation_stops_improving(world, tmp_path, monkeypatch):
    """Issue #29: the budget was 3 passes validated once each (a student's best validation on its last step, and
    patience 3 could never fire); now at most 20 passes validated 4 times each, ended by 8 validations without
    progress, and the student saved is the best validation's."""
    d = DistillConfig()
    assert (d.epochs, d.evals_per_epoch, d.patience, d.min_steps, d.eval_every, d.budget) == (20, 4, 8, 0, 0, "")
    seen = scripted_validation(monkeypatch, [8 / 16, 10 / 16, 12 / 16, 14 / 16, 15 / 16, 8 / 16])  # the 5th is best
    out = tmp_path / "student"
    result = D.distill(world / "teacher", "preset:tiny", [world / "unlabelled.txt"], out,
                       student_cfg(world, distill=AT_DEFAULTS), seeds=(0,), quiet=True)
    assert result.settings["budget"]["steps"] == 20 * 16 and result.settings["eval_every"] == 16 // 4  # the cap
    s = result.seeds[0]
    assert (s.steps, s.best_step, s.stopped_early) == ((5 + 8) * 4, 5 * 4, True)  # step 52 of 320
    assert s.val_accuracy == 15 / 16 and len(seen) == 5 + 8 + 1  # then the last weights' (final) validation
    kept = load_file(str(out / "model.safetensors"))
    assert kept.keys() == seen[4].keys()
    for k in kept:
        torch.testing.assert_close(kept[k], seen[4][k], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(seen[4][k], seen[-1][k]) for k in kept)  # the student moved on after its best
    assert "seed 0 stopped early at 52 steps, best validation at step 20" in (out / "report.md").read_text()


def test_validations_a_pass_follow_the_setting(world, tmp_path):
    def every(*sets):
        return D.student_budget(student_cfg(world, *sets).distill, 16)[1]

    assert every() == 4 and every("distill.evals_per_epoch=2") == 8
    assert every("distill.evals_per_epoch=1") == 16  # once a pass: the rule before issue #29
    assert every("distill.evals_per_epoch=3") == 5  # 16 // 3: at least 3 a pass
    assert every("distill.evals_per_epoch=64") == 1  # at most every step
    assert every("distill.evals_per_epoch=2", "distill.eval_every=3") == 3  # an explicit interval wins
    result = D.distill(world / "teacher", "preset:tiny", [world / "unlabelled.txt"], tmp_path / "student",
                       student_cfg(world, "distill.batch_size=23", "distill.epochs=2", "distill.evals_per_epoch=2"),
                       seeds=(0,), quiet=True)
    assert [h["step"] for h in result.seeds[0].history if "val_acc" in h] == [8, 16, 24, 32]  # 32: the last step's
    for bad in ("distill.evals_per_epoch=0", "distill.evals_per_epoch=-4"):
        with pytest.raises(ConfigError, match="distill.evals_per_epoch must be >= 1, got -?[04]"):
            cfg(bad)


def test_an_explicit_budget_wins_and_a_patience_it_cannot_reach_is_warned_once_a_call(world, tmp_path, caplog):
    """Each distillation warns once (two separate calls: twice, nothing kept between them); a caller that distils
    many students with the same settings (a curve) passes one `warned` set and is told once."""
    def budget(*sets):
        return D.student_budget(student_cfg(world, *sets, distill=AT_DEFAULTS).distill, 16)

    assert budget() == (Budget(steps=20 * 16), 4)
    assert budget("distill.budget=400") == (Budget(steps=400), 4)  # longer than the cap
    assert budget("distill.budget=2m") == (Budget(seconds=120), 4)
    c = student_cfg(world, "distill.budget=10", distill=AT_DEFAULTS)
    with caplog.at_level("WARNING", logger="pretrainlab.distill.recipe"):
        result = D.distill(world / "teacher", "preset:tiny", [world / "unlabelled.txt"], tmp_path / "a", c, seeds=(0,),
                           quiet=True)
        setup = D.prepare_distill(world / "teacher", "preset:tiny", [world / "unlabelled.txt"], tmp_path / "b", c,
                                  quiet=True)
        warned: set = set()
        for _ in range(2):  # one curve, two students of the same settings
            recipe.warn_if_patience_cannot_stop(setup, warned)
        longer = replace(setup, budget=Budget(steps=14))  # another label count's pool: another budget of steps
        for _ in range(2):
            recipe.warn_if_patience_cannot_stop(longer, warned)
    s = result.seeds[0]
    assert (s.steps, s.stopped_early, result.settings["budget"]["steps"]) == (10, False, 10)
    said = ("distill.patience=8 can never end this distillation early: its budget of {} steps validates every 4 "
            "steps, {} times before its end, and stopping needs 9; raise distill.budget, raise "
            "distill.evals_per_epoch, or lower distill.patience (0: never stop early; the best validation's weights "
            "are kept)")
    assert [r.getMessage() for r in caplog.records] == 3 * [said.format(10, 2)] + [said.format(14, 3)]


def test_a_distillation_from_before_evals_per_epoch_resumes_with_its_own_settings(world, tmp_path):
    """Saved before issue #29, a distillation validated once a pass and its settings file lacks
    distill.evals_per_epoch: with today's defaults it is refused, naming the --set that give its own settings back,
    and with them it resumes. One with an explicit budget (as a curve's self-training rounds) saved distill.epochs,
    which such a budget leaves unused: it resumes whatever distill.epochs is now."""
    args = (world / "teacher", "preset:tiny", [world / "unlabelled.txt"])

    def saved_before(out, edit):
        f = out / D.SETTINGS_FILE
        saved = json.loads(f.read_text())
        edit(saved["distill"])
        f.write_text(json.dumps(saved))

    old = ("distill.epochs=1", "distill.patience=3", "distill.evals_per_epoch=1")
    out = tmp_path / "old"
    first = D.distill(*args, out, student_cfg(world, *old, distill=AT_DEFAULTS), seeds=(0,), quiet=True)
    saved_before(out, lambda d: d.pop("evals_per_epoch"))
    with pytest.raises(ConfigError, match=re.escape("(to continue it: --set distill.evals_per_epoch=1 --set "
                                                    "distill.epochs=1 --set distill.patience=3)")):
        D.distill(*args, out, student_cfg(world, distill=AT_DEFAULTS), seeds=(0,), resume=True, quiet=True)
    again = D.distill(*args, out, student_cfg(world, *old, distill=AT_DEFAULTS), seeds=(0,), resume=True, quiet=True)
    assert again.seeds[0].accuracy == first.seeds[0].accuracy and again.seeds[0].steps == 16

    out = tmp_path / "round"
    given = student_cfg(world, "distill.budget=5", "distill.evals_per_epoch=1", distill=AT_DEFAULTS)
    D.distill(*args, out, given, seeds=(0,), quiet=True)
    assert "epochs" not in json.loads((out / D.SETTINGS_FILE).read_text())["distill"]
    saved_before(out, lambda d: d.update(epochs=3) or d.pop("evals_per_epoch"))
    assert D.distill(*args, out, given, seeds=(0,), resume=True, quiet=True).seeds[0].steps == 5


def test_a_pretrained_student_with_the_hidden_state_loss(world, tmp_path):
    out = tmp_path / "from-run"
    c = student_cfg(world, "distill.hidden_weight=1.0", "distill.epochs=1", student=str(world / "run"))
    result = D.distill(world / "teacher", world / "run", ["task:" + str(world / "great.csv"), world / "unlabelled.txt"],
                       out, c, seeds=(0,), quiet=True)
    assert "hidden" in result.seeds[0].history[0]
    # task:FILE gives the training texts, which are in the pool with their labels already
    assert result.texts["labelled_dropped"] == 128 and result.texts["unlabelled"] == 240
    ftm = load_classifier(out)
    assert ftm.meta["source_run"] == str(world / "run") and "project.weight" not in load_file(str(out / "model.safetensors"))


def test_a_preset_student_learns_its_own_small_vocabulary(world, tmp_path):
    """Issue #29: with the teacher's tokenizer a tiny student of a MiniLM teacher had 4.45M parameters (30,522 x 128
    of them its embedding); by default it gets a WordPiece of distill.vocab_size trained on the texts it learns
    from (the labelled training texts, then the pool), which its directory keeps."""
    teacher = D.load_teacher(world / "teacher")
    task = D.teacher_task(teacher)[0]
    texts = task.train.texts + D.read_unlabelled([world / "unlabelled.txt"], task, cfg().finetune, cfg().data).texts
    own = D.prepare_distill(teacher, "preset:tiny", [world / "unlabelled.txt"], tmp_path / "own",
                            student_cfg(world, "distill.vocab_size=64"), quiet=True)
    assert own.student.tokenizer.get_vocab() == train_tokenizer(texts, vocab_size=64).get_vocab()
    mine, its = own.student.tokenizer.get_vocab_size(), teacher.tokenizer.get_vocab_size()
    assert mine < its and f"of {mine} tokens (distill.vocab_size=64) trained on the 368 texts" in \
        own.student.tokenizer_source  # a WordPiece holds every character and its ## piece, 72 here
    theirs = D.prepare_distill(teacher, "preset:tiny", [world / "unlabelled.txt"], tmp_path / "theirs",
                               student_cfg(world, "distill.vocab_size=0"), quiet=True)
    assert theirs.student.tokenizer is teacher.tokenizer
    size = {name: sum(p.numel() for p in D.student_classifier(s.student, 2, "mean", None).parameters())
            for name, s in (("own", own), ("theirs", theirs))}
    assert size["theirs"] - size["own"] == (its - mine) * 32  # the embedding's rows, d_model=32: nothing else moves

    out = tmp_path / "student"  # the default, end to end: the directory holds the student's own tokenizer
    D.distill(teacher, "preset:tiny", [world / "unlabelled.txt"], out, student_cfg(world, "distill.budget=2"),
              seeds=(0,), quiet=True)
    assert load_classifier(out).tokenizer.get_vocab() == train_tokenizer(texts, vocab_size=8192).get_vocab()
    with pytest.raises(ConfigError, match="distill.vocab_size must be at least 16"):
        cfg("distill.vocab_size=8")


def test_a_preset_student_is_the_measured_best_cnn_unless_a_setting_names_another(tmp_path):
    def model(*sets):
        return load_config(None, list(sets)).model

    assert D.student_config("preset:tiny", None, []).model == model("model.preset=tiny", "model.backbone=cnn")
    assert DEFAULT_STUDENT_BACKBONE == "cnn"  # benchmarks/results/distill.md: CNN 0.824, RNN 0.816, Transformer 0.799
    assert D.student_config("preset:mini", None, ["model.backbone=rnn"]).model == model("model.preset=mini",
                                                                                         "model.backbone=rnn")
    file = tmp_path / "student.yaml"
    file.write_text("model:\n  backbone: transformer\n  n_layers: 1\n")
    assert D.student_config("preset:tiny", file, []).model == model("model.preset=tiny", "model.backbone=transformer",
                                                                     "model.n_layers=1")


@pytest.mark.parametrize("student", [
    ["model.backbone=decoder", "model.style=gpt2", "model.max_len=8", "data.seq_len=8", "model.dropout=0"],  # 8 positions
    ["model.backbone=encoder-decoder", "model.style=bart", "model.dropout=0"],  # classifies from its last [SEP]
    ["model.backbone=encoder-decoder", "model.style=t5", "model.dropout=0"],  # the same, its decoder from [PAD]
], ids=["decoder", "encoder-decoder", "t5"])
def test_decoder_and_encoder_decoder_students(world, tmp_path, student):
    out = tmp_path / "student"
    c = student_cfg(world, *student, "distill.epochs=1", "finetune.max_len=128")
    result = D.distill(world / "teacher", "preset:tiny", [world / "unlabelled.txt"], out, c, seeds=(0,), quiet=True)
    ftm = load_classifier(out)
    assert ftm.config.model.backbone == c.model.backbone and result.seeds[0].steps > 0
    # the input is capped where the backbone's positions end (finetune.max_len=128 asks for more)
    assert ftm.meta["max_len"] == min(128, c.model.max_len)
    assert evaluate(out).accuracy == pytest.approx(result.test.accuracy)
    assert [label for label, _ in predict(out, ["a great film " * 20])][0] in ("neg", "pos")  # a long text is cut


def test_a_prepared_corpus_is_read_back_as_text(tiny_corpus, world):
    task = D.teacher_task(D.load_teacher(world / "teacher"))[0]
    pool = D.read_unlabelled([str(tiny_corpus)], task, cfg().finetune, cfg().data)
    assert len(pool.texts) > 100 and pool.sources == {str(tiny_corpus): pool.sources[str(tiny_corpus)]}
    assert pool.piece_words == 7 and all(len(p.split()) <= 2 * 7 and p.endswith(".") for p in pool.texts)
    assert any(". " in p for p in pool.texts)  # whole sentences, joined while they fit the task's 7 words
    assert pool.texts[0].startswith("document 0.")  # decoded words, not ids


def test_the_teachers_own_training_texts_alone_add_nothing_and_say_so(world, capsys):
    task = D.teacher_task(D.load_teacher(world / "teacher"))[0]
    spec = "task:" + str(world / "great.csv")
    pool = D.read_unlabelled([spec], task, cfg().finetune, cfg().data)
    assert pool.texts == [] and pool.labelled_dropped == len(task.train) == 128 and pool.held_out_dropped == 0
    assert f"note: --texts {spec} add no text to great's labelled training split" in capsys.readouterr().err


# --------------------------------------------------------------------------- bad input, each before any work


def test_bad_inputs_are_clear_errors_before_the_teacher_runs(world, tmp_path, monkeypatch):
    calls = counting(monkeypatch)
    c, texts = student_cfg(world), [world / "unlabelled.txt"]

    def go(teacher=world / "teacher", student="preset:tiny", inputs=texts, **kw):
        return D.distill(teacher, student, inputs, tmp_path / "out", kw.pop("cfg", c), seeds=(0,), quiet=True, **kw)

    with pytest.raises(CheckpointError, match=r"teacher .*/run is not a fine-tuned classifier \(no classifier.json\) "
                                              r"\(it is a pre-training run: fine-tune it first\)"):
        go(teacher=world / "run")
    with pytest.raises(CheckpointError, match="no such directory"):
        go(teacher=tmp_path / "nothing")

    other = tmp_path / "three.csv"
    other.write_text("text,label\n" + "".join(f"{t},{['a', 'b', 'c'][i % 3]}\n" for i, (t, _) in enumerate(great_rows(60, 6))))
    with pytest.raises(TaskError, match=r"knows the labels \['neg', 'pos'\], but task three .* has the labels "
                                        r"\['a', 'b', 'c'\]"):
        go(task=other)

    digits = tmp_path / "digits.json"
    save_tokenizer(train_tokenizer(["0 1 2 3 4 5 6 7 8 9 " * 5] * 20, vocab_size=40), digits)
    with pytest.raises(TokenizerError, match=r"maps \d+\.\d% of the texts' tokens to \[UNK\] \(more than "
                                             r"distill.max_unk=5%"):
        go(tokenizer=digits)

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(CorpusError, match="empty.txt: the file is empty"):
        go(inputs=[empty])
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"text": ""}\n{"text": "  "}\n')
    with pytest.raises(CorpusError, match="--texts .*blank.jsonl: no text in it"):
        go(inputs=[texts[0], blank])
    only_test = tmp_path / "test-texts.txt"
    task = D.teacher_task(D.load_teacher(world / "teacher"))[0]
    only_test.write_text("\n\n".join(task.test.texts + task.train.texts[:3]) + "\n")
    with pytest.raises(CorpusError, match=r"every piece is a text of great itself \(3 training, 16 validation/test"):
        go(inputs=[only_test])
    with pytest.raises(CorpusError, match="no unlabelled input"):
        go(inputs=[])

    with pytest.raises(ConfigError, match="model.backbone=rnn: the student .* is a pre-training run"):
        D.student_config(str(world / "run"), None, ["model.backbone=rnn"])
    with pytest.raises(ConfigError, match="no preset 'huge'"):
        go(student="preset:huge")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty and holds no distillation"):
        go()
    assert calls == []  # the teacher never ran


# --------------------------------------------------------------------------- the command line and the export


def cli_args(world, out):
    sets = [x for s in SETTINGS + DISTILL + [f"distill.cache={world / 'cache'}", "distill.epochs=2"] for x in ("--set", s)]
    return ["distill", str(world / "teacher"), "--student", "preset:tiny", "--texts", str(world / "unlabelled.txt"),
            "--out", str(out), *sets]


@pytest.fixture(scope="module")
def cli_student(world, tmp_path_factory):
    """A student distilled by the command line, and what it printed."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("cli") / "student"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(cli_args(world, out) + ["--seeds", "0"]) == 0
    return out, printed.getvalue()


def test_cli_distill_then_evaluate_and_predict(world, cli_student, capsys):
    out, printed = cli_student
    assert "| CPU texts/s, batch 32 |" in printed and f"written to {out}" in printed
    assert main(["evaluate", str(out)]) == 0
    assert main(["predict", str(out), "a great film"]) == 0
    capsys.readouterr()
    assert main(cli_args(world, out)) == 2
    assert "already holds a distillation; pass --resume" in capsys.readouterr().err


def test_the_readme_snippet_runs_on_the_export_of_a_distilled_transformer(cli_student, tmp_path):
    from pretrainlab.export import check_export, export, logits_fn

    out, _ = cli_student
    hf = export(out, tmp_path / "hf")
    check = check_export(hf, logits_fn(out))  # the model card's snippet in a fresh process, offline
    assert check.ok and check.label in ("neg", "pos"), check.summary()


def test_explain_and_a_learning_curve_from_the_students_backbone(world, cli_student, tmp_path):
    out, _ = cli_student
    assert main(["explain", str(out), "--text", "a great film", "--steps", "4", "--out", str(tmp_path / "x.html")]) == 0
    assert main(["curve", str(out), "--task", str(world / "great.csv"), "--labels", "all", "--seeds", "0",
                 "--out", str(tmp_path / "curve"), "--set", "finetune.epochs=1"]) == 0
    assert ",pretrained,0," in (tmp_path / "curve" / "curve.csv").read_text()  # fine-tuned from the student
