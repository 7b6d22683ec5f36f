"""The encoder families slimformer can compress, and what each config must say to be mapped onto BERT.

The supernet inherits its weights from a BERT-layout encoder (post-LayerNorm blocks, absolute
learned positions, GELU FFNs). BERT, RoBERTa, DistilBERT and ELECTRA are that same computation
under other weight names (supernet/encoder_families.py renames them); a config that changes the
computation itself (relative positions, another activation, ELECTRA's factorised embeddings) is
refused here with a message that says why. Standard library only: the service checks uploads with
it in the API process, the worker and the CLI through teacher_folder.py, so all give one answer.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SUPPORTED_MODEL_TYPES", "bert_shape", "encoder_problem"]

SUPPORTED_MODEL_TYPES = ("bert", "roberta", "distilbert", "electra")
# Activations the student's FFN computes exactly (torch's erf GELU).
_GELU = ("gelu",)


def encoder_problem(config: Any) -> str | None:
    """Why a parsed config.json cannot be mapped onto the BERT layout; None when it can.

    Args:
        config: the parsed config.json (anything else is a problem too).

    Returns:
        A sentence naming the field and its value, or None.
    """
    if not isinstance(config, dict):
        return "config.json is not a JSON object"
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        return (f"model_type {model_type!r} is not supported; slimformer compresses BERT-family encoders "
                f"(model_type {', '.join(repr(t) for t in SUPPORTED_MODEL_TYPES)}: BERT, MiniLM, RoBERTa, "
                "DistilBERT, ELECTRA)")
    position = config.get("position_embedding_type", "absolute")
    if position != "absolute":
        return (f"{model_type} with position_embedding_type {position!r} is not supported: the students use "
                "absolute learned positions, so relative position embeddings cannot be inherited")
    act_key = "activation" if model_type == "distilbert" else "hidden_act"
    act = config.get(act_key, "gelu")
    if act not in _GELU:
        return (f"{model_type} with {act_key} {act!r} is not supported: the students' feed-forward layers "
                f"compute exact GELU ({act_key} 'gelu'), so other activations cannot be inherited")
    if model_type == "electra":
        emb, hidden = config.get("embedding_size", config.get("hidden_size")), config.get("hidden_size")
        if emb != hidden:
            return (f"electra with embedding_size {emb} != hidden_size {hidden} is not supported: its "
                    "embeddings are projected up to the hidden size, which the students have no layer for")
    return None


def bert_shape(config: dict[str, Any]) -> dict[str, Any]:
    """The BERT config fields (hidden_size, num_hidden_layers, ...) of a supported family's config.

    DistilBERT names them differently and has no token types; RoBERTa's first pad_token_id + 1
    positions are never used by a real token (its positions start after the padding index), so
    its table is that much shorter in the BERT layout.

    Args:
        config: a config that `encoder_problem` accepts.

    Returns:
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, vocab_size,
        max_position_embeddings, type_vocab_size, layer_norm_eps (a key missing from `config`
        is left out, so the caller's check names it).
    """
    model_type = config.get("model_type")
    if model_type == "distilbert":
        names = {"hidden_size": "dim", "num_hidden_layers": "n_layers", "num_attention_heads": "n_heads",
                 "intermediate_size": "hidden_dim", "vocab_size": "vocab_size",
                 "max_position_embeddings": "max_position_embeddings"}
        shape = {k: config[v] for k, v in names.items() if v in config}
        return {**shape, "type_vocab_size": 1, "layer_norm_eps": 1e-12}
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
            "max_position_embeddings", "type_vocab_size")
    shape = {k: config[k] for k in keys if k in config}
    shape.setdefault("type_vocab_size", 2)
    shape["layer_norm_eps"] = config.get("layer_norm_eps", 1e-12)
    if model_type == "roberta" and isinstance(shape.get("max_position_embeddings"), int):
        shape["max_position_embeddings"] -= position_offset(config)
    return shape


def position_offset(config: dict[str, Any]) -> int:
    """Rows of a RoBERTa position table before the first real position (pad_token_id + 1); 0 otherwise."""
    if config.get("model_type") != "roberta":
        return 0
    pad = config.get("pad_token_id")
    return (pad if isinstance(pad, int) else 1) + 1
