"""Full decode of one image file, and its conversion to the model's channels and size."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

BACKGROUND = (255, 255, 255)
# A side above this is rejected before decoding, as is anything Pillow calls a decompression bomb.
MAX_SIDE = 4096
HIGH_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def inspect(payload: bytes) -> dict:
    """Decode every pixel and describe the file: width, height, mode, and why it is bad if it is.

    ``verify()`` alone passes a JPEG cut at 60 % of its bytes; only ``load()`` finds it.
    """
    info = {"width": 0, "height": 0, "mode": "", "reason": "", "detail": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(payload)) as image:
                info.update(width=image.width, height=image.height, mode=image.mode)
                if max(image.size) > MAX_SIDE:
                    info.update(reason="too-large", detail=f"{image.width}x{image.height} exceeds {MAX_SIDE} a side")
                    return info
                image.load()
                fmt = image.format
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        info.update(reason="too-large", detail=str(exc))
        return info
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        message = str(exc)
        reason = "truncated" if "truncated" in message or "premature" in message.lower() else "undecodable"
        info.update(reason=reason, detail=f"{type(exc).__name__}: {message}")
        return info
    if fmt == "JPEG" and not payload.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        info.update(reason="missing-end-marker", detail="the JPEG has no end-of-image marker (FFD9)")
    return info


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow mode to L or RGB: 16-bit scaled to 8, alpha composited on white, CMYK to RGB."""
    target = "L" if channels == 1 else "RGB"
    if image.mode in HIGH_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        scale = 1.0 if image.mode == "F" else 1 / 256
        image = Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        background = Image.new("RGBA", image.size, BACKGROUND + (255,))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert(target)


def crop_and_resize(image: Image.Image, size: int) -> Image.Image:
    """Center-crop to a square, then resize with Pillow's antialiasing Lanczos filter."""
    side = min(image.size)
    left = (image.width - side) // 2
    top = (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    if side == size:
        return square
    return square.resize((size, size), Image.Resampling.LANCZOS)


def prepare(payload: bytes | Image.Image, size: int, channels: int) -> np.ndarray:
    """Return one image as a C×H×W uint8 array."""
    image = payload if isinstance(payload, Image.Image) else Image.open(io.BytesIO(payload))
    array = np.asarray(crop_and_resize(to_mode(image, channels), size), dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)
