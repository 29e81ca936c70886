"""OpenCLIP-format checkpoints found, read and loaded as a transformers CLIP encoder.

A checkpoint in OpenCLIP's own format is a directory or hub repository holding
``open_clip_config.json`` and ``open_clip_model.safetensors`` (or the pickle
``open_clip_pytorch_model.bin``, read with ``torch.load(weights_only=True)`` only, and only when
the caller passes ``use_safetensors=False``). :func:`open_clip_family` is the hook
:func:`mmrag.load_encoder` calls when a source has no transformers ``config.json``: it returns the
converted ``CLIPConfig`` and the loader that builds the encoder, so the result is an ordinary
``"clip"`` :class:`~mmrag.encoders.transformers_dual.TransformersDualEncoder`.

Tokenizer, in OpenCLIP's order: the config's ``hf_tokenizer_name`` (a hub tokenizer, as OpenCLIP
loads it); otherwise OpenCLIP's default, OpenAI's CLIP BPE (lowercasing, 49,408 tokens), read from
the checkpoint's own ``vocab.json`` + ``merges.txt`` where it ships them (the LAION repositories
do) or else from :data:`OPENAI_CLIP_TOKENIZER`'s hub repository. Texts are truncated to the
config's ``context_length``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrag.encoders.open_clip.config import OpenClipConfig, parse_open_clip_config
from mmrag.encoders.open_clip.convert import check_converted, convert_state_dict, unwrap_state_dict
from mmrag.errors import ModelNotAvailableError, UnsupportedModelError

if TYPE_CHECKING:
    import torch
    from transformers import CLIPConfig

    from mmrag.encoders.base import Encoder
    from mmrag.encoders.loading import FamilyLoader, LoadRequest
    from mmrag.options import LoadOptions

__all__ = [
    "OPENAI_CLIP_TOKENIZER",
    "OPEN_CLIP_CONFIG",
    "OPEN_CLIP_PICKLE_WEIGHTS",
    "OPEN_CLIP_WEIGHTS_FILE",
    "OpenClipCheckpoint",
    "find_open_clip_checkpoint",
    "open_clip_family",
]

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS_FILE = "open_clip_model.safetensors"
OPEN_CLIP_PICKLE_WEIGHTS = "open_clip_pytorch_model.bin"
OPENAI_CLIP_TOKENIZER = "openai/clip-vit-base-patch32"
"""Hub repository whose ``vocab.json`` + ``merges.txt`` are OpenAI's CLIP BPE, OpenCLIP's default tokenizer."""


@dataclass(frozen=True)
class OpenClipCheckpoint:
    """An OpenCLIP-format checkpoint whose architecture converts to transformers' CLIP.

    Attributes:
        source: Absolute local directory or hub repository id.
        config: The parsed, checked ``open_clip_config.json``.
        options: The caller's loading options (revision, offline, safetensors).
    """

    source: str
    config: OpenClipConfig
    options: LoadOptions

    def file(self, name: str) -> Path | None:
        """One file of the checkpoint, downloaded (or found in the hub cache) if it lives on the hub.

        Args:
            name: File name inside the directory or repository.

        Returns:
            Its local path, or ``None`` when the checkpoint has no such file (or, offline, the
            cache does not hold it).

        Raises:
            ModelNotAvailableError: The hub could not be asked (network or permission errors).
        """
        return _checkpoint_file(self.source, name, self.options)

    def load_tokenizer(self) -> Any:
        """The tokenizer OpenCLIP would use, as a transformers tokenizer (see the module docs).

        Returns:
            A transformers tokenizer whose ``model_max_length`` is the context length.

        Raises:
            ModelNotAvailableError: The tokenizer is neither shipped, cached nor downloadable.
            UnsupportedModelError: The tokenizer has more tokens than the model's embedding.
        """
        from transformers import AutoTokenizer

        name = self.config.hf_tokenizer_name
        try:
            if name:
                tokenizer = AutoTokenizer.from_pretrained(
                    name, local_files_only=self.options.local_files_only, trust_remote_code=False
                )
            else:
                tokenizer = self._bpe_tokenizer()
        except OSError as exc:
            raise ModelNotAvailableError(
                f"OpenCLIP model {self.source!r} uses the tokenizer {name or OPENAI_CLIP_TOKENIZER!r} "
                f"(OpenCLIP's default is OpenAI's CLIP BPE), which is neither shipped with it, cached nor "
                f"downloadable ({exc}); download it once with `hf download {name or OPENAI_CLIP_TOKENIZER}`, or "
                "put its vocab.json and merges.txt next to open_clip_config.json"
            ) from exc
        if len(tokenizer) < 256:  # transformers builds an empty tokenizer when it finds no files
            raise ModelNotAvailableError(
                f"OpenCLIP model {self.source!r}: the tokenizer {name!r} has only {len(tokenizer)} tokens; "
                f"download it once with `hf download {name}`"
            )
        tokenizer.model_max_length = self.config.context_length
        if len(tokenizer) > self.config.vocab_size:
            raise UnsupportedModelError(
                f"OpenCLIP model {self.source!r}: its tokenizer has {len(tokenizer)} tokens but the text tower "
                f"embeds only {self.config.vocab_size} (text_cfg.vocab_size)"
            )
        return tokenizer

    def _bpe_tokenizer(self) -> Any:
        """OpenAI's CLIP BPE: the checkpoint's own ``vocab.json`` + ``merges.txt``, else the hub's copy."""
        vocab, merges = self.file("vocab.json"), self.file("merges.txt")
        if vocab is None or merges is None:
            shared = self.options.replace(revision=None)  # the revision names the model's repo, not this one
            vocab = _checkpoint_file(OPENAI_CLIP_TOKENIZER, "vocab.json", shared)
            merges = _checkpoint_file(OPENAI_CLIP_TOKENIZER, "merges.txt", shared)
        if vocab is None or merges is None:
            raise OSError(f"no vocab.json + merges.txt in {self.source!r} or (cached) in {OPENAI_CLIP_TOKENIZER!r}")
        return _bpe_tokenizer(vocab, merges)

    def load_state_dict(self) -> dict[str, torch.Tensor]:
        """The OpenCLIP weights, converted to transformers' ``CLIPModel`` names.

        Returns:
            transformers parameter name -> tensor.

        Raises:
            ModelNotAvailableError: No weights file, or only the pickle one while
                ``use_safetensors`` is on, or a pickle that needs code to load.
            UnsupportedModelError: Parameters of another architecture.
        """
        safetensors_path = self.file(OPEN_CLIP_WEIGHTS_FILE)
        if safetensors_path is not None:
            from safetensors.torch import load_file

            return convert_state_dict(unwrap_state_dict(load_file(str(safetensors_path)), self.source), self.source)
        pickle_path = None if self.options.use_safetensors else self.file(OPEN_CLIP_PICKLE_WEIGHTS)
        if pickle_path is None:
            has_pickle = self.options.use_safetensors and self.file(OPEN_CLIP_PICKLE_WEIGHTS) is not None
            raise ModelNotAvailableError(
                f"OpenCLIP model {self.source!r} has no {OPEN_CLIP_WEIGHTS_FILE}"
                + (
                    f", only the pickle {OPEN_CLIP_PICKLE_WEIGHTS}. mmrag loads safetensors only by default; if you "
                    "trust this checkpoint, pass use_safetensors=False (it is read with torch.load(weights_only=True), "
                    "which runs no code)"
                    if has_pickle
                    else f" (nor {OPEN_CLIP_PICKLE_WEIGHTS}) next to its {OPEN_CLIP_CONFIG}"
                )
            )
        return convert_state_dict(unwrap_state_dict(_load_pickle(pickle_path, self.source), self.source), self.source)


