"""LoadOptions: one object for every loader; merging, validation, device and dtype parsing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import mmrag
from mmrag.errors import InvalidInputError
from mmrag.options import LoadOptions

FIELDS = (
    "device",
    "dtype",
    "batch_size",
    "revision",
    "local_files_only",
    "use_safetensors",
    "trust_remote_code",
    "image_limits",
    "image_workers",
    "fast_decode",
    "gpu_decode",
    "compile",
)


def test_defaults_are_safe() -> None:
    options = LoadOptions()
    assert options.field_names() == FIELDS
    assert (options.use_safetensors, options.trust_remote_code, options.local_files_only) == (True, False, False)
    assert (options.image_workers, options.fast_decode, options.compile) == (None, False, False)  # exact, eager
    assert options.gpu_decode is False
    assert options.describe() == {}
    assert mmrag.LoadOptions is LoadOptions


def test_merge_applies_overrides_and_keeps_the_base() -> None:
    base = LoadOptions(device="cpu", batch_size=8)
    merged = LoadOptions.merge(base, {"batch_size": 2, "local_files_only": True})
    assert (merged.device, merged.batch_size, merged.local_files_only) == ("cpu", 2, True)
    assert (base.batch_size, base.local_files_only) == (8, False)
    assert LoadOptions.merge(base, {}) is base
    assert LoadOptions.merge(None, {}) == LoadOptions()
    assert LoadOptions.merge(None, {"dtype": "fp16"}) == LoadOptions(dtype="fp16")


def test_merge_refuses_unknown_names_and_other_objects() -> None:
    with pytest.raises(TypeError) as info:
        LoadOptions.merge(None, {"devcie": "cpu", "batch": 3})
    message = str(info.value)
    assert "'batch', 'devcie'" in message and ", ".join(FIELDS) in message
    with pytest.raises(TypeError, match="options must be a mmrag.LoadOptions, got dict"):
        LoadOptions.merge({"device": "cpu"}, {})  # type: ignore[arg-type]  # the wrong type is what the test passes


def test_replace_is_a_validated_copy() -> None:
    options = LoadOptions(device="cpu")
    assert options.replace(batch_size=4) == LoadOptions(device="cpu", batch_size=4)
    assert options.replace() is options
    with pytest.raises(TypeError, match="unknown loading option"):
        options.replace(size=4)
    with pytest.raises(InvalidInputError, match="batch_size"):
        options.replace(batch_size=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.device = "cuda"  # type: ignore[misc]  # the wrong type is what the test passes


def test_split_pops_only_the_option_names() -> None:
    kwargs = {"device": "cpu", "top_n": 3, "batch_size": 4, "model": "demo"}
    assert LoadOptions.split(kwargs) == {"device": "cpu", "batch_size": 4}
    assert kwargs == {"top_n": 3, "model": "demo"}
    assert LoadOptions.split(kwargs) == {}


def test_describe_shows_non_defaults_as_json_values() -> None:
    limits = mmrag.ImageLimits(allow_local_paths=False)
    described = LoadOptions(
        device=torch.device("cuda", 1),
        dtype=torch.bfloat16,
        batch_size=16,
        revision="v2",
        use_safetensors=False,
        image_limits=limits,
    ).describe()
    assert described == {
        "device": "cuda:1",
        "dtype": "bfloat16",
        "batch_size": 16,
        "revision": "v2",
        "use_safetensors": False,
        "image_limits": repr(limits),
    }
    assert LoadOptions(dtype="FP16").describe() == {"dtype": "float16"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("float32", torch.float32),
        ("fp32", torch.float32),
        ("float", torch.float32),
        ("fp16", torch.float16),
        ("half", torch.float16),
        ("torch.float16", torch.float16),
        ("BF16", torch.bfloat16),
        (" bfloat16 ", torch.bfloat16),
        (torch.float16, torch.float16),
        (None, None),
    ],
)
def test_dtype_parsing(name, expected) -> None:
    assert LoadOptions(dtype=name).torch_dtype() == expected


def test_device_parsing() -> None:
    assert LoadOptions(device="cpu").torch_device() == torch.device("cpu")
    assert LoadOptions(device="cuda:1").torch_device() == torch.device("cuda", 1)
    assert LoadOptions(device=torch.device("cpu")).torch_device() == torch.device("cpu")
    chosen = LoadOptions().torch_device()
    assert chosen.type in {"cuda", "mps", "cpu"}
    if not torch.cuda.is_available():
        assert chosen.type != "cuda"
    with pytest.raises(InvalidInputError, match="unknown device 'gpu'"):
        LoadOptions(device="gpu").torch_device()


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"batch_size": 0}, "batch_size must be an integer of at least 1, got 0"),
        ({"batch_size": -3}, "got -3"),
        ({"batch_size": 2.5}, "got 2.5"),
        ({"batch_size": True}, "got True"),
        ({"batch_size": "8"}, "got '8'"),
        ({"dtype": "int3"}, "unknown dtype 'int3'; use one of float32, float16, bfloat16"),
        ({"dtype": 16}, "dtype must be a name such as 'float16' or a torch.dtype, got 16"),
        ({"dtype": np.float16}, "got a type"),
        ({"device": 0.5}, "device must be a device name such as 'cpu'"),
        ({"device": Path("cuda")}, "got a PosixPath"),
        ({"local_files_only": "yes"}, "local_files_only must be True or False, got 'yes'"),
        ({"use_safetensors": 1}, "use_safetensors must be True or False, got 1"),
        ({"trust_remote_code": None}, "trust_remote_code must be True or False, got None"),
        ({"revision": 3}, "revision must be a branch, tag or commit name"),
        ({"revision": ""}, "(a non-empty string), got ''"),
        ({"image_limits": {"max_bytes": 1}}, "image_limits must be a mmrag.ImageLimits, got a dict"),
        ({"batch_size": "most"}, "got 'most' (or 'auto': the largest batch that fits)"),
        ({"image_workers": -1}, "image_workers must be an integer of at least 0 (0: decode in this process), got -1"),
        ({"image_workers": 1.5}, "got 1.5"),
        ({"image_workers": False}, "got False"),
        ({"fast_decode": "yes"}, "fast_decode must be True or False, got 'yes'"),
        ({"compile": 1}, "compile must be True or False, got 1"),
    ],
)
def test_bad_values_are_named(changes, needle) -> None:
    with pytest.raises(InvalidInputError) as info:
        LoadOptions(**changes)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_integer_like_batch_sizes_become_ints() -> None:
    options = LoadOptions(batch_size=np.int64(12))
    assert options.batch_size == 12 and type(options.batch_size) is int


def test_auto_batch_size_is_accepted_and_numbers_stay_numbers() -> None:
    assert LoadOptions(batch_size="auto").batch_size == "auto"
    assert LoadOptions(batch_size=" AUTO ").batch_size == "auto"
    assert LoadOptions(batch_size="auto").batch_size_or(64) == 64  # for loaders that do not search
    assert LoadOptions().batch_size_or(32) == 32
    assert LoadOptions(batch_size=8).batch_size_or(64) == 8
    assert LoadOptions(batch_size="auto").describe() == {"batch_size": "auto"}


def test_image_pipeline_options_are_checked_and_described() -> None:
    options = LoadOptions(image_workers=np.int64(3), fast_decode=True, compile=True)
    assert options.image_workers == 3 and type(options.image_workers) is int
    assert LoadOptions(image_workers=0).image_workers == 0  # in-process
    assert options.describe() == {"image_workers": 3, "fast_decode": True, "compile": True}
    assert LoadOptions.merge(None, {"fast_decode": True}) == LoadOptions(fast_decode=True)


def test_hub_kwargs_are_what_from_pretrained_takes() -> None:
    options = LoadOptions(revision="abc123", local_files_only=True)
    assert options.hub_kwargs() == {"revision": "abc123", "local_files_only": True, "trust_remote_code": False}
