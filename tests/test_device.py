"""The GPU and multi-GPU paths, checked on a CPU (issue #27): what a GPU host changes is patched in
(torch.cuda's answers), what runs is the real code.

- a checkpoint holding more GPU RNG states than the machine has GPUs resumes (each rank restores its own);
- the process group's backend follows train.device, and each rank finds its GPU however many it sees;
- precision=auto picks bf16 only where it is native, fp16 with a gradient scaler on older tensor-core GPUs;
  fp16 training resumes exactly (the scaler's state is in the checkpoint); TF32 for fp32 on Ampere and newer;
- the glibc allocator settings only for CPU runs;
- gradient accumulation reduces gradients across ranks on the last micro-batch only;
- a training step reads the device once (counted).
"""

import contextlib
import dataclasses
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from pretrainlab import checkpoint, distributed, loop
from pretrainlab.config import ConfigError, load_config
from pretrainlab.distributed import Dist, choose_backend
from pretrainlab.train import pretrain

from conftest import TINY, TRANSFORMER

SETTINGS = TINY + TRANSFORMER + ["train.batch_size=4", "train.eval_every=0", "train.eval_batches=1",
                                 "train.log_every=1", "train.deterministic=true", "train.lr=3e-3"]
CUDA0 = torch.device("cuda", 0)


class FakeCuda:
    """torch.cuda's answers on a host with `n` GPUs of compute capability `cc`; RNG states kept per GPU."""

    def __init__(self, monkeypatch, n=1, cc=(9, 0)):
        self.n, self.cc, self.states, self.set_calls = n, cc, {}, []
        for name in ("is_available", "device_count", "get_device_capability", "get_rng_state", "set_rng_state",
                     "current_device"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))

    def is_available(self):
        return True

    def device_count(self):
        return self.n

    def current_device(self):
        return 0

    def get_device_capability(self, device=None):
        return self.cc

    def _index(self, device):
        index = torch.device(device).index if not isinstance(device, int) else device
        index = 0 if index is None else index
        if index >= self.n:
            raise RuntimeError(f"CUDA error: invalid device ordinal {index}")
        return index

    def get_rng_state(self, device="cuda"):
        return self.states.get(self._index(device), torch.zeros(16, dtype=torch.uint8)).clone()

    def set_rng_state(self, state, device="cuda"):
        index = self._index(device)
        self.set_calls.append(index)
        self.states[index] = state.clone()


def tiny_checkpoint(tmp_path, rng):
    model = nn.Linear(2, 2)
    return checkpoint.save_checkpoint(tmp_path, model, None, None, {"step": 1}, rng=rng), model


def state(i):
    return torch.full((16,), i, dtype=torch.uint8)


# --------------------------------------------------------------------------- 1. RNG states


def test_a_checkpoint_with_more_gpu_rng_states_than_gpus_resumes(tmp_path, monkeypatch):
    """Written by the old code on an 8-GPU host (every visible GPU's state): on a 1-GPU host the one GPU
    takes its own state and nothing else is touched (it raised IndexError before)."""
    cuda = FakeCuda(monkeypatch, n=1)
    cpu = torch.get_rng_state()
    ckpt, model = tiny_checkpoint(tmp_path / "old", {"torch": cpu, **{f"cuda{i}": state(i) for i in range(8)}})
    checkpoint.load_training_state(ckpt, model, None, None, device=CUDA0)
    assert cuda.set_calls == [0] and torch.equal(cuda.states[0], state(0))
    assert torch.equal(torch.get_rng_state(), cpu)