def find_open_clip_checkpoint(source: str, options: LoadOptions) -> OpenClipCheckpoint | None:
    """The OpenCLIP checkpoint at ``source``, if it is one.

    Args:
        source: Absolute local directory or hub repository id.
        options: The caller's loading options.

    Returns:
        The checkpoint, or ``None`` when ``source`` holds no ``open_clip_config.json`` (or the hub
        cannot be asked).

    Raises:
        UnsupportedModelError: It is an OpenCLIP checkpoint whose architecture does not convert.
        ModelNotAvailableError: Its ``open_clip_config.json`` is not valid JSON.
    """
    try:
        path = _checkpoint_file(source, OPEN_CLIP_CONFIG, options)
    except ModelNotAvailableError:
        return None
    if path is None:
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotAvailableError(f"cannot read OpenCLIP config {str(path)!r}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelNotAvailableError(f"OpenCLIP config {str(path)!r} is not a JSON object")
    return OpenClipCheckpoint(source, parse_open_clip_config(raw, source), options)


def open_clip_family(source: str, options: LoadOptions) -> tuple[CLIPConfig, FamilyLoader] | None:
    """The hook for :func:`mmrag.load_encoder`: the converted config and loader of an OpenCLIP checkpoint.

    Args:
        source: Absolute local directory or hub repository id (one without a usable transformers
            ``config.json``).
        options: The caller's loading options.

    Returns:
        ``(CLIPConfig, loader)``, or ``None`` when ``source`` is not an OpenCLIP checkpoint.

    Raises:
        UnsupportedModelError: An OpenCLIP architecture that does not convert.
        ModelNotAvailableError: Its tokenizer cannot be found.
    """
    checkpoint = find_open_clip_checkpoint(source, options)
    if checkpoint is None:
        return None
    tokenizer = checkpoint.load_tokenizer()
    config = checkpoint.config.clip_config(bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)
    return config, functools.partial(_load_encoder, checkpoint, tokenizer)


def _load_encoder(checkpoint: OpenClipCheckpoint, tokenizer: Any, request: LoadRequest) -> Encoder:
    from transformers import CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    from mmrag.encoders.loading import pick_dtype
    from mmrag.encoders.transformers_dual import DUAL_FAMILIES, TransformersDualEncoder

    state = checkpoint.load_state_dict()
    check_converted(state, request.config, checkpoint.source)  # type: ignore[arg-type]  # built by clip_config
    family = DUAL_FAMILIES["clip"]
    dtype = pick_dtype(request.dtype, request.device, family.gpu_dtype)
    model: Any = CLIPModel.from_pretrained(None, config=request.config, state_dict=state, dtype=dtype)
    model = model.to(request.device).eval()
    image_processor = CLIPImageProcessorPil(**checkpoint.config.image_processor_kwargs())
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)  # type: ignore[no-untyped-call]  # CLIPProcessor is unannotated
    return TransformersDualEncoder(
        model,
        processor,
        family=family,
        model_id=request.model_id,
        batch_size=request.batch_size,
        image_limits=request.image_limits,
    )


