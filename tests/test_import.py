"""Import from Hugging Face: a tiny BertModel / BertForMaskedLM / ModernBertModel saved with
save_pretrained -> pretrainlab run -> the same hidden states (and MLM logits) as transformers;
continued pre-training from a run starts from its weights."""

import json
import random
import re
from dataclasses import replace

import pytest
import torch

from pretrainlab.checkpoint import latest_checkpoint, read_state
from pretrainlab.config import load_config
from pretrainlab.errors import CheckpointError, PretrainlabError
from pretrainlab.export.hf_import import ImportError_, import_hf
from pretrainlab.runs import adopt_init_model, load_classifier, load_pretrained
from pretrainlab.tokenizer import hf_tokenizer, load_tokenizer, tokenizer_hash, train_tokenizer
from pretrainlab.train import pretrain

from conftest import FAST, TINY, TRANSFORMER

WORDS = "the a film movie story actor plot scene was is very good bad great awful dull fun long short".split()
TEXTS = ["the film was very good", "a dull plot and awful actor", "great fun"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok():
    rng = random.Random(0)
    return train_tokenizer([" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(200)], vocab_size=80)


def _save_hf(model, tok, path):
    model.save_pretrained(str(path))
    hf_tokenizer(tok).save_pretrained(str(path))
    return path


def _bert(tok, cls_name="BertModel"):
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                     pad_token_id=tok.token_to_id("[PAD]"))
    model = getattr(transformers, cls_name)(config).eval()
    with torch.no_grad():  # non-trivial LayerNorms, biases, token types and MLM head
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias") or "token_type" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def _inputs(tok):
    hf = hf_tokenizer(tok)
    return hf(TEXTS, ["a good story"] * 2 + ["long"], padding=True, return_tensors="pt")


def _ours(run, inputs):
    pre = load_pretrained(run)
    mask = inputs["attention_mask"]
    out = pre.backbone(inputs["input_ids"], mask, inputs.get("token_type_ids"))
    return pre, out.hidden, mask.bool()


@pytest.mark.parametrize("cls_name", ["BertModel", "BertForMaskedLM"])
def test_bert_import_equal_hidden_states(tok, tmp_path, cls_name, capsys):
    hf_model = _bert(tok, cls_name)
    src = _save_hf(hf_model, tok, tmp_path / "hf")
    report = import_hf(src, tmp_path / "run")
    inputs = _inputs(tok)
    pre, hidden, real = _ours(tmp_path / "run", inputs)
    with torch.no_grad():
        if cls_name == "BertModel":
            theirs = hf_model(**inputs).last_hidden_state
        else:
            out = hf_model(**inputs, output_hidden_states=True)
            theirs = out.hidden_states[-1]
        torch.testing.assert_close(hidden[real], theirs[real], atol=1e-5, rtol=1e-4)
        if cls_name == "BertForMaskedLM":
            assert report.mlm_head == "imported"
            ours_logits = pre.model.lm_head(hidden)
            torch.testing.assert_close(ours_logits[real], out.logits[real], atol=1e-4, rtol=1e-4)
        else:
            assert report.mlm_head == "initialised"
            assert "no MLM head" in capsys.readouterr().err
            head = pre.model.lm_head
            assert head.embedding.weight is pre.backbone.tok_emb.weight  # tied decoder
            assert float(head.bias.abs().sum()) == 0.0
    # the run directory is a normal one: config, tokenizer (our special tokens) and a checked checkpoint
    assert pre.config.model.style == "bert" and pre.config.model.d_model == 32 and pre.config.model.n_layers == 2
    t = load_tokenizer(tmp_path / "run" / "tokenizer.json")
    assert t.encode("the film").ids == tok.encode("the film").ids
    state = read_state(latest_checkpoint(tmp_path / "run"))
    assert state["tokenizer_hash"] == tokenizer_hash(t)


def test_sequence_classifier_encoder_is_imported(tok, tmp_path):
    import transformers

    hf_model = _bert(tok, "BertForSequenceClassification")
    src = _save_hf(hf_model, tok, tmp_path / "hf")
    import_hf(src, tmp_path / "run", quiet=True)
    inputs = _inputs(tok)
    _, hidden, real = _ours(tmp_path / "run", inputs)
    with torch.no_grad():
        theirs = hf_model(**inputs, output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(hidden[real], theirs[real], atol=1e-5, rtol=1e-4)
    assert isinstance(hf_model, transformers.BertForSequenceClassification)


def test_modernbert_import_equal_hidden_states(tok, tmp_path):
    import transformers

    from pretrainlab.export.hf_names import hf_modernbert_config_kwargs

    torch.manual_seed(0)
    kw = hf_modernbert_config_kwargs(vocab_size=tok.get_vocab_size(), d_model=32, n_layers=2, n_heads=4, d_ff=48,
                                     max_len=64, dropout=0.0, pad_id=tok.token_to_id("[PAD]"))
    hf_model = transformers.ModernBertModel(transformers.ModernBertConfig(**kw)).eval()
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    src = _save_hf(hf_model, tok, tmp_path / "hf")
    import_hf(src, tmp_path / "run", quiet=True)
    inputs = _inputs(tok)
    inputs.pop("token_type_ids", None)
    pre, hidden, real = _ours(tmp_path / "run", inputs)
    assert pre.config.model.style == "modern"
    with torch.no_grad():
        theirs = hf_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    torch.testing.assert_close(hidden[real], theirs[real], atol=1e-5, rtol=1e-4)


def test_clear_errors(tok, tmp_path):
    with pytest.raises(ImportError_, match="not a local directory.*no model hub"):
        import_hf("sentence-transformers/all-MiniLM-L6-v2", tmp_path / "run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportError_, match="no config.json"):
        import_hf(tmp_path / "empty", tmp_path / "run")
    src = _save_hf(_bert(tok), tok, tmp_path / "hf")
    import_hf(src, tmp_path / "run", quiet=True)
    with pytest.raises(ImportError_, match="not empty"):
        import_hf(src, tmp_path / "run", quiet=True)
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))  # a BERT config, relabelled
    with pytest.raises(PretrainlabError, match="model_type 'gpt2' but no n_embd, n_layer, n_head"):
        import_hf(src, tmp_path / "run2", quiet=True)
    (src / "config.json").write_text(json.dumps({**cfg, "model_type": "mistral"}))
    with pytest.raises(ImportError_, match="model_type 'mistral' is not supported"):
        import_hf(src, tmp_path / "run2", quiet=True)


def test_cli_import(tok, tmp_path):
    from pretrainlab.cli import main

    src = _save_hf(_bert(tok), tok, tmp_path / "hf")
    assert main(["import", str(src), "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "imported.json").is_file()
    assert main(["import", "bert-base-uncased", "--out", str(tmp_path / "x")]) == 2


# --------------------------------------------------------------------------- continued pre-training

SETTINGS = TINY + TRANSFORMER + FAST + ["train.eval_every=0", "train.log_every=1"]


def _losses(run):
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_continued_pretraining_starts_from_the_weights(tiny_corpus, tmp_path):
    first = pretrain(load_config(None, SETTINGS + ["train.budget=80"]), tiny_corpus, tmp_path / "first")
    cont = pretrain(load_config(None, SETTINGS + ["train.budget=3"]), tiny_corpus, tmp_path / "cont", init=first)
    fresh = pretrain(load_config(None, SETTINGS + ["train.budget=3"]), tiny_corpus, tmp_path / "fresh")
    end_of_first = sum(_losses(first)[-5:]) / 5
    start_cont, start_fresh = _losses(cont)[0], _losses(fresh)[0]  # the same first batch and mask
    assert start_fresh > end_of_first + 0.4  # a fresh model starts far from where the first run ended
    # One batch against a 5-step mean. The figures are fixed (here 0.04, and 0.91 below a fresh model): they
    # varied from session to session (0.28 to 0.47) only because tiny_corpus's WordPiece vocabulary did
    # (test_tokenizer.py::test_the_same_texts_give_the_same_tokenizer); another train.seed draws other batches
    # and moves this one by up to 0.55, so a change to batching or masking may have to revisit the bound.
    assert start_cont < start_fresh - 0.4 and abs(start_cont - end_of_first) < 0.2
    # exactly: with a vanishing learning rate the continued run still holds the first run's weights
    still = pretrain(load_config(None, SETTINGS + ["train.budget=1", "train.lr=1e-12"]), tiny_corpus, tmp_path / "still",
                     init=first)
    a, b = load_pretrained(first).model.state_dict(), load_pretrained(still).model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-8, rtol=0)


def test_continued_pretraining_errors_and_model_section(tiny_corpus, tmp_path, tok, capsys):
    first = pretrain(load_config(None, SETTINGS + ["train.budget=2"]), tiny_corpus, tmp_path / "first")
    # a config asking for another architecture: the init's is taken, and the user is told
    other = load_config(None, SETTINGS + ["model.n_layers=3", "model.style=modern"])
    adopted, notes = adopt_init_model(other, first)
    assert adopted.model.n_layers == 2 and adopted.model.style == "bert"
    assert "model.n_layers: config 3 -> init 2" in notes[0] and "model.style" in notes[0]
    same, none = adopt_init_model(load_config(None, SETTINGS), first)
    assert none == [] and same.model == load_config(None, SETTINGS).model
    # pretrain itself takes it, called from Python as from the CLI (issue #25 item 5), and so does its resumption
    run = pretrain(replace(other, train=replace(other.train, budget="2")), tiny_corpus, tmp_path / "adopted", init=first)
    assert load_pretrained(run).config.model == adopted.model
    assert "note: --init" in capsys.readouterr().err
    pretrain(replace(other, train=replace(other.train, budget="3")), tiny_corpus, run, resume=True, init=first)
    assert json.loads((run / "summary.json").read_text())["steps"] == 3
    # the CLI does the same: a wider model asked for, the init's taken, a note printed
    from pretrainlab.cli import main

    sets = [x for item in SETTINGS + ["train.budget=1", "model.d_model=64"] for x in ("--set", item)]
    assert main(["pretrain", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "cli"), "--init", str(first),
                 *sets]) == 0
    assert load_pretrained(tmp_path / "cli").config.model.d_model == 32
    # a corpus prepared with another tokenizer than the init's: a clear error
    from pretrainlab.data.prepare import prepare_corpus

    other_tok = tmp_path / "tok.json"
    tok.save(str(other_tok))
    other_corpus = tmp_path / "other-corpus"
    raw = tmp_path / "raw.txt"
    raw.write_text("\n\n".join(" ".join(random.Random(i).choice(WORDS) for _ in range(20)) for i in range(50)))
    prepare_corpus([str(raw)], other_corpus, load_config(None, ["data.min_chars=5"]).data, tokenizer_path=other_tok)
    with pytest.raises(CheckpointError, match="prepare the corpus with --tokenizer"):
        pretrain(load_config(None, SETTINGS + ["train.budget=2"]), other_corpus, tmp_path / "bad", init=first)
    assert isinstance(CheckpointError("x"), PretrainlabError)


def test_continued_pretraining_loads_the_init_strictly(tiny_corpus, tmp_path, capsys):
    """A weight the init lacks used to be left random in silence (load strict=False): now the backbone's are an
    error naming them, and a whole head the init lacks starts fresh, said once, as do the init's spare weights."""
    from safetensors.torch import load_file, save_file

    from pretrainlab.finetune import finetune

    first = pretrain(load_config(None, SETTINGS + ["train.budget=2"]), tiny_corpus, tmp_path / "first")
    weights = load_file(str(latest_checkpoint(first) / "model.safetensors"))
    cfg = load_config(None, SETTINGS + ["train.budget=1", "train.lr=1e-12"])

    def bare(name, change):  # a weights folder of its own: no config.yaml, no tokenizer hash
        folder = tmp_path / name
        folder.mkdir()
        save_file(change(dict(weights)), str(folder / "model.safetensors"))
        return folder

    lacking = bare("lacking", lambda w: {k: v for k, v in w.items() if k != "backbone.layers.1.ff_out.weight"})
    with pytest.raises(CheckpointError, match=r"lack 1 of this model's \(backbone.layers.1.ff_out.weight\), which "
                                              r"would start random"):
        pretrain(cfg, tiny_corpus, tmp_path / "a", init=lacking)
    wider = bare("wider", lambda w: {**w, "backbone.layers.0.ff_in.weight": torch.zeros(70, 32)})
    with pytest.raises(CheckpointError, match="does not fit this model's architecture: .*backbone.layers.0.ff_in.weight"):
        pretrain(cfg, tiny_corpus, tmp_path / "b", init=wider)

    # a fine-tuned classifier: its backbone, a fresh MLM head, its own head not used; each said once
    task = tmp_path / "task.csv"
    task.write_text("text,label\n" + "".join(f"{' '.join(random.Random(i).choice(WORDS) for _ in range(5))},{'ab'[i % 2]}\n"
                                             for i in range(40)), encoding="utf-8")
    ft = tmp_path / "ft"
    finetune(first, task, load_config(None, SETTINGS + ["finetune.epochs=1"]), out_dir=ft, seeds=(0,))
    capsys.readouterr()
    run = pretrain(cfg, tiny_corpus, tmp_path / "from-ft", init=ft)
    err = capsys.readouterr().err
    assert len(re.findall(r"has no lm_head weights: they start fresh", err)) == 1, err
    assert len(re.findall(r"its head, pooler weights are not used", err)) == 1, err
    ours, theirs = load_pretrained(run).backbone.state_dict(), load_classifier(ft).model.backbone.state_dict()
    for k in theirs:
        torch.testing.assert_close(ours[k], theirs[k], atol=1e-8, rtol=0, msg=k)


def test_continued_pretraining_takes_the_inits_tying(tiny_corpus, tmp_path, capsys):
    """An imported BERT ties its MLM projection to the input embedding (its weights file holds the one matrix): a
    run continued from it (docs/usage.md: export -> import -> pretrain --init) ties its heads too. Untied, the
    default, it lacked its own projection: refused since the init loads strictly (before, it started random)."""
    first = pretrain(load_config(None, SETTINGS + ["train.budget=2"]), tiny_corpus, tmp_path / "first")  # TINY ties
    untied = ["objective.tie_embeddings=false"]
    adopted, notes = adopt_init_model(load_config(None, SETTINGS + untied), first)
    assert adopted.objective.tie_embeddings
    assert notes[-1].endswith("(objective.tie_embeddings: config False -> init True)")
    run = pretrain(load_config(None, SETTINGS + untied + ["train.budget=1", "train.lr=1e-12"]), tiny_corpus,
                   tmp_path / "cont", init=first)
    assert "its heads' tying is used" in capsys.readouterr().err
    continued = load_pretrained(run)
    assert continued.config.objective.tie_embeddings
    a, b = load_pretrained(first).model.state_dict(), continued.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-8, rtol=0, msg=k)


def test_folder_with_only_vocab_txt(tok, tmp_path):
    """Older BERT folders ship vocab.txt and no tokenizer.json: transformers builds the fast tokenizer."""
    hf_model = _bert(tok)
    src = tmp_path / "hf"
    hf_model.save_pretrained(str(src))
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    (src / "vocab.txt").write_text("\n".join(t for t, _ in vocab) + "\n", encoding="utf-8")
    (src / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True}))
    import_hf(src, tmp_path / "run", quiet=True)
    ours = load_tokenizer(tmp_path / "run" / "tokenizer.json")
    assert ours.get_vocab_size() == tok.get_vocab_size()
    assert ours.encode("the film was very good").ids == tok.encode("the film was very good").ids
