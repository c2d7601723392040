"""Frozen features + logistic regression on N MR labels, scored on MR validation (recipe choice only)."""
import sys, numpy as np, torch
from dataclasses import replace
from pretrainlab.config import load_config
from pretrainlab.data.tasks import task_from_config
from pretrainlab.data.encoding import collate, encode_split
from pretrainlab.interpret.probes import layer_features
from pretrainlab.runs import load_pretrained
from pretrainlab.backbones import backbone_from_config
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
torch.set_num_threads(1)
run, n = sys.argv[1], int(sys.argv[2])
pre = load_pretrained(run)
task = task_from_config(load_config(None, ["finetune.task=mr"]).finetune)
rng = np.random.default_rng(0)
tr = task.train.subset(np.sort(rng.permutation(len(task.train))[:n]))
for init in ("pretrained", "random"):
    bb = pre.backbone if init == "pretrained" else backbone_from_config(pre.config.model, pre.tokenizer.get_vocab_size(), pad_id=pre.special.pad)
    bb.eval()
    feats = []
    with torch.inference_mode():
        for split in (tr, task.validation):
            enc = encode_split(pre.tokenizer, split, 64)
            b = collate(enc, list(range(len(enc))), pre.special.pad, False)
            f, _ = layer_features(bb, b["input_ids"], b["mask"], None, 128)
            feats.append(f)
    res = []
    for X_tr, X_va in zip(*feats):
        best = 0
        for C in (0.01, 0.1, 1.0):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)).fit(X_tr, tr.labels)
            best = max(best, clf.score(X_va, task.validation.labels))
        res.append(round(best, 4))
    print(run, n, init, "val acc per layer (best C):", res)
