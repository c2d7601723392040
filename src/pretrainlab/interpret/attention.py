"""Attention weights, attention rollout, heatmaps and an interactive head view.

    weights = attention_weights(backbone, ids, mask)   # per layer (B, H, T, T), or None (no attention)
    s2s = seq2seq_attention(backbone, ids, mask, sep)  # an encoder-decoder: encoder, decoder and cross-attention
    rollout = attention_rollout(weights)               # (B, T, T): how much token j feeds token i's top state

Rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"): average the heads,
add the identity for the residual connection, renormalise the rows, and multiply through the
layers, A_rollout = A_L ... A_2 A_1.

The head view is plain HTML + inline JS/CSS (a canvas between two token columns, one line per
query -> key pair with opacity = weight): it needs no network and no external file.
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..backbones.seq2seq import Seq2SeqTransformer, shift_right


@torch.no_grad()
def attention_weights(
    backbone: nn.Module, ids: Tensor, mask: Tensor, segment_ids: Tensor | None = None
) -> list[Tensor] | None:
    """Per-layer (B, H, T, T) attention weights the forward pass used, or None for a backbone
    without attention (RNN, CNN). Rows of real tokens sum to 1 over their own document."""
    out = backbone(ids, mask, segment_ids, output_attentions=True)
    if not out.attentions:
        return None
    return [a.detach().float() for a in out.attentions]


@dataclass
class Seq2SeqAttention:
    """An encoder-decoder's attention on one text: its three kinds, per layer, each (B, H, queries, keys)."""

    encoder: list[Tensor]
    """(B, H, S, S) the encoder's self-attention over the text."""
    decoder: list[Tensor]
    """(B, H, T, T) the decoder's causal self-attention (zero above the diagonal)."""
    cross: list[Tensor]
    """(B, H, T, S) the decoder's queries over the encoder's states."""
    decoder_ids: Tensor
    """(B, T) what the decoder read: the text shifted right behind its start token."""


@torch.no_grad()
def seq2seq_attention(backbone: Seq2SeqTransformer, ids: Tensor, mask: Tensor, eos_id: int) -> Seq2SeqAttention:
    """The attention weights of an encoder-decoder reading a text as its classifier does (and as BART's
    denoising reconstructs it): the encoder reads ids, the decoder reads ids shifted right behind its start
    token (backbone.decoder_start(eos_id): eos_id, [SEP] (BART's </s>), for bart; [PAD] for t5). Rows of real
    tokens sum to 1."""
    decoder_ids = shift_right(ids, backbone.decoder_start(eos_id), backbone.pad_id)
    out = backbone(ids, mask, decoder_ids, output_attentions=True)
    return Seq2SeqAttention([a.detach().float() for a in out.encoder_attentions],
                            [a.detach().float() for a in out.decoder_attentions],
                            [a.detach().float() for a in out.cross_attentions], decoder_ids)


def attention_rollout(attentions: list[Tensor] | Tensor, residual: bool = True) -> Tensor:
    """Rollout through the layers: (..., T, T) with row i = the share of each input token in token i.

    attentions: per layer (..., H, T, T) (a list, or one tensor with layers first).
    residual: add the identity before renormalising (the residual stream), as in the paper.
    """
    result: Tensor | None = None
    for a in attentions:
        a = a.float().mean(dim=-3)  # average the heads: (..., T, T)
        if residual:
            a = a + torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
            a = a / a.sum(dim=-1, keepdim=True)
        result = a if result is None else a @ result  # later layers on the left
    if result is None:
        raise ValueError("attention_rollout needs at least one layer of attention weights")
    return result