def test_each_rank_saves_and_restores_its_own_rng_states(tmp_path, monkeypatch):
    """Per-rank states: rank r takes rank r's CPU and GPU generators, whatever GPU it trains on now; a
    rank the checkpoint has no states for keeps its GPU's own and takes rank 0's CPU state."""
    cuda = FakeCuda(monkeypatch, n=2)
    cpu = [torch.get_rng_state(), torch.Generator().manual_seed(1).get_state()]
    saved = {**checkpoint.rank_rng_states({"torch": cpu[0], "cuda": state(10)}, 0),
             **checkpoint.rank_rng_states({"torch": cpu[1], "cuda": state(11)}, 1)}
    assert set(saved) == {"torch", "rank0.cuda", "rank1.torch", "rank1.cuda"}
    ckpt, model = tiny_checkpoint(tmp_path / "new", saved)
    checkpoint.load_training_state(ckpt, model, None, None, device=CUDA0, rank=1)  # rank 1, now on GPU 0
    assert cuda.set_calls == [0] and torch.equal(cuda.states[0], state(11))
    assert torch.equal(torch.get_rng_state(), cpu[1])
    checkpoint.load_training_state(ckpt, model, None, None, device=torch.device("cuda", 1), rank=3)
    assert cuda.set_calls == [0] and torch.equal(torch.get_rng_state(), cpu[0])
    # and on the CPU a GPU run's states are left aside
    checkpoint.load_training_state(ckpt, model, None, None, device=torch.device("cpu"), rank=1)
    assert cuda.set_calls == [0]


def test_rng_states_gathered_from_every_rank_in_one_collective():
    """gather_rng_states lays each rank's states out flat and splits them back (here: one process, as a
    2-rank gather would hand them over)."""

    class TwoRanks(Dist):
        def gather(self, t):
            return torch.stack([t, t.flip(0)])

    mine = {"torch": torch.get_rng_state(), "cuda": state(5)}
    got = checkpoint.gather_rng_states(mine, TwoRanks(rank=0, world=2))
    flat = torch.cat([mine["cuda"], mine["torch"]]).flip(0)  # rank 1's row: names in sorted order, reversed
    assert torch.equal(got["torch"], mine["torch"]) and torch.equal(got["rank0.cuda"], mine["cuda"])
    assert torch.equal(got["rank1.cuda"], flat[:16]) and torch.equal(got["rank1.torch"], flat[16:])


# --------------------------------------------------------------------------- 2. backend and device per rank


def test_backend_follows_the_device_and_each_rank_finds_its_gpu():
    cpu = torch.device("cpu")
    assert choose_backend(cpu, 1, 2, n_gpus=8) == ("gloo", cpu)  # train.device=cpu on a GPU host
    assert choose_backend(torch.device("cuda"), 1, 2, n_gpus=8) == ("nccl", torch.device("cuda", 1))
    assert choose_backend(torch.device("cuda"), 3, 4, n_gpus=1) == ("nccl", CUDA0)  # one GPU shown per process
    with pytest.raises(ConfigError, match="4 processes on this node but 2 GPUs.*nproc_per_node 2"):
        choose_backend(torch.device("cuda"), 0, 4, n_gpus=2)


def test_init_under_torchrun_with_train_device_cpu_on_a_gpu_host_uses_gloo(monkeypatch):
    FakeCuda(monkeypatch, n=8)
    joined, set_device = [], []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend: joined.append(backend))
    monkeypatch.setattr(torch.cuda, "set_device", set_device.append)
    for k, v in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    d = distributed.init_from_env(loop.pick_device("cpu"))
    assert (joined, set_device, d.device, d.rank, d.world) == (["gloo"], [], torch.device("cpu"), 1, 2)
    d = distributed.init_from_env(loop.pick_device("auto"))
    assert (joined[-1], set_device, d.device) == ("nccl", [torch.device("cuda", 1)], torch.device("cuda", 1))


# --------------------------------------------------------------------------- 3. precision, 12. allocator


@pytest.mark.parametrize("cc, auto, bf16", [((9, 0), torch.bfloat16, True), ((8, 0), torch.bfloat16, True),
                                             ((7, 5), torch.float16, False), ((6, 1), None, False)])
