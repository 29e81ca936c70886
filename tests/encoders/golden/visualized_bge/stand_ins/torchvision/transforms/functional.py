"""torchvision.transforms.functional, PIL path only."""

from PIL import Image


def _output_size(width, height, size):
    if isinstance(size, (list, tuple)):
        if len(size) == 2:
            return list(size)
        size = size[0]
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return [new_long, new_short] if width <= height else [new_short, new_long]


def resize(img, size, interpolation=None):
    width, height = img.size
    out_h, out_w = _output_size(width, height, size)
    if [height, width] == [out_h, out_w]:
        return img
    return img.resize((out_w, out_h), Image.BICUBIC)


def center_crop(img, size):
    th, tw = (size, size) if isinstance(size, int) else tuple(size)
    width, height = img.size
    top = round((height - th) / 2.0)
    left = round((width - tw) / 2.0)
    return img.crop((left, top, left + tw, top + th))


def pad(img, padding, fill=0):
    raise NotImplementedError("pad is not used by the validation transform")
