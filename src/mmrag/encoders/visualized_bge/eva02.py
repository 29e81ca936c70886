"""A compact EVA02-CLIP vision tower in plain torch (no timm, no torchvision).

The EVA02 ViT that Visualized-BGE uses for image tokens: a patch embedding and
class token with learned absolute positions, then pre-norm blocks with 2-D
rotary position embedding on the patch tokens, sub-LayerNorm inside attention
and inside a SwiGLU MLP. Parameter names follow the original
(``patch_embed.proj``, ``blocks.N.attn.q_proj`` ...), so a checkpoint's
``model_visual.visual.*`` tensors load as they are; sizes are read from those
tensors (:meth:`Eva02Config.from_state_dict`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EVA02_HEAD_WIDTH", "Eva02Config", "Eva02VisionTower", "rotary_tables"]

EVA02_HEAD_WIDTH = 64
"""Channels per attention head in every EVA02-CLIP vision config."""

_LN_EPS = 1e-6


@dataclass(frozen=True)
class Eva02Config:
    """Sizes of an EVA02 vision tower.

    Attributes:
        image_size: Input side in pixels (square).
        patch_size: Patch side in pixels.
        width: Channels per token.
        depth: Number of blocks.
        heads: Attention heads per block.
        mlp_hidden: Hidden width of the SwiGLU MLP.
        pretrain_grid: Patch grid the rotary frequencies were trained at (16).
    """

    image_size: int
    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_hidden: int
    pretrain_grid: int = 16

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> Eva02Config:
        """Read the sizes from a tower's tensors (names without the ``model_visual.visual.`` prefix).

        Args:
            state: The tower's tensors.

        Returns:
            The config.

        Raises:
            KeyError: A tensor the tower needs is missing.
            ValueError: The tensors do not describe an EVA02 tower.
        """
        width, channels, patch, _ = state["patch_embed.proj.weight"].shape
        positions = state["pos_embed"].shape[1] - 1
        grid = math.isqrt(positions)
        if channels != 3 or grid * grid != positions or width % EVA02_HEAD_WIDTH:
            raise ValueError(f"not an EVA02 tower: width {width}, {channels} channels, {positions} patch positions")
        blocks = {int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key))}
        return cls(
            image_size=grid * patch,
            patch_size=patch,
            width=width,
            depth=len(blocks),
            heads=width // EVA02_HEAD_WIDTH,
            mlp_hidden=state["blocks.0.mlp.w1.weight"].shape[0],
        )


def rotary_tables(head_dim: int, grid: int, pretrain_grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine tables of EVA02's 2-D rotary embedding, one row per patch.

    Half the channels rotate with the patch row, half with the column; each
    frequency covers an interleaved channel pair. Positions are rescaled from
    ``grid`` to the ``pretrain_grid`` the model was trained at.

    Args:
        head_dim: Channels per head.
        grid: Patches per side.
        pretrain_grid: Patches per side at pre-training.

    Returns:
        ``(cos, sin)``, each of shape ``(grid * grid, head_dim)``, float32.
    """
    axis_dim = head_dim // 2
    inv_freq = 1.0 / (10000 ** (torch.arange(0, axis_dim, 2)[: axis_dim // 2].float() / axis_dim))
    positions = torch.arange(grid) / grid * pretrain_grid
    axis = torch.repeat_interleave(torch.outer(positions, inv_freq), 2, dim=-1)  # (grid, axis_dim)
    rows = axis[:, None, :].expand(grid, grid, axis_dim)
    cols = axis[None, :, :].expand(grid, grid, axis_dim)
    angles = torch.cat([rows, cols], dim=-1).reshape(grid * grid, head_dim)
    return angles.cos(), angles.sin()


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


class _Attention(nn.Module):
    def __init__(self, config: Eva02Config) -> None:
        super().__init__()
        self.heads = config.heads
        self.q_proj = nn.Linear(config.width, config.width, bias=False)
        self.k_proj = nn.Linear(config.width, config.width, bias=False)
        self.v_proj = nn.Linear(config.width, config.width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(config.width))
        self.v_bias = nn.Parameter(torch.zeros(config.width))
        self.inner_attn_ln = nn.LayerNorm(config.width, eps=_LN_EPS)
        self.proj = nn.Linear(config.width, config.width)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q = F.linear(x, self.q_proj.weight, self.q_bias).view(batch, tokens, self.heads, -1).transpose(1, 2)
        k = self.k_proj(x).view(batch, tokens, self.heads, -1).transpose(1, 2)
        v = F.linear(x, self.v_proj.weight, self.v_bias).view(batch, tokens, self.heads, -1).transpose(1, 2)
        q = torch.cat([q[:, :, :1], q[:, :, 1:] * cos + _rotate_pairs(q[:, :, 1:]) * sin], dim=2).type_as(v)
        k = torch.cat([k[:, :, :1], k[:, :, 1:] * cos + _rotate_pairs(k[:, :, 1:]) * sin], dim=2).type_as(v)
        out = F.scaled_dot_product_attention(q, k, v, scale=q.shape[-1] ** -0.5)
        projected: torch.Tensor = self.proj(self.inner_attn_ln(out.transpose(1, 2).reshape(batch, tokens, width)))
        return projected


class _SwiGLU(nn.Module):
    def __init__(self, config: Eva02Config) -> None:
        super().__init__()
        self.w1 = nn.Linear(config.width, config.mlp_hidden)
        self.w2 = nn.Linear(config.width, config.mlp_hidden)
        self.ffn_ln = nn.LayerNorm(config.mlp_hidden, eps=_LN_EPS)
        self.w3 = nn.Linear(config.mlp_hidden, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))
        return out


class _Block(nn.Module):
    def __init__(self, config: Eva02Config) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width, eps=_LN_EPS)
        self.attn = _Attention(config)
        self.norm2 = nn.LayerNorm(config.width, eps=_LN_EPS)
        self.mlp = _SwiGLU(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)
        out: torch.Tensor = x + self.mlp(self.norm2(x))
        return out


class _PatchEmbed(nn.Module):
    def __init__(self, config: Eva02Config) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, config.width, kernel_size=config.patch_size, stride=config.patch_size)


class Eva02VisionTower(nn.Module):
    """EVA02 ViT returning every token's features (class token first), before any final norm.

    Args:
        config: The tower's sizes.
    """

    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, config: Eva02Config) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = _PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.grid * config.grid + 1, config.width))
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.depth))
        cos, sin = rotary_tables(config.width // config.heads, config.grid, config.pretrain_grid)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Encode images.

        Args:
            pixel_values: ``(n, 3, image_size, image_size)`` normalised pixels.

        Returns:
            ``(n, 1 + grid * grid, width)`` token features.
        """
        patches = self.patch_embed.proj(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1) + self.pos_embed
        cos, sin = self.cos.to(x.dtype), self.sin.to(x.dtype)
        for block in self.blocks:
            x = block(x, cos, sin)
        return x
