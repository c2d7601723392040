"""objective.whole_word beyond mlm: rtd's generator positions and hybrid's masked positions cover whole words, picked
as mlm picks them (the same draws pick the same words); whole_word=false picks exactly what it picked before; a run
whose objectives mask no tokens refuses it (objectives/spec.py), and a saved one reads it as off."""

import numpy as np
import pytest
import torch

from pretrainlab.config import ConfigError, ObjectiveConfig, config_from_dict, load_config
from pretrainlab.objectives.hybrid import Hybrid
from pretrainlab.objectives.mlm import MLM, MaskRate, salted
from pretrainlab.objectives.spec import SWITCHES, readers

from conftest import TINY, TRANSFORMER
from test_objectives import SPECIAL, V, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

TABLE = torch.arange(V) < 60
"""By hand: tokens below 60 begin a word (the special ones too), 60 and above continue the word before them."""
IDS = torch.tensor([[2, 10, 70, 71, 11, 12, 72, 3, 2, 13, 73, 14, 15, 74, 75, 3],
                    [2, 16, 17, 76, 18, 77, 78, 79, 19, 3, 2, 20, 80, 21, 3, 0],
                    [2, 22, 81, 23, 24, 82, 25, 26, 83, 84, 3, 2, 27, 85, 3, 0],
                    [2, 28, 29, 86, 87, 30, 88, 31, 3, 2, 32, 89, 33, 3, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2],
                     [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0],
                     [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 0],
                     [1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0, 0]])
WORDS = [[10, 70, 71], [13, 73], [15, 74, 75], [17, 76], [18, 77, 78, 79], [20, 80], [22, 81], [24, 82],
         [26, 83, 84], [27, 85], [29, 86, 87], [30, 88], [32, 89]]
"""The words of more than one piece in IDS (every token id appears once): each is picked whole or not at all."""
ROWS = torch.tensor([11, 22, 33, 44])


def batch(row_seeds: bool = False) -> dict[str, torch.Tensor]:
    return {"input_ids": IDS, "mask": MASK, **({"row_seed": ROWS} if row_seeds else {})}


def picked_ids(positions: torch.Tensor) -> set[int]:
    return set(IDS.reshape(-1)[positions].tolist())


def assert_whole_words(positions: torch.Tensor) -> int:
    """Every piece of a picked word picked, none of an unpicked one -> the words of several pieces picked."""
    picked = picked_ids(positions)
    assert not picked & {0, 1, 2, 3, 4}, "a special token or padding was picked"
    whole = [w for w in WORDS if picked & set(w)]
    for w in whole:
        assert set(w) <= picked, (w, sorted(picked))
    return len(whole)


def objective(name: str, whole_word: bool, **settings):
    obj = tiny_model({name: 1.0}, whole_word=whole_word, mask_rate=0.4, **settings).objectives[name]
    obj.word_start_table = TABLE
    return obj


def positions_of(obj, b: dict, seed: int) -> torch.Tensor:
    out = obj.prepare(dict(b), torch.Generator().manual_seed(seed))
    return out["rtd_positions"] if obj.name == "rtd" else out["mntp_positions"] + 1  # hybrid: the masked tokens


def mlm_positions(seed: int, row_seeds: torch.Tensor | None = None) -> torch.Tensor:
    mlm = MLM(V, SPECIAL.all, SPECIAL.mask, MaskRate(0.4, 0.4), whole_word=True)
    mlm.word_start_table = TABLE
    b = batch() if row_seeds is None else {**batch(), "row_seed": row_seeds}
    return mlm.prepare(b, torch.Generator().manual_seed(seed))["mlm_positions"]


# --------------------------------------------------------------------------- whole words, as mlm picks them


@pytest.mark.parametrize("name", ["rtd", "hybrid"])
@pytest.mark.parametrize("row_seeds", [False, True])
def test_rtd_and_hybrid_mask_whole_words(name, row_seeds):
    obj = objective(name, True, causal_share=0.0)
    several = [assert_whole_words(positions_of(obj, batch(row_seeds), seed)) for seed in range(20)]
    assert sum(several) > 0 and min(several) < len(WORDS)  # words of several pieces were picked, and left


def test_rtd_picks_the_words_mlm_picks_from_the_same_draws():
    """Whole words at mlm's rate semantics: a word is picked by the draw at its first piece (below the rate). On the
    generator path rtd draws as mlm does; with row seeds it draws from the seeds salted 1."""
    rtd = objective("rtd", True)
    for seed in range(10):
        assert torch.equal(positions_of(rtd, batch(), seed), mlm_positions(seed)), seed
    assert torch.equal(positions_of(rtd, batch(True), 0), mlm_positions(0, salted(ROWS, 1)))


def test_hybrid_masks_the_words_mlm_masks_in_its_masked_rows():
    """causal_share 0: every row masked, and a document's first token is [CLS], which mlm never picks either, so the
    masked tokens are mlm's; 0.25: the last row is causal, the others keep mlm's words."""
    for seed in range(10):
        assert torch.equal(positions_of(objective("hybrid", True, causal_share=0.0), batch(), seed),
                           mlm_positions(seed)), seed
        quarter = objective("hybrid", True, causal_share=0.25)
        mlm = mlm_positions(seed)
        assert torch.equal(positions_of(quarter, batch(), seed), mlm[mlm < 3 * IDS.shape[1]]), seed


# --------------------------------------------------------------------------- whole_word=false: as before


BEFORE = {  # the positions the code before rtd and hybrid read objective.whole_word picked (git 9f698ef)
    ("rtd", False): [1, 4, 6, 12, 13, 17, 19, 29, 36, 37, 38, 39, 41, 49, 50, 54],
    ("rtd", True): [3, 5, 10, 11, 14, 17, 21, 22, 24, 27, 34, 39, 40, 41, 45, 50, 52, 54, 59],
    ("hybrid", False): [1, 4, 6, 12, 13, 17, 19, 29, 36, 37, 38, 39, 41],
    ("hybrid", True): [3, 10, 12, 18, 19, 21, 28, 29, 34, 35, 36, 39, 41, 44],
}