def test_auto_precision_takes_bf16_only_where_native(monkeypatch, cc, auto, bf16):
    """H100/A100: bf16; T4 (7.5), where torch.cuda.is_bf16_supported() says yes by emulation: fp16 with
    a gradient scaler; a GPU without tensor cores: fp32."""
    FakeCuda(monkeypatch, cc=cc)
    gpu = torch.device("cuda", 0)
    assert loop.pick_dtype("auto", gpu) == auto
    assert loop.pick_dtype("fp16", gpu) == torch.float16 and loop.pick_dtype("fp32", gpu) is None
    if bf16:
        assert loop.pick_dtype("bf16", gpu) == torch.bfloat16
    else:
        with pytest.raises(ConfigError, match="no native bf16"):
            loop.pick_dtype("bf16", gpu)
    assert (loop.grad_scaler(auto, torch.device("cpu")) is not None) == (auto == torch.float16)


def test_tf32_for_fp32_training_on_ampere_and_newer_only(monkeypatch):
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        FakeCuda(monkeypatch, cc=(7, 0))
        loop.enable_tf32(torch.device("cuda", 0))
        loop.enable_tf32(torch.device("cpu"))
        assert not torch.backends.cuda.matmul.allow_tf32
        FakeCuda(monkeypatch, cc=(8, 0))
        loop.enable_tf32(torch.device("cuda", 0))
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_allocator_settings_only_for_cpu_runs(monkeypatch):
    from pretrainlab import train

    FakeCuda(monkeypatch, cc=(9, 0))
    tuned = []
    monkeypatch.setattr(train, "tune_allocator", lambda: tuned.append(1))
    tc = load_config(None, SETTINGS + ["train.device=cpu"]).train
    assert train._setup(tc, Dist())[0] == torch.device("cpu") and tuned == [1]
    tc = load_config(None, SETTINGS).train  # device auto: the GPU
    gpu = Dist(rank=0, world=2, device=CUDA0)
    assert train._setup(tc, gpu) == (CUDA0, None) and tuned == [1]  # fp32 (TINY), no allocator settings


