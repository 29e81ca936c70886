"""torchvision.transforms, the validation-path classes only (PIL input)."""

import enum

import numpy as np
import torch

from . import functional


class InterpolationMode(enum.Enum):
    BICUBIC = "bicubic"


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img


class Resize:
    def __init__(self, size, interpolation=InterpolationMode.BICUBIC):
        assert interpolation == InterpolationMode.BICUBIC
        self.size = size

    def __call__(self, img):
        return functional.resize(img, self.size)


class CenterCrop:
    def __init__(self, size):
        self.size = size

    def __call__(self, img):
        return functional.center_crop(img, self.size)


class ToTensor:
    def __call__(self, img):
        array = np.asarray(img, dtype=np.uint8).copy()
        return torch.from_numpy(array).permute(2, 0, 1).contiguous().float().div(255)


class Normalize:
    def __init__(self, mean, std):
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, tensor):
        return (tensor - self.mean) / self.std


class RandomResizedCrop:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, img):
        raise NotImplementedError("training transform")