@pytest.mark.parametrize("name", ["rtd", "hybrid"])
def test_without_whole_words_rtd_and_hybrid_pick_what_they_picked_before(name):
    """The table is set (as the recipe sets it on every objective) but whole_word=false: single tokens, the same
    ones as before; a table where every token begins a word picks them too."""
    for row_seeds in (False, True):
        want = BEFORE[(name, row_seeds)]
        assert positions_of(objective(name, False, causal_share=0.25), batch(row_seeds), 7).tolist() == want
        every_token = objective(name, True, causal_share=0.25)
        every_token.word_start_table = torch.ones(V, dtype=torch.bool)
        assert positions_of(every_token, batch(row_seeds), 7).tolist() == want


def test_whole_words_without_the_table_name_what_is_missing():
    hybrid = Hybrid(V, SPECIAL.all, SPECIAL.mask, 0.4, whole_word=True)
    with pytest.raises(ValueError, match="whole-word masking needs hybrid's word_start_table"):
        hybrid.prepare(batch(), torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------- where it is refused (spec.py)


def cfg(*settings):
    return load_config(None, list(settings))


def test_whole_word_is_read_by_the_objectives_that_mask_tokens_and_refused_elsewhere():
    assert readers("whole_word") == ["mlm", "rtd", "hybrid"] and readers("mask_span") == ["mlm"]
    assert set(SWITCHES) <= set(vars(ObjectiveConfig()))
    for weights in ("{mlm: 1.0, nsp: 1.0}", "{rtd: 1.0}", "{hybrid: 1.0}", "{mlm: 0.0, rtd: 1.0}"):
        assert cfg(f"objective.weights={weights}", "objective.whole_word=true").objective.whole_word
    with pytest.raises(ConfigError) as e:
        cfg("model.backbone=decoder", "objective.whole_word=true")
    assert str(e.value) == ("objective.whole_word=true is read by objectives mlm, rtd and hybrid only, none of which "
                            "objective.weights trains (clm); drop objective.whole_word, or add one of them to "
                            "objective.weights")
    with pytest.raises(ConfigError, match=r"none of which objective.weights trains \(plm, nsp\)"):
        cfg("objective.weights={plm: 1.0, nsp: 1.0, mlm: 0.0}", "objective.whole_word=true")


def test_a_saved_run_reads_whole_word_as_its_objectives_do(capsys):
    """A clm run saved with whole_word=true (taken before it was refused; it changed nothing) loads with it off and
    a note; an rtd run keeps it (and now masks whole words when continued)."""
    clm = cfg("model.backbone=decoder").to_dict()
    clm["objective"]["whole_word"] = True
    assert config_from_dict(clm).objective.whole_word is False
    assert ("note: this run's objective.whole_word changed nothing (none of its objectives, clm, reads it): read as "
            "false") in capsys.readouterr().err
    rtd = cfg("objective.weights={rtd: 1.0}", "objective.whole_word=true").to_dict()
    assert config_from_dict(rtd).objective.whole_word is True
    assert "note:" not in capsys.readouterr().err


# --------------------------------------------------------------------------- the recipe sets the table


class TextSplit:
    """A corpus split of these texts, as _set_word_starts reads one (n_docs, doc(i))."""

    def __init__(self, tok, texts):
        self.docs = [np.asarray(tok.encode(t, add_special_tokens=False).ids) for t in texts]
        self.n_docs = len(self.docs)

    def doc(self, i):
        return self.docs[i]


@pytest.mark.parametrize("name", ["rtd", "hybrid"])
def test_a_pretrain_model_with_whole_words_gets_the_table_and_masks_the_tokenizers_words(name):
    from pretrainlab.runs import build_pretrain_model
    from pretrainlab.tokenizer import special_ids, train_tokenizer, word_start_table
    from pretrainlab.train import _set_word_starts

    texts = ["The unbelievably quick foxes jumped over lazy dogs repeatedly."] * 20 + \
            ["International nationalisation keeps jumping over the dogs."] * 20 + ["A dog jumps; foxes keep quick."] * 5
    tok = train_tokenizer(texts, "wordpiece", 100)  # small: long words in several pieces
    run = cfg(*TINY, *TRANSFORMER, f"objective.weights={{{name}: 1.0}}", "objective.whole_word=true",
              "objective.mask_rate=0.4", "objective.causal_share=0")
    model = build_pretrain_model(run, tok.get_vocab_size(), special_ids(tok))
    obj = model.objectives[name]
    assert obj.whole_word and obj.word_start_table is None
    _set_word_starts(model, tok, TextSplit(tok, texts))
    assert torch.equal(obj.word_start_table, word_start_table(tok, texts))
    enc = tok.encode(texts[0])  # [CLS] pieces [SEP]
    words = torch.tensor([-1 if w is None else w for w in enc.word_ids])
    ids = torch.tensor([enc.ids])
    assert len(words.unique()) < len(words) - 1, "some word is in several pieces"
    pieces = 0
    for seed in range(5):
        out = obj.prepare({"input_ids": ids, "mask": torch.ones_like(ids)}, torch.Generator().manual_seed(seed))
        positions = out["rtd_positions"] if name == "rtd" else out["mntp_positions"] + 1
        picked = words[positions].unique()
        assert torch.equal(torch.isin(words, picked).nonzero().squeeze(1), positions), seed  # whole words
        pieces += len(positions) - len(picked)
    assert pieces > 0, "no word of several pieces was picked"