def test_fp16_training_resumes_exactly_with_its_gradient_scaler(tiny_corpus, tmp_path):
    """fp16 autocast with a GradScaler (here on the CPU, where torch has both): the scaler's scale and
    growth count are saved, and the resumed run ends at the uninterrupted run's weights."""
    settings = ["train.precision=fp16", "train.checkpoint_every=3"]
    straight = pretrain(load_config(None, SETTINGS + settings + ["train.budget=6"]), tiny_corpus, tmp_path / "a")
    half = pretrain(load_config(None, SETTINGS + settings + ["train.budget=6"]), tiny_corpus, tmp_path / "b")
    (half / "checkpoints" / "latest").write_text("step_0000003\n")
    def scaler(run, step):
        return torch.load(run / "checkpoints" / f"step_{step:07d}" / "optimizer.pt", weights_only=True)["scaler"]

    fresh = torch.amp.GradScaler("cpu").state_dict()  # what a resumed run without the saved state would start from
    at3 = scaler(half, 3)
    assert (at3["scale"], at3["_growth_tracker"]) != (fresh["scale"], 0)  # it grew or backed off since step 0

    shutil.rmtree(half / "checkpoints" / "step_0000006")
    pretrain(load_config(None, SETTINGS + settings + ["train.budget=6"]), tiny_corpus, half, resume=True)
    assert scaler(half, 6) == scaler(straight, 6)
    a = load_file(str(straight / "checkpoints" / "step_0000006" / "model.safetensors"))
    b = load_file(str(half / "checkpoints" / "step_0000006" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


# --------------------------------------------------------------------------- 7. no_sync


class Wrapped(nn.Module):
    """A data-parallel wrapper's gradient-sync switches, recorded per forward (DDP: no_sync(); FSDP2:
    set_requires_gradient_sync)."""

    def __init__(self, kind):
        super().__init__()
        self.lin, self.kind, self.sync, self.seen = nn.Linear(4, 1), kind, True, []
        if kind == "ddp":
            self.no_sync = self._no_sync
        else:
            self.set_requires_gradient_sync = self._set

    @contextlib.contextmanager
    def _no_sync(self):
        self.sync = False
        yield
        self.sync = True

    def _set(self, on):
        self.sync = on

    def forward(self, x):
        self.seen.append(self.sync)
        return self.lin(x).pow(2).mean()


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_gradients_are_reduced_across_ranks_on_the_last_micro_batch_only(kind):
    model = Wrapped(kind)
    batches = iter([{"x": torch.randn(2, 4)} for _ in range(6)])
    for _ in range(2):
        loop.accumulate(model, lambda: next(batches), lambda m, b: (m(b["x"]), {}), 3, torch.device("cpu"), None,
                        lambda b: 2, Dist())
    assert model.seen == [False, False, True] * 2


# --------------------------------------------------------------------------- 4. host syncs per step

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "nonzero")


def count_reads(monkeypatch):
    """Patch every way Python reads a tensor's values on the host (a sync on a GPU), and boolean-mask
    indexing (a nonzero inside); -> the counter, and a switch to pause counting."""
    counts = {"n": 0, "on": True, "where": []}

    def counting(name, real):
        def read(self, *args, **kwargs):
            if counts["on"] and counts["depth"] == 0:
                counts["n"] += 1
                counts["where"].append(name)
            counts["depth"] += 1
            try:
                return real(self, *args, **kwargs)
            finally:
                counts["depth"] -= 1
        return read

    counts["depth"] = 0
    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    real_getitem = torch.Tensor.__getitem__

    def getitem(self, index):
        parts = index if isinstance(index, tuple) else (index,)
        if counts["on"] and counts["depth"] == 0 and any(torch.is_tensor(p) and p.dtype == torch.bool for p in parts):
            counts["n"] += 1
            counts["where"].append("bool index")
        counts["depth"] += 1
        try:
            return real_getitem(self, index)
        finally:
            counts["depth"] -= 1

    monkeypatch.setattr(torch.Tensor, "__getitem__", getitem)
    return counts


FAMILIES = {
    "mlm": ["model.backbone=transformer"],
    "mlm+nsp": ["objective.weights={mlm: 1.0, nsp: 1.0}"],
    "plm": ["objective.weights={plm: 1.0}"],
    "rtd": ["objective.weights={rtd: 1.0}"],
    "clm": ["model.backbone=decoder", "model.style=llama", "objective.weights={clm: 1.0}"],
    "infill+permute": ["model.backbone=encoder-decoder", "model.style=bart"],
    "span": ["model.backbone=encoder-decoder", "model.style=bart", "objective.weights={span: 1.0}"],
}
"""Every attention backbone's objectives. The RNN and the CNN are not here: they lay each packed document out
as a sequence of its own, whose lengths (an RNN's packed sequence, a CNN's row width) the host must read."""


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_training_step_reads_the_device_once(tiny_corpus, tmp_path, monkeypatch, family):
    """Outside the collator (next_batch, on the CPU before the batch moves) and the token count, a step
    reads a tensor's values on the host once: `settle`'s. Logging every step adds no read. (On a GPU,
    benchmarks/gpu_smoke.sh counts the syncs themselves, with torch.cuda.set_sync_debug_mode.)"""
    counts = count_reads(monkeypatch)
    real_accumulate, per_step = loop.accumulate, []

    def accumulate(model, next_batch, *args, **kwargs):
        def collate():
            counts["on"] = False
            try:
                return next_batch()
            finally:
                counts["on"] = True
        return real_accumulate(model, collate, *args, **kwargs)

    real_settle = loop.settle

    def settle(*args):
        agreed = real_settle(*args)
        per_step.append(counts["n"])
        counts["n"] = 0
        return agreed

    counts["on"] = False
    monkeypatch.setattr(loop, "accumulate", accumulate)
    monkeypatch.setattr(loop, "settle", settle)
    real_fit = loop.fit

    def fit(*args, hooks, **kwargs):
        def quiet_count(b):
            counts["on"] = False
            try:
                return int((b["mask"] != 0).sum())
            finally:
                counts["on"] = True

        counts["on"], counts["n"] = True, 0
        return real_fit(*args, hooks=dataclasses.replace(hooks, count_tokens=quiet_count), **kwargs)

    from pretrainlab import train

    monkeypatch.setattr(train, "fit", fit)
    pretrain(load_config(None, SETTINGS + FAMILIES[family] + ["train.budget=4", "train.checkpoint_every=0",
                                                             "train.checkpoint_minutes=0"]),
             tiny_corpus, tmp_path / "run")
    # the first count covers the step before the first settle; later ones the update, logging and the next step
    assert per_step == [1, 1, 1, 1], counts["where"]


# --------------------------------------------------------------------------- 5. batches built ahead


def test_batches_built_ahead_are_those_built_in_turn(tiny_corpus, tmp_path):
    """train.prefetch=3 (a background thread packs and masks 3 micro-batches ahead) trains to the very weights
    and losses of prefetch=0 (with gradient accumulation and dropout)."""
    settings = ["train.budget=8", "train.grad_accum=2", "train.checkpoint_every=4", "model.dropout=0.1"]
    inline = pretrain(load_config(None, SETTINGS + settings + ["train.prefetch=0"]), tiny_corpus, tmp_path / "a")
    ahead = pretrain(load_config(None, SETTINGS + settings + ["train.prefetch=3"]), tiny_corpus, tmp_path / "b")
    losses = [(tmp_path / r / "metrics.jsonl").read_text() for r in ("a", "b")]
    assert [line.split('"elapsed"')[0] for line in losses[0].splitlines()] == \
           [line.split('"elapsed"')[0] for line in losses[1].splitlines()]
    a, b = load_file(str(inline / "checkpoints" / "step_0000008" / "model.safetensors")), \
        load_file(str(ahead / "checkpoints" / "step_0000008" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("moment", ["before the draw", "inside the step"])
def test_a_run_with_batches_built_ahead_resumes_exactly(tiny_corpus, tmp_path, monkeypatch, moment):
    """Interrupted while the thread is batches ahead of the step: the checkpoint holds the position of the
    batches the steps took, not of those built, and the resumed run ends at the uninterrupted run's weights."""
    from test_train import final_weights, interrupt_at_step_5, read_checkpoint_state

    settings = SETTINGS + ["train.budget=8", "train.prefetch=3", "model.dropout=0.1"]
    straight = pretrain(load_config(None, settings), tiny_corpus, tmp_path / "straight")
    with monkeypatch.context() as m:
        saved_step = interrupt_at_step_5(m, moment)
        with pytest.raises(loop.Interrupted, match=f"at step {saved_step}; checkpoint saved"):
            pretrain(load_config(None, settings), tiny_corpus, tmp_path / "resumed")
    assert read_checkpoint_state(tmp_path / "resumed")["data"]["row"] == 4 * saved_step
    pretrain(load_config(None, settings), tiny_corpus, tmp_path / "resumed", resume=True)
    a, b = final_weights(straight), final_weights(tmp_path / "resumed")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_the_batch_thread_hands_over_in_order_pins_for_a_gpu_and_passes_errors_on(monkeypatch):
    from pretrainlab.data.prefetch import Prefetcher

    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: pinned.append(int(t)) or t)

    def make(i):
        if i == 6:
            raise ValueError("batch 6 is broken")
        return {"x": torch.tensor(i)}, {"row": i + 1}

    with Prefetcher(make, start=2, state={"row": 2}, depth=2, pin=True) as batches:
        assert [int(batches()["x"]) for _ in range(4)] == [2, 3, 4, 5] and batches.state == {"row": 6}
        with pytest.raises(ValueError, match="batch 6"):
            batches()
    assert pinned[:4] == [2, 3, 4, 5]
    inline = Prefetcher(make, start=0, state={}, depth=0)
    assert [int(inline()["x"]) for _ in range(3)] == [0, 1, 2] and inline.thread is None


# --------------------------------------------------------------------------- 6. attention without a dense bias


def packed_mask(B=3, T=12):
    """Rows of 1-3 documents and some padding: what packing makes."""
    mask = torch.zeros(B, T, dtype=torch.long)
    mask[0, :5], mask[0, 5:12] = 1, 2
    mask[1, :4], mask[1, 4:7], mask[1, 7:10] = 1, 2, 3
    mask[2, :9] = 1
    return mask


def backbones():
    from pretrainlab.backbones import build_backbone

    torch.manual_seed(0)
    common = dict(vocab_size=40, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=32, dropout=0.0)
    return {
        "bert": build_backbone("transformer", style="bert", **common),
        "modern": build_backbone("transformer", style="modern", **common),
        "llama": build_backbone("decoder", style="llama", **common),
        "gpt2": build_backbone("decoder", style="gpt2", **common),
        "bart": build_backbone("encoder-decoder", style="bart", **common),
    }


def run(model, name, ids, mask):
    if name == "bart":
        return model(ids, mask, ids, mask).decoder_hidden
    return model(ids, mask).hidden


@pytest.mark.parametrize("name", ["bert", "modern", "llama", "gpt2", "bart"])
def test_sdpa_takes_a_boolean_mask_broadcast_over_heads_and_equals_the_dense_bias(monkeypatch, name):
    """The SDPA path (GPUs, fp32 CPU inference) gets one (B, 1, T, T) boolean mask: no (B, H, T, T) float bias
    is built, forward or backward; and it computes exactly what the dense per-head bias computed."""
    from pretrainlab.backbones import transformer

    model = backbones()[name]
    model.attn_impl = "sdpa"
    ids, mask = torch.randint(5, 40, (3, 12)), packed_mask()
    real_sdpa, seen, built = torch.nn.functional.scaled_dot_product_attention, [], []

    def sdpa(q, k, v, attn_mask=None, **kw):
        seen.append((attn_mask.dtype, attn_mask.shape[1]))
        return real_sdpa(q, k, v, attn_mask=attn_mask, **kw)

    real_bias = transformer.visibility_bias
    monkeypatch.setattr(transformer, "visibility_bias", lambda *a: built.append(a) or real_bias(*a))
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa)
    out = run(model, name, ids, mask)
    out.sum().backward()
    assert built == [] and seen and set(seen) == {(torch.bool, 1)}

    def dense_sdpa(q, k, v, attn_mask=None, **kw):  # the old path: a float bias per head
        bias = real_bias(attn_mask[:, 0], q.shape[1], q.dtype)
        return real_sdpa(q, k, v, attn_mask=bias, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", dense_sdpa)
    with torch.no_grad():
        torch.testing.assert_close(run(model, name, ids, mask), out.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["bert", "modern", "llama", "gpt2", "bart"])
def test_explicit_and_sdpa_paths_agree_in_bf16_too(name):
    """The explicit path (the CPU's fast one in bf16) and SDPA give the same states on packed rows (fp32:
    tests/test_transformer.py and the others), here under bf16 autocast."""
    model = backbones()[name].eval()
    ids, mask = torch.randint(5, 40, (3, 12)), packed_mask()
    outs = {}
    for impl in ("explicit", "sdpa"):
        model.attn_impl = impl
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            outs[impl] = run(model, name, ids, mask).float()
    real = mask != 0
    torch.testing.assert_close(outs["explicit"][real], outs["sdpa"][real], rtol=0.02, atol=0.02)


def test_auto_attention_takes_the_deterministic_path_when_training_deterministically_on_a_gpu():
    """SDPA's memory-efficient backward on a GPU adds with atomics: train.deterministic trains on the explicit
    path there (exact resume); inference and non-deterministic training keep SDPA; the CPU's choice is unchanged."""
    from pretrainlab.backbones.transformer import sdpa_by_default

    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        assert not sdpa_by_default("cuda", torch.float32, training=True, dropout=0.0)
        assert sdpa_by_default("cuda", torch.float32, training=False, dropout=0.0)
        torch.use_deterministic_algorithms(False)
        assert sdpa_by_default("cuda", torch.bfloat16, training=True, dropout=0.1)
        assert sdpa_by_default("cpu", torch.float32, training=True, dropout=0.0)
        assert not sdpa_by_default("cpu", torch.bfloat16, training=False, dropout=0.0)
        assert not sdpa_by_default("cpu", torch.float32, training=True, dropout=0.1)
    finally:
        torch.use_deterministic_algorithms(before, warn_only=True)
