"""RNN / CNN export: `transformers` has no classes for these backbones, so the export folder carries
our own, as remote code (loading takes `trust_remote_code=True`).

    configuration_pretrainlab.py   PretrainlabConfig (model_type "pretrainlab")
    modeling_pretrainlab.py        PretrainlabModel (AutoModel), PretrainlabForSequenceClassification,
                                   PretrainlabForMaskedLM: a self-contained copy of the RNN / CNN forward
                                   pass and of our classifier / MLM heads

Both files are copied into the folder as they are here, and config.json's `auto_map` names them.
Name map (everything else keeps its name):

    backbone.X                    -> backbone.encoder.X
    Classifier.pooler / head      -> pooler / head
    MLM head dense / norm / bias  -> lm_head.dense / lm_head.norm / lm_head.bias (decoder tied to
                                     backbone.encoder.embed_tokens, as ours is)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from torch import nn

from ...errors import ExportError

FILES = ("configuration_pretrainlab.py", "modeling_pretrainlab.py")
AUTO_MAP = {
    "AutoConfig": "configuration_pretrainlab.PretrainlabConfig",
    "AutoModel": "modeling_pretrainlab.PretrainlabModel",
    "AutoModelForSequenceClassification": "modeling_pretrainlab.PretrainlabForSequenceClassification",
    "AutoModelForMaskedLM": "modeling_pretrainlab.PretrainlabForMaskedLM",
}


def config_kwargs(backbone: nn.Module) -> dict:
    """PretrainlabConfig fields read off an RNNBackbone / CNNBackbone (exact: from its modules)."""
    from ...backbones.cnn import CNNBackbone
    from ...backbones.rnn import RNNBackbone

    bb = backbone
    kw = dict(vocab_size=bb.vocab_size, d_model=bb.d_model, n_layers=bb.n_layers, dropout=bb.dropout.p,
              type_vocab_size=bb.embed_segments.num_embeddings if bb.embed_segments is not None else 0,
              pad_token_id=bb.embed_tokens.padding_idx)
    if isinstance(bb, RNNBackbone):
        return dict(kw, backbone="rnn", rnn_cell=bb.cell)
    if isinstance(bb, CNNBackbone):
        if not bb.blocks:
            raise ExportError("a CNN backbone with 0 layers has nothing to export")
        # every layer's dilation, so the export needs no cycling rule to agree with ours
        return dict(kw, backbone="cnn", kernel_size=bb.blocks[0].conv.kernel_size[1],
                    dilations=[b.conv.dilation[1] for b in bb.blocks])
    raise ExportError(f"{type(bb).__name__} is not an RNN or CNN backbone; it has no remote-code export")


def remote_model(source) -> nn.Module:
    """The remote-code transformers model holding a fine-tuned classifier's or an MLM run's weights (eval mode)."""
    from .configuration_pretrainlab import PretrainlabConfig
    from .modeling_pretrainlab import PretrainlabForMaskedLM, PretrainlabForSequenceClassification

    sd = {f"backbone.encoder.{k}": v for k, v in source.backbone.state_dict().items()}
    m = source.model
    if source.kind == "classifier":
        if source.style != "bert":
            raise ExportError(f"{source.path}: classifier head {source.style!r} has no remote-code counterpart")
        names = source.label_names
        config = PretrainlabConfig(**config_kwargs(source.backbone), pooling=source.pooling, num_labels=len(names),
                                   id2label={i: str(x) for i, x in enumerate(names)},
                                   label2id={str(x): i for i, x in enumerate(names)})
        sd.update({"pooler.weight": m.pooler.weight, "pooler.bias": m.pooler.bias,
                   "head.weight": m.head.weight, "head.bias": m.head.bias})
        model = PretrainlabForSequenceClassification(config)
    else:
        head = m.lm_head
        if head.embedding is not source.backbone.get_input_embeddings():
            raise ExportError(f"{source.path}: its MLM head has its own output embedding "
                              "(objective.tie_embeddings=false), which the remote-code MaskedLM class does not "
                              "carry; fine-tune the run and export the classifier, or pre-train with tied embeddings")
        config = PretrainlabConfig(**config_kwargs(source.backbone))
        sd.update({"lm_head.dense.weight": head.dense.weight, "lm_head.dense.bias": head.dense.bias,
                   "lm_head.norm.weight": head.norm.weight, "lm_head.norm.bias": head.norm.bias,
                   "lm_head.bias": head.bias})
        model = PretrainlabForMaskedLM(config)
    config.auto_map = dict(AUTO_MAP)
    sd = {k: v.detach().float().contiguous() for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ExportError(f"{source.path}: the weight map is incomplete for {type(model).__name__} (missing "
                          f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}); export/remote needs updating")
    return model.eval()


def copy_remote_code(directory: str | Path) -> None:
    """Put configuration_pretrainlab.py and modeling_pretrainlab.py into an export folder."""
    here = Path(__file__).parent
    for name in FILES:
        shutil.copyfile(here / name, Path(directory) / name)
