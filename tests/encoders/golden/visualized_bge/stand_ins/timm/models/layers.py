"""drop_path, to_2tuple, trunc_normal_ and Mlp, as timm defines them for inference."""

import collections.abc

import torch


def to_2tuple(x):
    if isinstance(x, collections.abc.Iterable) and not isinstance(x, str):
        return tuple(x)
    return (x, x)


def drop_path(x, drop_prob=0.0, training=False):
    if drop_prob == 0.0 or not training:
        return x
    raise NotImplementedError("training only")


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    return torch.nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


class Mlp(torch.nn.Module):
    """Placeholder; only the timm-tower path (never built here) uses it."""
