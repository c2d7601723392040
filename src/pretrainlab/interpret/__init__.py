"""Look inside a model: attention maps and rollout, token attributions, layer probes, one HTML report.

    attention.py     attention_weights -> (L, H, T, T); attention_rollout; heatmaps; the interactive head view
    attributions.py  integrated gradients on the input embeddings (captum), coloured tokens, per-class summary
    probes.py        a linear probe per layer on mean-pooled hidden states (frozen backbone)
    report.py        load a model directory, run all of the above, write one self-contained HTML file

Every view works on any backbone of the contract in `backbones/`: attention views need a backbone that
returns attention weights (the Transformer, the decoder); attributions need only gradients through
`get_input_embeddings()` (all of them); probes take whatever `output_hidden_states` gives.
The encoder-decoder (backbones/seq2seq.py) reads the text as its classifier does, the encoder the
text and the decoder the text shifted right: `seq2seq_attention` gives its encoder self-attention,
decoder causal self-attention and cross-attention; probes cover the encoder's layers, then the
decoder's; attributions interpolate the one embedding per token that feeds both sides.
"""

from __future__ import annotations

from ..errors import PretrainlabError


class ExplainError(PretrainlabError, ValueError):
    """An explanation that cannot be made as asked (empty text, missing optional dependency, ...)."""


from .attention import (  # noqa: E402
    Seq2SeqAttention,
    attention_rollout,
    attention_weights,
    head_view_html,
    plot_attention_heads,
    plot_rollout,
    seq2seq_attention,
)
from .attributions import (  # noqa: E402
    TokenAttribution,
    aggregate_attributions,
    attribution_html,
    integrated_gradients,
)
from .probes import ProbeResult, plot_probes, probe_layers  # noqa: E402
from .report import Explainable, build_report, explain, load_explainable, read_task_file  # noqa: E402

__all__ = [
    "ExplainError",
    "attention_weights",
    "attention_rollout",
    "Seq2SeqAttention",
    "seq2seq_attention",
    "plot_attention_heads",
    "plot_rollout",
    "head_view_html",
    "TokenAttribution",
    "integrated_gradients",
    "attribution_html",
    "aggregate_attributions",
    "ProbeResult",
    "probe_layers",
    "plot_probes",
    "Explainable",
    "load_explainable",
    "read_task_file",
    "build_report",
    "explain",
]
