"""Importing a Hugging Face BART folder with BART's own tokenizer (<s> </s> <pad> <mask> <unk>, byte-level
BPE): logits, export round trip, greedy generation, continued pre-training and fine-tuning (issue #16).

No hub download: the folder is built here (a tiny BartConfig and a byte-level BPE trained on a few sentences,
saved as transformers saves BART: special tokens at BART's ids, <mask> last)."""

import json
import random

import pytest
import torch
from torch.testing import assert_close

from pretrainlab.cli import main
from pretrainlab.export.hf_import import ImportError_, import_hf
from pretrainlab.runs import load_pretrained

from conftest import FAST, FINETUNE, TINY

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

WORDS = "the a cat dog sat ran on to mat house people of union and state big red tree is near river".split()
SENTS = ["the cat sat on the mat.", "a dog ran to the house.", "people of the union and the state.",
         "the big red tree is near the river.", "a small blue house under the tree."]


def bart_tokenizer():
    """A byte-level BPE laid out as BART's: <s>=0 <pad>=1 </s>=2 <unk>=3 ... <mask>=last, RobertaProcessing."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import BartTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=90, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], show_progress=False)
    tok.train_from_iterator(SENTS * 5, trainer=trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
    return BartTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                             cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")


def bart_folder(path):
    """A tiny BartForConditionalGeneration (BartConfig's defaults for the token ids) with every weight moved
    off its init, saved with its tokenizer."""
    from transformers import BartConfig, BartForConditionalGeneration

    hf_tok = bart_tokenizer()
    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=len(hf_tok), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32,
                     dropout=0.0, attention_dropout=0.0)
    model = BartForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        model.final_logits_bias.normal_(std=0.1)
    model.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf_bart(tmp_path_factory):
    return bart_folder(tmp_path_factory.mktemp("hf") / "bart")


@pytest.fixture(scope="module")
def imported(hf_bart, tmp_path_factory):
    out = tmp_path_factory.mktemp("imp") / "run"
    import_hf(hf_bart, out, quiet=True)
    return out


def hf_inputs(folder):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    batch = tok(["the cat sat on the mat.", "a dog <mask> to the house."], return_tensors="pt", padding=True)
    return tok, batch


def test_bart_special_tokens_map_onto_ours(imported):
    sp = load_pretrained(imported).special
    assert (sp.cls, sp.pad, sp.sep, sp.unk) == (0, 1, 2, 3) and sp.mask == 90  # BART's own ids, <mask> last
    assert sp.names == ("<pad>", "<unk>", "<s>", "</s>", "<mask>") and sp.name("cls") == "<s>"


def test_imported_logits_equal_hf_and_export_round_trips(hf_bart, imported, tmp_path, monkeypatch):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from pretrainlab.export import export

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf = AutoModelForSeq2SeqLM.from_pretrained(hf_bart).eval()
    tok, batch = hf_inputs(hf_bart)
    ours_tok = load_pretrained(imported).tokenizer
    assert [e.ids for e in ours_tok.encode_batch(["the cat sat on the mat.", "a dog <mask> to the house."])] == \
        [row[m.bool()].tolist() for row, m in zip(batch.input_ids, batch.attention_mask)]  # the same ids
    dec = torch.tensor([[2, 0, 20, 30, 40], [2, 0, 50, 60, 90]])
    lm = load_pretrained(imported).lm.eval()
    with torch.no_grad():
        ours = lm(batch.input_ids, batch.attention_mask, dec)
        theirs = hf(**batch, decoder_input_ids=dec).logits
    assert_close(ours, theirs)

    out = export(imported, tmp_path / "exported")
    back = AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    back_tok = AutoTokenizer.from_pretrained(out)
    assert (back_tok.bos_token, back_tok.eos_token, back_tok.pad_token, back_tok.mask_token, back_tok.unk_token) == \
        ("<s>", "</s>", "<pad>", "<mask>", "<unk>")  # the same tokens back, at the same ids
    assert back_tok(["a dog <mask> to the house."]).input_ids == tok(["a dog <mask> to the house."]).input_ids
    config = json.loads((out / "config.json").read_text())
    assert (config["pad_token_id"], config["bos_token_id"], config["eos_token_id"], config["decoder_start_token_id"]) \
        == (1, 0, 2, 2)
    with torch.no_grad():
        assert_close(back(**batch, decoder_input_ids=dec).logits, theirs)


def test_greedy_generate_on_the_imported_run_equals_hf_generate(hf_bart, imported, monkeypatch):
    from transformers import AutoModelForSeq2SeqLM

    from pretrainlab.generate import GenerationSettings, generate_run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf = AutoModelForSeq2SeqLM.from_pretrained(hf_bart).eval()
    tok, _ = hf_inputs(hf_bart)
    for prompt in ["the cat sat on the mat.", "a dog <mask> to the house."]:
        ours = generate_run(imported, [prompt], GenerationSettings(max_new_tokens=10, temperature=0.0))[0]
        # BartConfig's forced_eos_token_id=2 forces </s> at max_length; pretrainlab's generate forces nothing
        # (the import says so), so compare with it switched off
        theirs = hf.generate(**tok(prompt, return_tensors="pt"), max_new_tokens=10, do_sample=False, num_beams=1,
                             forced_eos_token_id=None)
        assert theirs[0].tolist() == ours.ids


def test_the_import_notes_what_generate_does_not_force(hf_bart, tmp_path):
    report = import_hf(hf_bart, tmp_path / "run", quiet=True)
    assert any("forced_eos_token_id=2" in n for n in report.notes)


def test_continued_pretraining_and_finetuning_of_the_imported_bart(imported, tmp_path, capsys):
    from pretrainlab.config import load_config
    from pretrainlab.data.prepare import prepare_corpus
    from pretrainlab.train import pretrain

    rng = random.Random(0)
    raw = tmp_path / "corpus.txt"
    raw.write_text("\n\n".join(" ".join(" ".join(rng.choice(WORDS) for _ in range(6)).capitalize() + "." for _ in range(3))
                               for _ in range(60)), encoding="utf-8")
    corpus = tmp_path / "corpus"
    prepare_corpus([str(raw)], corpus, load_config(None, ["data.min_chars=5"]).data,
                   tokenizer_path=imported / "tokenizer.json")
    cfg = load_config(None, TINY + FAST + ["train.budget=2", "train.eval_every=0", "train.eval_batches=1"])
    more = pretrain(cfg, corpus, tmp_path / "more", init=imported)  # it takes the init's architecture and objective
    assert (more / "summary.json").is_file()
    saved = load_pretrained(more).config
    assert saved.model.backbone == "encoder-decoder" and list(saved.objective.weights) == ["infill", "permute"]

    task = tmp_path / "task.csv"
    task.write_text("text,label\n" + "".join(f"{' '.join(rng.choice(WORDS) for _ in range(4))},{'ab'[i % 2]}\n"
                                             for i in range(40)), encoding="utf-8")
    ft = tmp_path / "ft"
    assert main(["finetune", str(imported), "--task", str(task), "--out", str(ft), "--seeds", "0",
                 "--set", "finetune.epochs=1", *[a for s in FINETUNE for a in ("--set", s)]]) == 0
    capsys.readouterr()
    assert main(["predict", str(ft), "the cat sat on the mat."]) == 0
    assert capsys.readouterr().out.split("\t")[0] in ("a", "b")
    assert main(["export", str(ft), "--to", str(tmp_path / "hf-cls")]) == 0  # the export's own check: equal logits
    tc = json.loads((tmp_path / "hf-cls" / "tokenizer_config.json").read_text())
    assert (tc["bos_token"], tc["eos_token"], tc["pad_token"]) == ("<s>", "</s>", "<pad>")


def test_a_bart_tokenizer_without_mask_is_refused_naming_the_token(hf_bart, tmp_path):
    import shutil

    folder = tmp_path / "nomask"
    shutil.copytree(hf_bart, folder)
    spec = json.loads((folder / "tokenizer.json").read_text())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "<mask>"]
    spec["model"]["vocab"].pop("<mask>", None)
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    with pytest.raises(ImportError_, match=r"special token <mask> \(pretrainlab's \[MASK\]"):
        import_hf(folder, tmp_path / "run", quiet=True)