def _bpe_tokenizer(vocab_path: Path, merges_path: Path) -> Any:
    """A ``CLIPTokenizer`` (lowercasing byte-level BPE) from a ``vocab.json`` and ``merges.txt``."""
    from transformers import CLIPTokenizer

    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    lines = merges_path.read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    return CLIPTokenizer(vocab=vocab, merges=merges)  # type: ignore[arg-type]  # BPE takes (left, right) pairs


def _load_pickle(path: Path, model: str) -> dict[str, Any]:
    import pickle

    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelNotAvailableError(
            f"OpenCLIP weights {str(path)!r} of {model!r} need code to unpickle, which mmrag never runs "
            f"(torch.load(weights_only=True) refused them: {str(exc).splitlines()[0]}); convert them to "
            f"{OPEN_CLIP_WEIGHTS_FILE}"
        ) from exc
    if not isinstance(loaded, dict):
        raise UnsupportedModelError(f"OpenCLIP weights {str(path)!r} hold a {type(loaded).__name__}, not a state dict")
    return loaded


def _checkpoint_file(source: str, name: str, options: LoadOptions) -> Path | None:
    local = Path(source)
    if local.is_dir():
        path = local / name
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(source, name, revision=options.revision, local_files_only=options.local_files_only))
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None
    except Exception as exc:  # hub clients raise OSError, httpx and HTTP errors alike
        raise ModelNotAvailableError(f"cannot fetch {name} of {source!r} from the hub: {exc}") from exc
