"""Configuration of pretrainlab's RNN / CNN encoders for `transformers` (remote code).

This file is copied into every RNN / CNN export; `config.json` names it in `auto_map`, so
`AutoConfig.from_pretrained(DIR, trust_remote_code=True)` builds a `PretrainlabConfig`.
The fields are pretrainlab's ModelConfig fields of the same names.
"""

try:  # transformers >= 5 spells it PreTrainedConfig (PretrainedConfig stays as an alias)
    from transformers import PreTrainedConfig as _BaseConfig
except ImportError:  # transformers 4
    from transformers import PretrainedConfig as _BaseConfig


class PretrainlabConfig(_BaseConfig):
    model_type = "pretrainlab"
    attribute_map = {"hidden_size": "d_model", "num_hidden_layers": "n_layers"}

    def __init__(
        self,
        backbone: str = "rnn",
        vocab_size: int = 8192,
        d_model: int = 256,
        n_layers: int = 12,
        rnn_cell: str = "lstm",
        kernel_size: int = 5,
        dilations: list[int] | tuple[int, ...] = (1, 2, 4, 8),
        type_vocab_size: int = 2,
        dropout: float = 0.1,
        pooling: str = "cls",
        pad_token_id: int = 0,
        **kwargs,
    ):
        if backbone not in ("rnn", "cnn"):
            raise ValueError(f"PretrainlabConfig.backbone={backbone!r}; choose rnn or cnn")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"PretrainlabConfig.pooling={pooling!r}; choose cls or mean")
        self.backbone = backbone  # rnn (two LSTM/GRU stacks, one per direction) or cnn
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_layers = n_layers  # per direction for the RNN
        self.rnn_cell = rnn_cell  # rnn: lstm or gru
        self.kernel_size = kernel_size  # cnn
        self.dilations = list(dilations)  # cnn: per layer, cycled
        self.type_vocab_size = type_vocab_size  # segment (token type) ids; 0: none
        self.dropout = dropout
        self.pooling = pooling  # classifier input: the [CLS] state (cls) or the mean over real tokens
        super().__init__(pad_token_id=pad_token_id, **kwargs)
