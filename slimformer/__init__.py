"""slimformer: compress BERT-class transformers by neural architecture search.

`import slimformer` stays light (no torch): `load` imports the inference code only when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slimformer.inference import TextClassifier

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def load(path: Any, backend: str = "torch", **kwargs: Any) -> TextClassifier:
    """Load an exported model folder; see `slimformer.inference.load` for the arguments.

    Returns:
        A TextClassifier with `predict(texts) -> label names` and `predict_proba(texts)`.
    """
    from slimformer.inference import load as _load

    return _load(path, backend=backend, **kwargs)
