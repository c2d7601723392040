"""interpret/: attention weights are the ones the forward pass used, rollout, integrated-gradients
completeness, probes, and a self-contained, well-formed HTML report for every backbone."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from pretrainlab.backbones import EncoderOutput, build_backbone
from pretrainlab.cli import main
from pretrainlab.errors import CheckpointError, TaskError
from pretrainlab.interpret import (
    ExplainError,
    Explainable,
    aggregate_attributions,
    attention_rollout,
    attention_weights,
    build_report,
    explain,
    integrated_gradients,
    probe_layers,
    read_task_file,
)
from pretrainlab.interpret.report import TaskData, prepare_inputs
from pretrainlab.models import Classifier, ClassifierOutput
from pretrainlab.tokenizer import special_ids, train_tokenizer

POS = ["a good film", "great fun movie", "good plot and great acting", "fun and good"]
NEG = ["a bad film", "awful dull movie", "bad plot and dull acting", "dull and awful"]
KINDS = ["transformer", "rnn", "cnn"]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer((POS + NEG) * 5, vocab_size=100)


def make_backbone(kind: str, vocab: int, style: str = "bert") -> nn.Module:
    torch.manual_seed(0)
    return build_backbone(kind, vocab_size=vocab, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=16,
                          dropout=0.0, style=style, kernel_size=3, dilations=(1, 2)).eval()


def make_classifier(kind: str, vocab: int) -> Classifier:
    """A tiny classifier with weights large enough that its logits vary clearly with the input."""
    clf = Classifier(make_backbone(kind, vocab), n_labels=2).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        emb = clf.backbone.get_input_embeddings()
        emb.weight.normal_(0, 1.0)
        emb.weight[emb.padding_idx].zero_()
        clf.pooler.weight.normal_(0, 0.3)
        clf.head.weight.normal_(0, 1.0)
    return clf


def two_docs_batch():
    ids = torch.tensor([[2, 10, 11, 12, 3, 0, 0, 0], [2, 13, 14, 3, 2, 15, 16, 3]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 2, 2, 2, 2]])
    return ids, mask


# --------------------------------------------------------------------------- attention


@pytest.mark.parametrize("style", ["bert", "modern"])
def test_attention_weights_are_what_the_forward_pass_used(style):
    model = make_backbone("transformer", 64, style)
    ids, mask = two_docs_batch()
    captured = []

    def hook(module, args, output):
        captured.append((module, args[0], output[0]))  # the layer's input and its attention output

    handles = [layer.attn.register_forward_hook(hook) for layer in model.layers]
    weights = attention_weights(model, ids, mask)
    for h in handles:
        h.remove()
    assert len(weights) == 2 and weights[0].shape == (2, 4, 8, 8)

    same_doc = mask[:, None, :, None] == mask[:, None, None, :]  # (B, 1, T, T)
    for w, (attn, x, out) in zip(weights, captured, strict=True):
        assert_close(w.sum(-1), torch.ones(2, 4, 8))  # every row is a distribution
        assert torch.all(w.masked_select(~same_doc) == 0)  # nothing across documents or into padding
        # the attention output recomputed from the returned weights and the layer's own V
        B, T, D = x.shape
        v = attn.qkv(x).view(B, T, 3, attn.n_heads, attn.head_dim)[:, :, 2].transpose(1, 2)  # (B, H, T, Dh)
        recomputed = attn.out((w @ v).transpose(1, 2).reshape(B, T, D))
        assert_close(recomputed, out, rtol=1e-5, atol=1e-6)

    # and the explicit path that returns weights computes what the fused SDPA path computes
    explicit = model(ids, mask, output_attentions=True).hidden
    model.attn_impl = "sdpa"
    fused = model(ids, mask).hidden
    real = mask != 0
    assert_close(explicit[real], fused[real], rtol=1e-5, atol=1e-5)


def test_rollout_of_identity_is_identity_and_follows_the_paper():
    eye = torch.eye(5).expand(3, 2, 5, 5)  # 3 layers, 2 heads
    assert_close(attention_rollout(list(eye)), torch.eye(5))
    assert_close(attention_rollout(list(eye), residual=False), torch.eye(5))

    g = torch.Generator().manual_seed(0)
    layers = [torch.rand(4, 6, 6, generator=g).softmax(-1) for _ in range(3)]  # (H, T, T) each
    step = [0.5 * a.mean(0) + 0.5 * torch.eye(6) for a in layers]  # heads averaged, residual, rows still sum to 1
    expected = step[2] @ step[1] @ step[0]
    got = attention_rollout(layers)
    assert_close(got, expected)
    assert_close(got.sum(-1), torch.ones(6))


# --------------------------------------------------------------------------- attributions


@pytest.mark.parametrize("kind", KINDS)
def test_integrated_gradients_completeness(tok, kind):
    sp = special_ids(tok)
    clf = make_classifier(kind, tok.get_vocab_size())
    enc = prepare_inputs(tok, ["a good film and great fun", "dull"], None, 16, sp.pad)
    attrs = integrated_gradients(clf, enc.ids, enc.mask, pad_id=sp.pad, keep_ids=(sp.cls, sp.sep),
                                 tokens=enc.tokens, n_steps=64)
    baseline = torch.where(torch.isin(enc.ids, torch.tensor([sp.cls, sp.sep, sp.pad])), enc.ids, sp.pad)
    with torch.no_grad():
        fx, fb = clf(enc.ids, enc.mask).logits, clf(baseline, enc.mask).logits
    for b, a in enumerate(attrs):
        gap = float(fx[b, a.target] - fb[b, a.target])
        assert a.target == int(fx[b].argmax())
        assert abs(a.logit - float(fx[b, a.target])) < 1e-5 and abs(a.baseline_logit - float(fb[b, a.target])) < 1e-5
        assert abs(gap) > 1e-2, "the test model should react to its input"
        assert abs(sum(a.scores) - gap) <= abs(a.delta) + 1e-5  # completeness, within the reported delta
        assert abs(a.delta) < 0.02 * abs(gap) + 1e-4  # and the delta is small
        assert len(a.tokens) == int(enc.mask[b].sum())
        for s, special in zip(a.scores, a.special):
            if special:  # [CLS]/[SEP] are the same in input and baseline
                assert s == 0.0


class PowerClassifier(nn.Module):
    """Logits (0, s^p), s = the sum of the tokens' one-number embeddings ([PAD], [CLS], [SEP] embed to 0).
    Along IG's straight path the target logit is (alpha s)^p: an n-point Gauss-Legendre sum (captum's
    default) integrates its derivative exactly only for 2n - 1 >= p - 1, so the delta falls with the steps."""

    def __init__(self, vocab: int, power: int):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.emb = nn.Embedding(vocab, 1)
        self.backbone.get_input_embeddings = lambda: self.backbone.emb
        self.power = power
        with torch.no_grad():
            self.backbone.emb.weight.fill_(0.3)
            self.backbone.emb.weight[:4] = 0.0

    def forward(self, ids, mask, segment_ids=None):
        s = (self.backbone.emb(ids).squeeze(-1) * (mask != 0)).sum(-1)  # (B,)
        return ClassifierOutput(logits=torch.stack([torch.zeros_like(s), s ** self.power], -1))


def test_integrated_gradients_take_steps_until_the_scores_add_up():
    clf = PowerClassifier(vocab=10, power=20)
    ids = torch.tensor([[2, 5, 6, 7, 8, 3], [2, 5, 3, 0, 0, 0]])  # 4 words (s = 1.2), 1 word (s = 0.3)
    mask = (ids != 0).long()

    def run(n_steps, max_steps):
        return integrated_gradients(clf, ids, mask, pad_id=0, keep_ids=(2, 3), target=1, n_steps=n_steps,
                                    max_steps=max_steps)

    capped = run(2, 2)
    assert [a.steps for a in capped] == [2, 2]
    gap = 1.2 ** 20
    assert abs(capped[0].logit - capped[0].baseline_logit - gap) < 1e-3 * gap
    assert capped[0].relative_delta > 0.05 and not capped[0].converged  # 2 points cannot integrate a degree-19 curve
    # the one-word text moves the logit by 0.3^20 (~3e-11): under the floor, nothing to refine
    assert capped[1].converged and abs(capped[1].delta) < 1e-3

    refined = run(2, 64)
    a = refined[0]
    assert a.converged and a.relative_delta <= 0.05 and 2 < a.steps <= 64
    assert abs(sum(a.scores) - gap) <= abs(a.delta) + 1e-4 * gap  # completeness, within the delta it reports
    halved = run(a.steps // 2, a.steps // 2)[0]
    assert halved.relative_delta > 0.05, "it stops at the first doubling that is within 5%, not later"
    assert refined[1].steps == 2  # only the texts still off get more steps
    assert run(2, 4)[0].steps == 4 and not run(2, 4)[0].converged  # the cap holds


def test_report_flags_attributions_that_do_not_add_up(tok):
    clf = make_classifier("transformer", tok.get_vocab_size())
    model = Explainable(clf.backbone, tok, clf, ["neg", "pos"], max_len=16, name="tiny")
    texts = ["a good film and great fun", "bad plot and dull acting"]
    sp = special_ids(tok)
    enc = prepare_inputs(tok, texts, None, 16, sp.pad)
    one_step = integrated_gradients(clf, enc.ids, enc.mask, pad_id=sp.pad, keep_ids=(sp.cls, sp.sep), n_steps=1,
                                    max_steps=1)
    assert all(not a.converged for a in one_step), [a.relative_delta for a in one_step]
    page = build_report(model, texts, task=TaskData(POS + NEG, ["pos"] * 4 + ["neg"] * 4, None, "t.tsv"),
                        n_steps=1, max_steps=1, max_examples=8)
    check_page(page)
    assert page.count("Warning: these scores do not add up") == 2 and "do not add up to the logit change" in page
    page = build_report(model, texts, n_steps=8, max_steps=512)
    assert "do not add up" not in page and "of the change) after" in page


def test_aggregate_attributions_per_class():
    from pretrainlab.interpret import TokenAttribution

    def ta(label, toks, scores):
        return TokenAttribution(toks, [0] * len(toks), scores, 0, 0.9, 1.0, 0.0, 0.0,
                                [t.startswith("[") for t in toks], label)

    attrs = [ta("pos", ["[CLS]", "Good", "film"], [0.0, 2.0, 0.1]), ta("pos", ["good", "plot"], [1.0, -0.5]),
             ta("neg", ["dull"], [3.0])]
    summary = aggregate_attributions(attrs, top_k=2)
    assert summary["pos"] == [("good", 3.0, 1.5, 2), ("film", 0.1, 0.1, 1)]
    assert summary["neg"] == [("dull", 3.0, 3.0, 1)]


# --------------------------------------------------------------------------- probes


@pytest.mark.parametrize("kind", KINDS)
def test_probes_every_layer(tok, kind):
    sp = special_ids(tok)
    model = make_backbone(kind, tok.get_vocab_size())
    texts, labels = (POS + NEG) * 3, ([1] * 4 + [0] * 4) * 3
    enc = prepare_inputs(tok, texts, None, 16, sp.pad)
    r = probe_layers(model, enc.ids, enc.mask, labels)
    assert r.layers == ["embeddings", "layer 1", "layer 2"] and r.note == ""
    assert (r.n_train, r.n_test) == (18, 6)
    assert r.test_accuracy[0] >= 0.8  # the classes differ in their words: linear from the embeddings
    assert r.majority == 0.5


def test_probe_falls_back_to_the_final_output(tok):
    class NoLayers(nn.Module):
        d_model = 8

        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(tok.get_vocab_size(), 8)

        def forward(self, ids, mask, segment_ids=None, output_attentions=False, output_hidden_states=False):
            return EncoderOutput(self.emb(ids))

    sp = special_ids(tok)
    enc = prepare_inputs(tok, (POS + NEG) * 2, None, 16, sp.pad)
    r = probe_layers(NoLayers(), enc.ids, enc.mask, ([1] * 4 + [0] * 4) * 2)
    assert r.layers == ["final output"] and "only its final output" in r.note


# --------------------------------------------------------------------------- the report


class Checker(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr", "col", "area", "base", "embed", "track"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.urls, self.scripts = [], [], [], []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href"):
                self.urls.append(value or "")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def check_page(page: str) -> Checker:
    for bad in ("http://", "https://", "//cdn"):
        assert bad not in page, f"the report names an external URL ({bad})"
    c = Checker()
    c.feed(page)
    c.close()
    assert not c.errors and not c.stack, (c.errors, c.stack)
    assert all(u.startswith("data:image/png;base64,") for u in c.urls), c.urls
    assert page.startswith("<!DOCTYPE html>")
    return c


@pytest.mark.parametrize("kind", KINDS)
def test_report_is_self_contained_and_well_formed(tok, kind):
    clf = make_classifier(kind, tok.get_vocab_size())
    model = Explainable(clf.backbone, tok, clf, ["neg", "pos"], max_len=16, name=f"tiny-{kind}")
    task = TaskData((POS + NEG) * 2, (["pos"] * 4 + ["neg"] * 4) * 2, None, "tiny.tsv")
    page = build_report(model, ["a good film <b>&", "dull"], task=task, n_steps=8, max_examples=8)
    check_page(page)
    assert "&lt;b&gt;" in page  # user text is escaped
    assert "Token attributions toward" in page and "Linear probes per layer" in page
    assert "Most influential tokens per class" in page
    views = re.findall(r'<script type="application/json" class="hv-data">(.*?)</script>', page)
    if kind == "transformer":
        assert len(views) == 2 and "Attention rollout" in page
        data = json.loads(views[0])
        sp = special_ids(tok)
        enc = prepare_inputs(tok, ["a good film <b>&"], None, 16, sp.pad)
        w = torch.stack([a[0] for a in attention_weights(model.backbone, enc.ids, enc.mask)])
        assert data["tokens"] == enc.tokens[0]
        assert_close(torch.tensor(data["attn"]), w, atol=6e-4, rtol=0)  # rounded to 3 decimals
    else:
        assert not views and "Attention rollout" not in page
        assert "has no attention" in page


def test_report_without_classifier_and_with_pairs(tok):
    model = Explainable(make_backbone("transformer", tok.get_vocab_size()), tok, None, max_len=16, name="encoder")
    page = build_report(model, ["a good film"], text_pairs=["great fun"])
    check_page(page)
    assert "no classification head" in page or "pre-trained encoder" in page
    assert "Token attributions toward" not in page and "hv-data" in page


def test_head_view_script_runs(tok):
    """Run the head view's JS against a minimal DOM stand-in (needs node; skipped without it)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    model = Explainable(make_backbone("transformer", tok.get_vocab_size()), tok, None, max_len=16)
    page = build_report(model, ["a good film"])
    js = re.search(r"<script>(\s*function pretrainlabHeadView.*?)</script>", page, re.S).group(1)
    data = re.search(r'class="hv-data">(.*?)</script>', page).group(1)
    harness = DOM_STUB.replace("__DATA__", json.dumps(data)) + js + """
pretrainlabHeadView("headview1");
function shaded(){ return right.children.some(function(c){ return !!c.style.background; }); }
var all = strokes; left.children[1].onmouseenter(); var focused = strokes - all, shadedOnHover = shaded();
left.children[1].onmouseleave(); var before = strokes;
root.sel['.hv-head'].value = '0'; root.sel['.hv-head'].onchange(); var oneHead = strokes - before;
console.log(JSON.stringify({layers: root.sel['.hv-layer'].options.length, heads: root.sel['.hv-head'].options.length,
  tokens: left.children.length, all: all, focused: focused, oneHead: oneHead, shadedOnHover: shadedOnHover,
  shadedAfter: shaded()}));
"""
    out = subprocess.run([node, "-e", harness], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["layers"] == 2 and r["heads"] == 5 and r["tokens"] == 5  # all heads + 4; [CLS] a good film [SEP]
    # hovering a query token draws only its lines and shades the keys it attends to; leaving clears that
    assert 0 < r["focused"] < r["all"] and r["shadedOnHover"] and not r["shadedAfter"]
    assert 0 < r["oneHead"] < r["all"]  # one head selected: fewer lines than all heads


DOM_STUB = """
var strokes = 0;
function El(){ this.children=[]; this.style={}; this.options=[]; this.value=''; this.className=''; }
El.prototype.appendChild=function(c){ this.children.push(c); };
El.prototype.add=function(o){ this.options.push(o); if(this.options.length===1){ this.value=o.value; } };
El.prototype.getContext=function(){ return {setTransform:function(){}, clearRect:function(){}, beginPath:function(){},
  moveTo:function(){}, lineTo:function(){}, stroke:function(){ strokes++; }}; };
function Option(text, value){ this.text=text; this.value=value; }
var left=new El(), right=new El(), root=new El();
root.sel={'.hv-data':{textContent:__DATA__}, '.hv-layer':new El(), '.hv-head':new El(), '.hv-left':left,
  '.hv-right':right, '.hv-canvas':new El()};
root.querySelector=function(s){ return root.sel[s]; };
var window={devicePixelRatio:1};
var document={getElementById:function(){ return root; }, createElement:function(){ return new El(); }};
"""


# --------------------------------------------------------------------------- errors and the command line


def test_bad_input_gives_clear_errors(tmp_path, tok):
    with pytest.raises(ExplainError, match="empty"):
        explain(tmp_path, ["  "])
    with pytest.raises(ExplainError, match="nothing to explain"):
        explain(tmp_path, [])
    with pytest.raises(CheckpointError, match="no such model directory"):
        explain(tmp_path / "missing", ["a good film"])
    with pytest.raises(CheckpointError, match="not a pretrainlab model directory"):
        explain(tmp_path, ["a good film"])
    with pytest.raises(TaskError, match="not found"):
        read_task_file(tmp_path / "nope.tsv")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok", "label": 1}\n{oops\n')
    with pytest.raises(TaskError, match="line 2 is not valid JSON"):
        read_task_file(bad)
    cols = tmp_path / "cols.csv"
    cols.write_text("sentence,label\nhi,1\n")
    with pytest.raises(TaskError, match="no column 'text'"):
        read_task_file(cols)
    binary = tmp_path / "bin.tsv"
    binary.write_bytes(b"text\tlabel\n\xff\xfe\t1\n")
    with pytest.raises(TaskError, match="not utf-8"):
        read_task_file(binary)
    ok = tmp_path / "ok.tsv"
    ok.write_text("text\tlabel\ta good film\tpos\n".replace("\ta good", "\na good"))
    assert read_task_file(ok).labels == ["pos"]


def test_cli_prints_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "missing"), "--text", "a good film"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert main(["explain", str(tmp_path), "--text", ""]) == 2
    assert "empty" in capsys.readouterr().err