# --------------------------------------------------------------------------- static heatmaps


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_attention_heads(weights: Tensor, tokens: list[str], title: str = "",
                         key_tokens: list[str] | None = None) -> bytes:
    """PNG of a grid of heatmaps: one row per layer, one column per head. weights: (L, H, T, S), with
    `tokens` the T queries and `key_tokens` the S keys (default: the queries, a self-attention).

    Token labels go on the outer axes only (the grid shares them), which keeps drawing fast.
    """
    key_tokens = tokens if key_tokens is None else key_tokens
    plt = _pyplot()
    from matplotlib.colors import PowerNorm

    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)  # square-root scale: small weights stay visible
    w = torch.as_tensor(weights).float().cpu().numpy()
    L, H, T, S = w.shape
    cell = max(1.6, min(3.0, 0.07 * max(T, S) + 1.0))
    margin = 0.9 if max(T, S) <= 40 else 0.3  # room for the token labels
    fig_w, fig_h = cell * H + margin + 1.0, cell * L + margin + 0.4
    fig, axes = plt.subplots(L, H, figsize=(fig_w, fig_h), squeeze=False, sharex=True, sharey=True)
    fig.subplots_adjust(left=margin / fig_w, bottom=margin / fig_h, right=1 - 1.0 / fig_w, top=1 - 0.4 / fig_h,
                        wspace=0.08, hspace=0.25)
    for layer in range(L):
        for head in range(H):
            ax = axes[layer][head]
            im = ax.imshow(w[layer, head], cmap="viridis", norm=norm, interpolation="nearest")
            ax.set_title(f"layer {layer + 1} head {head + 1}", fontsize=8)
            ax.tick_params(length=0, labelsize=6)
            ax.tick_params(axis="x", labelrotation=90)
    ax0 = axes[-1][0]
    if max(T, S) <= 40:
        ax0.set_xticks(range(S), key_tokens)
        ax0.set_yticks(range(T), tokens)
    else:
        ax0.set_xticks([])
        ax0.set_yticks([])
    cax = fig.add_axes((1 - 0.8 / fig_w, bottom := margin / fig_h, 0.15 / fig_w, 1 - 0.4 / fig_h - bottom))
    fig.colorbar(im, cax=cax, label="attention weight (square-root scale)")
    fig.text(0.01, 0.5 + bottom / 2, "query (attending)", rotation=90, va="center", fontsize=8)
    fig.text(0.5, 0.005, "key (attended to)", ha="center", va="bottom", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _png(fig)


def plot_rollout(rollout: Tensor, tokens: list[str], title: str = "attention rollout") -> bytes:
    """PNG heatmap of a (T, T) rollout matrix."""
    plt = _pyplot()
    r = torch.as_tensor(rollout).float().cpu().numpy()
    T = r.shape[0]
    size = max(3.0, min(9.0, 0.25 * T + 1.5))
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(r, cmap="magma", interpolation="nearest")
    if T <= 60:
        ax.set_xticks(range(T), tokens, rotation=90, fontsize=7)
        ax.set_yticks(range(T), tokens, fontsize=7)
    ax.set_xlabel("input token")
    ax.set_ylabel("position after the last layer")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _png(fig)


# --------------------------------------------------------------------------- interactive head view


def json_for_script(obj) -> str:
    """JSON safe to embed in a <script> element: no '<', '>' or '&' that could end it early."""
    return json.dumps(obj, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


HEAD_VIEW_CSS = """
.hv{font:13px/1.2 system-ui,sans-serif;margin:8px 0 16px}
.hv-controls{margin-bottom:6px}
.hv-controls select{margin:0 10px 0 4px}
.hv-hint{color:#666;font-size:12px}
.hv-body{display:flex;align-items:flex-start}
.hv-col{display:flex;flex-direction:column}
.hv-left{text-align:right}
.hv-tok{padding:0 6px;cursor:default;white-space:pre;border-radius:3px;box-sizing:border-box;line-height:20px}
.hv-tok.hv-focus{outline:2px solid #333}
"""

HEAD_VIEW_JS = """
function pretrainlabHeadView(id){
  var root=document.getElementById(id);
  var data=JSON.parse(root.querySelector('.hv-data').textContent);
  var attn=data.attn, toks=data.tokens, L=attn.length, H=attn[0].length, T=toks.length, ROW=20, W=240;
  var layerSel=root.querySelector('.hv-layer'), headSel=root.querySelector('.hv-head');
  var left=root.querySelector('.hv-left'), right=root.querySelector('.hv-right');
  var canvas=root.querySelector('.hv-canvas'), focus=null;
  for(var l=0;l<L;l++){layerSel.add(new Option('layer '+(l+1),String(l)));}
  headSel.add(new Option('all heads','all'));
  for(var h=0;h<H;h++){headSel.add(new Option('head '+(h+1),String(h)));}
  function hue(h){return Math.round(360*h/H);}
  function column(col,side){
    var cells=[];
    toks.forEach(function(t,i){
      var d=document.createElement('div');
      d.className='hv-tok'; d.textContent=t; d.style.height=ROW+'px';
      d.onmouseenter=function(){focus={side:side,i:i};draw();};
      d.onmouseleave=function(){focus=null;draw();};
      col.appendChild(d); cells.push(d);
    });
    return cells;
  }
  var leftCells=column(left,'L'), rightCells=column(right,'R');
  function draw(){
    var l=parseInt(layerSel.value,10);
    var heads=headSel.value==='all'?attn[l].map(function(_,h){return h;}):[parseInt(headSel.value,10)];
    var dpr=window.devicePixelRatio||1;
    canvas.width=W*dpr; canvas.height=T*ROW*dpr;
    canvas.style.width=W+'px'; canvas.style.height=(T*ROW)+'px';
    var ctx=canvas.getContext('2d');
    ctx.setTransform(dpr,0,0,dpr,0,0); ctx.clearRect(0,0,W,T*ROW);
    var shade=[]; for(var k=0;k<T;k++){shade.push(0);}
    heads.forEach(function(h){
      var a=attn[l][h];
      for(var i=0;i<T;i++){
        if(focus&&focus.side==='L'&&focus.i!==i){continue;}
        for(var j=0;j<T;j++){
          if(focus&&focus.side==='R'&&focus.i!==j){continue;}
          var w=a[i][j];
          if(focus){shade[focus.side==='L'?j:i]+=w/heads.length;}
          if(w<0.01){continue;}
          ctx.strokeStyle='hsla('+hue(h)+',70%,42%,'+Math.min(1,w)+')';
          ctx.lineWidth=focus?2:1.5;
          ctx.beginPath(); ctx.moveTo(2,(i+0.5)*ROW); ctx.lineTo(W-2,(j+0.5)*ROW); ctx.stroke();
        }
      }
    });
    var c=heads.length===1?hue(heads[0]):210;
    function paint(cells,side){
      cells.forEach(function(d,i){
        var isFocus=focus&&focus.side===side&&focus.i===i;
        d.className=isFocus?'hv-tok hv-focus':'hv-tok';
        var s=focus&&focus.side!==side?Math.min(1,shade[i]):0;
        d.style.background=s>0?'hsla('+c+',70%,50%,'+s+')':'';
      });
    }
    paint(leftCells,'L'); paint(rightCells,'R');
  }
  layerSel.onchange=draw; headSel.onchange=draw; draw();
}
"""


def head_view_html(weights: Tensor, tokens: list[str], view_id: str, title: str = "") -> str:
    """HTML fragment: the interactive head view of (L, H, T, T) weights over `tokens`.

    Needs HEAD_VIEW_CSS and HEAD_VIEW_JS once on the page (the report adds them); `view_id`
    must be unique on the page. Left column: queries; right column: keys.
    """
    w = torch.as_tensor(weights).float().cpu()
    if w.ndim != 4 or w.shape[-1] != len(tokens) or w.shape[-2] != len(tokens):
        raise ValueError(f"weights must be (L, H, T, T) with T = {len(tokens)} tokens, got {tuple(w.shape)}")
    data = {"tokens": list(tokens), "attn": [[[[round(float(x), 3) for x in row] for row in head] for head in layer] for layer in w]}
    vid = html.escape(view_id, quote=True)
    heading = f"<div class=\"hv-title\">{html.escape(title)}</div>" if title else ""
    return (
        f"<div class=\"hv\" id=\"{vid}\">{heading}"
        "<div class=\"hv-controls\"><label>Layer<select class=\"hv-layer\"></select></label>"
        "<label>Head<select class=\"hv-head\"></select></label>"
        "<span class=\"hv-hint\">left: query tokens, right: the tokens they attend to; "
        "hover a token to focus on its lines</span></div>"
        "<div class=\"hv-body\"><div class=\"hv-col hv-left\"></div><canvas class=\"hv-canvas\"></canvas>"
        "<div class=\"hv-col hv-right\"></div></div>"
        f"<script type=\"application/json\" class=\"hv-data\">{json_for_script(data)}</script>"
        f"<script>pretrainlabHeadView({json_for_script(view_id)});</script>"
        "</div>"
    )
