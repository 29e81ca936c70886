"""Stand-in: FrozenBatchNorm2d is only used by ResNet towers visual_bge never builds."""

import torch


class FrozenBatchNorm2d(torch.nn.Module):
    """Placeholder; never instantiated by the EVA02 path."""
