"""The steps every builder shares: tower sizes, seeded weight draws with retries, a checked save.

Weights are drawn with the global torch RNG seeded per attempt (:func:`attempt_seed`) and the
caller's RNG state is restored afterwards, so building a model never changes other random draws.
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Callable
from typing import Any, TypeVar

from mmrag.testing.tokenizers import verify_tokenizer_roundtrip

__all__ = ["MAX_INIT_ATTEMPTS", "TINY_TOWER", "attempt_seed", "draw_model", "save_model", "tower"]

_Model = TypeVar("_Model")

MAX_INIT_ATTEMPTS = 50
"""How many seeded draws a tiny model gets to pass its probe check."""


def tower(hidden: int, layers: int, heads: int, intermediate: int) -> dict[str, int]:
    """Transformer tower sizes as config kwargs.

    Args:
        hidden: ``hidden_size``.
        layers: ``num_hidden_layers``.
        heads: ``num_attention_heads``.
        intermediate: ``intermediate_size``.

    Returns:
        A new dict of the four config kwargs.
    """
    return {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "intermediate_size": intermediate}  # fmt: skip  # aligned by hand


TINY_TOWER: dict[str, int] = tower(32, 2, 4, 64)
"""The tower sizes of every tiny test model: hidden 32, 2 layers, 4 heads, intermediate 64."""


def attempt_seed(seed: int, attempt: int) -> int:
    """Torch seed for init attempt ``attempt`` (0 -> ``seed``; retries never collide with other seeds).

    Args:
        seed: The seed the caller asked for.
        attempt: 0 for the first draw, then 1, 2, ...

    Returns:
        A non-negative 63-bit seed.
    """
    if attempt == 0:
        return seed
    digest = hashlib.sha256(f"mmrag-tiny:{seed}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % 2**63


def draw_model(
    make: Callable[[], _Model], reject: Callable[[_Model], str | None] | None, *, seed: int, what: str
) -> _Model:
    """Construct a model with seeded random weights, re-drawing while ``reject`` finds fault with it.

    Args:
        make: Constructs the model (its weights come from the global torch RNG).
        reject: ``None`` to take the first draw (real-size models); else returns why a draw is
            unusable (``None`` when it is fine) and may first adjust the weights in place.
        seed: Seed of the first draw; retries use :func:`attempt_seed`.
        what: The model, for the error, e.g. ``"a non-degenerate tiny clip model"``.

    Returns:
        The first accepted model; the caller's torch RNG state is restored.

    Raises:
        RuntimeError: No draw out of :data:`MAX_INIT_ATTEMPTS` was accepted.
    """
    import torch

    rng_state = torch.random.get_rng_state()
    reason = ""
    try:
        for attempt in range(MAX_INIT_ATTEMPTS if reject is not None else 1):
            torch.manual_seed(attempt_seed(seed, attempt))
            model = make()
            if reject is None:
                return model
            problem = reject(model)
            if problem is None:
                return model
            reason = problem
    finally:
        torch.random.set_rng_state(rng_state)
    raise RuntimeError(f"could not draw {what} ({reason})")


def save_model(model: Any, processor: Any, tokenizer: Any, out: pathlib.Path) -> pathlib.Path:
    """Save ``model`` (as safetensors) and ``processor`` to ``out`` and check the tokenizer reloads the same.

    Args:
        model: A transformers model (put in eval mode).
        processor: Its processor or tokenizer (whatever ``AutoProcessor`` should load).
        tokenizer: The tokenizer inside ``processor`` (or ``processor`` itself).
        out: An existing directory.

    Returns:
        ``out``.

    Raises:
        RuntimeError: The weights were not saved as safetensors, or the tokenizer does not
            reload identically (see :func:`~mmrag.testing.tokenizers.verify_tokenizer_roundtrip`).
    """
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    if not (out / "model.safetensors").exists() and not (out / "model.safetensors.index.json").exists():
        raise RuntimeError(f"model was not saved as safetensors in {out}")
    verify_tokenizer_roundtrip(tokenizer, out)
    return out
