import torch
from torch import nn

from pretrainlab.backbones import EncoderOutput
from pretrainlab.heads import MLMHead
from pretrainlab.models import PretrainModel
from pretrainlab.objectives.mlm import MLM, mask_tokens

SPECIAL = (0, 1, 2, 3, 4)  # pad unk cls sep mask
V = 100


def batch(B=64, T=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, T), generator=g)
    ids[:, 0], ids[:, -4] = 2, 3
    ids[:, -3:] = 0
    mask = torch.ones(B, T, dtype=torch.long)
    mask[:, -3:] = 0
    return ids, mask


def test_masking_statistics_over_many_draws():
    ids, mask = batch()
    real = (mask != 0) & (ids > 4)
    picked = 0
    kinds = torch.zeros(3)
    for s in range(40):
        g = torch.Generator().manual_seed(s)
        out, pos, labels = mask_tokens(ids, mask, SPECIAL, 4, V, 0.15, g)
        flat_in, flat_out = ids.reshape(-1), out.reshape(-1)
        assert torch.equal(flat_in[pos], labels)
        assert real.reshape(-1)[pos].all(), "special tokens or padding were picked"
        unpicked = torch.ones_like(flat_in, dtype=torch.bool)
        unpicked[pos] = False
        assert torch.equal(flat_in[unpicked], flat_out[unpicked]), "a token outside the picked ones changed"
        picked += len(pos)
        kinds[0] += (flat_out[pos] == 4).sum()
        kinds[2] += (flat_out[pos] == flat_in[pos]).sum()
        kinds[1] += ((flat_out[pos] != 4) & (flat_out[pos] != flat_in[pos])).sum()
    rate = picked / (40 * real.sum())
    assert abs(rate - 0.15) < 0.01
    share = kinds / kinds.sum()
    # random replacements can hit the original token (1/95 of them), hence the tolerance
    assert abs(share[0] - 0.8) < 0.02 and abs(share[1] - 0.1) < 0.02 and abs(share[2] - 0.1) < 0.02


def test_rate_is_configurable():
    ids, mask = batch()
    g = torch.Generator().manual_seed(0)
    _, pos, _ = mask_tokens(ids, mask, SPECIAL, 4, V, 0.4, g)
    real = ((mask != 0) & (ids > 4)).sum()
    assert abs(len(pos) / real - 0.4) < 0.02


def test_whole_word_masking_keeps_words_whole():
    ids, mask = batch(B=16, T=32)
    g = torch.Generator().manual_seed(0)
    word_starts = torch.rand(ids.shape, generator=g) < 0.4  # words of 1-several pieces
    word_starts[:, 1] = True
    for s in range(10):
        _, pos, _ = mask_tokens(ids, mask, SPECIAL, 4, V, 0.15, torch.Generator().manual_seed(s), word_starts)
        picked = torch.zeros(ids.numel(), dtype=torch.bool)
        picked[pos] = True
        picked = picked.reshape(ids.shape)
        real = (mask != 0) & (ids > 4)
        # within a word, every real piece is picked or none is
        for b in range(ids.shape[0]):
            word = torch.cumsum(word_starts[b] | ~real[b], 0)
            for w in word[real[b]].unique():
                members = picked[b][(word == w) & real[b]]
                assert members.all() or not members.any()


class Lookup(nn.Module):
    """A stand-in backbone: embeddings only, so the head's inputs are known exactly."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, 16)
        self.d_model = 16

    def get_input_embeddings(self):
        return self.emb

    def forward(self, ids, mask, segment_ids=None, output_attentions=False):
        return EncoderOutput(hidden=self.emb(ids))


def test_loss_only_at_masked_positions():
    torch.manual_seed(0)
    bb = Lookup()
    mlm = MLM(V, SPECIAL, 4, 0.15)
    model = PretrainModel(bb, {"mlm": mlm}, {"mlm": 1.0}, MLMHead(16, V, bb.get_input_embeddings()))
    ids, mask = batch(B=4, T=16)
    b = model.prepare({"input_ids": ids, "mask": mask}, torch.Generator().manual_seed(0))
    # the gradient reaches the hidden state only at the picked positions
    hidden = bb(b["input_ids"], b["mask"]).hidden.detach().requires_grad_(True)
    loss, _ = mlm.loss(model, EncoderOutput(hidden=hidden), b)
    loss.backward()
    touched = hidden.grad.abs().sum(-1).reshape(-1) != 0
    expect = torch.zeros_like(touched)
    expect[b["mlm_positions"]] = True
    assert torch.equal(touched, expect)
    # the decoder is tied to the input embedding
    assert model.lm_head.embedding.weight is bb.emb.weight


def test_word_start_table_from_offsets_keeps_words_whole_for_wordpiece_and_bpe():
    from pretrainlab.tokenizer import train_tokenizer, word_start_table

    texts = ["The unbelievably quick foxes jumped over lazy dogs repeatedly."] * 20 + \
            ["International nationalisation keeps jumping over the dogs."] * 20
    for kind in ("wordpiece", "bpe"):
        tok = train_tokenizer(texts, kind, 150)
        table = word_start_table(tok, texts)
        for text in texts[:1] + texts[-1:]:
            enc = tok.encode(text, add_special_tokens=False)
            starts = table[torch.tensor(enc.ids)]
            starts[0] = True  # a row's first real token always starts a word
            word = torch.cumsum(starts.long(), 0)
            # the table's words are exactly the tokenizer's words (from offsets)
            words = torch.tensor([w for w in enc.word_ids])
            for w in word.unique():
                assert len(words[word == w].unique()) == 1, (kind, enc.tokens)
            assert len(word.unique()) == len(words.unique()), (kind, enc.tokens)


def test_row_seeded_masks_of_a_batch_split_in_two_equal_the_whole_batch():
    """With row seeds a row's mask is the row's alone, also where a half has nothing picked: the half gets no
    token forced on it (one process of two, with a batch of short rows, did, and then trained otherwise than
    one process with the whole batch: tests/test_distributed.py)."""
    ids, mask = batch(B=8, T=8)
    seeds = torch.arange(8, dtype=torch.int64) * 7  # a draw whose second half picks nothing
    g = torch.Generator()
    whole = mask_tokens(ids, mask, SPECIAL, 4, V, 0.1, g, row_seeds=seeds)
    halves = [mask_tokens(ids[i:i + 4], mask[i:i + 4], SPECIAL, 4, V, 0.1, g, row_seeds=seeds[i:i + 4]) for i in (0, 4)]
    assert len(halves[0][1]) > 0 and len(halves[1][1]) == 0
    assert torch.equal(whole[0], torch.cat([h[0] for h in halves]))
    assert torch.equal(whole[1], torch.cat([halves[0][1], halves[1][1] + 4 * 8]))
    # without row seeds a batch still always has something to predict
    assert len(mask_tokens(ids[:1], mask[:1], SPECIAL, 4, V, 1e-9, g)[1]) == 1