def test_explain_a_fine_tuned_model_directory(tmp_path, tok, capsys):
    """End to end through the CLI, on a directory written by runs.save_classifier."""
    from pretrainlab.runs import save_classifier
    from pretrainlab.config import DataConfig, ModelConfig, RunConfig

    cfg = RunConfig(model=ModelConfig(preset=None, style="bert", d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=16,
                                      dropout=0.0),
                    data=DataConfig(seq_len=16))
    clf = make_classifier("transformer", tok.get_vocab_size())
    meta = {"head": "bert", "pooling": "cls", "max_len": 16, "pairs": False, "segments": False}
    model_dir = save_classifier(tmp_path / "model", clf, tok, cfg, ["neg", "pos"], meta)
    task = tmp_path / "task.tsv"
    task.write_text("text\tlabel\n" + "".join(f"{t}\tpos\n" for t in POS) + "".join(f"{t}\tneg\n" for t in NEG))
    out = tmp_path / "report.html"
    code = main(["explain", str(model_dir), "--text", "a good film", "--task-file", str(task),
                 "--steps", "8", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    page = out.read_text(encoding="utf-8")
    check_page(page)
    assert "pos" in page and "hv-data" in page and "Most influential tokens per class" in page
    # the report explains the saved weights: its probabilities are the classifier's
    sp = special_ids(tok)
    enc = prepare_inputs(tok, ["a good film"], None, 16, sp.pad)
    with torch.no_grad():
        p = clf(enc.ids, enc.mask).logits.softmax(-1)[0]
    assert f"{float(p[1]):.3f}" in page
