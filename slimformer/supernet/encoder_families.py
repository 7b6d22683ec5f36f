"""RoBERTa, DistilBERT and ELECTRA encoders renamed into the BERT layout the supernet inherits from.

The three compute what BERT computes (post-LayerNorm blocks, learned absolute positions, GELU), so
a weight-for-weight renaming gives a BertModel with the same outputs:
- ELECTRA (discriminator, embedding_size == hidden_size): BERT's names under `electra.`.
- RoBERTa: BERT's names under `roberta.`, but positions count from pad_token_id + 1 (padding
  tokens get the padding row), so the table is shifted by that much; on every real token the
  outputs are BERT's. One token type.
- DistilBERT: q_lin/k_lin/v_lin/out_lin, sa_layer_norm, ffn.lin1/lin2, output_layer_norm under
  `distilbert.transformer.layer.N`, and no token types: the BERT layout gets one all-zero
  token-type row, which adds nothing.
Configs that compute something else are refused before this (contracts/encoder_families.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from slimformer.contracts.encoder_families import bert_shape, encoder_problem, position_offset
from slimformer.errors import TeacherError

if TYPE_CHECKING:
    from transformers import BertModel

_PREFIX = {"bert": "bert.", "roberta": "roberta.", "distilbert": "distilbert.", "electra": "electra."}
# DistilBERT name pieces -> BERT's, inside one layer.
_DISTILBERT_LAYER = {
    "attention.q_lin.": "attention.self.query.",
    "attention.k_lin.": "attention.self.key.",
    "attention.v_lin.": "attention.self.value.",
    "attention.out_lin.": "attention.output.dense.",
    "sa_layer_norm.": "attention.output.LayerNorm.",
    "ffn.lin1.": "intermediate.dense.",
    "ffn.lin2.": "output.dense.",
    "output_layer_norm.": "output.LayerNorm.",
}


def bert_config(config: dict[str, Any]) -> Any:
    """The BertConfig of the BERT-layout copy of a supported family's encoder (exact GELU, eager attention)."""
    from transformers import BertConfig

    problem = encoder_problem(config)
    if problem:
        raise TeacherError(problem)
    shape = bert_shape(config)
    return BertConfig(**shape, hidden_act="gelu", pad_token_id=config.get("pad_token_id", 0) or 0,
                      attn_implementation="eager")


def to_bert_state(config: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A family's encoder weights under BertModel's names (no pooler), heads and buffers left out.

    Args:
        config: the parsed config.json (its model_type says how to rename).
        state: the weights as saved, with or without the family's prefix (a ...ForSequenceClassification
            or a bare ...Model folder).

    Returns:
        A state dict that BertModel(bert_config(config), add_pooling_layer=False) loads strictly.
    """
    family = config["model_type"]
    prefix = _PREFIX[family]
    encoder = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}
    encoder = {k: v for k, v in encoder.items()
               if k.startswith(("embeddings.", "encoder.", "transformer.")) and not k.endswith("_ids")}
    if family == "distilbert":
        renamed = {}
        for key, value in encoder.items():
            if key.startswith("transformer.layer."):
                key = "encoder.layer." + key[len("transformer.layer."):]
                for old, new in _DISTILBERT_LAYER.items():
                    key = key.replace(old, new)
            renamed[key] = value
        table = renamed["embeddings.word_embeddings.weight"]
        renamed["embeddings.token_type_embeddings.weight"] = torch.zeros(1, table.shape[1], dtype=table.dtype)
        return renamed
    if family == "roberta":
        key = "embeddings.position_embeddings.weight"
        encoder[key] = encoder[key][position_offset(config):]
    return encoder


def load_bert_layout(config: dict[str, Any], file: Path) -> BertModel:
    """The encoder of a checked teacher folder as a BertModel (no pooler), eval mode.

    Args:
        config: the folder's parsed config.json.
        file: its weights file (model.safetensors or pytorch_model.bin).

    Raises:
        TeacherError: the weights do not fit config.json.
    """
    from transformers import BertModel

    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
        model = BertModel(bert_config(config), add_pooling_layer=False)
        model.load_state_dict(to_bert_state(config, state), strict=True)
    except TeacherError:
        raise
    except Exception as exc:
        raise TeacherError(
            f"teacher weights {file} cannot be read as a {config.get('model_type')} encoder "
            f"({type(exc).__name__}: {str(exc)[:300]})"
        ) from exc
    return model.eval()
