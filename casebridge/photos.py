"""Photos people attach to cases: taken only if Pillow reads them as a JPEG, PNG or WebP image
(whatever the file's name or declared type says), bounded in bytes and pixels, turned upright,
re-encoded from their pixels alone — so EXIF (GPS position, camera, owner), ICC, XMP and
comments are gone — and given a thumbnail. All of it happens before anything is stored.

Decoding runs in a worker thread, one photo at a time per process (`PhotoDesk`), so a burst of
uploads never takes the CPU the alarms need.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

from casebridge.errors import PhotoError

__all__ = ["ACCEPTED", "MAX_SIDE", "THUMB_SIDE", "Photo", "PhotoDesk", "prepare_photo"]

# Our own limit (`max_pixels`, read from the header before anything is decoded) refuses what
# Pillow would warn about as it opens, and a photo's broken EXIF (Pillow warns "Truncated File
# Read") is dropped with the rest of its metadata: either warning would only be log noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module="PIL.TiffImagePlugin")

#: Pillow's format → what the file was; nothing else is even tried as a decoder.
ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
#: The stored photo's longest side: plenty to read a label on a pipe, a fraction of the bytes.
MAX_SIDE = 2560
THUMB_SIDE = 320
_JPEG_QUALITY = 85


@dataclass(frozen=True)
class Photo:
    """A photo as it is stored: `data` and `thumb` carry no metadata."""

    data: bytes
    content_type: str
    width: int
    height: int
    thumb: bytes

    @property
    def extension(self) -> str:
        return ".png" if self.content_type == "image/png" else ".jpg"


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )


def _on_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _encode(image: Image.Image, *, png: bool, quality: int = _JPEG_QUALITY) -> bytes:
    """The pixels alone: Pillow would otherwise write what the image's `info` still holds
    (a JPEG comment, an ICC profile) into the new file."""
    image.info.clear()
    out = io.BytesIO()
    if png:
        image.save(out, format="PNG", compress_level=6)
    else:
        image.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1 or width * height > max_pixels:
        raise PhotoError(
            f"the image is {width}×{height} pixels; at most {max_pixels:,} are taken",
            status=413,
            code="too_many_pixels",
        )


def prepare_photo(raw: bytes, *, max_pixels: int) -> Photo:
    """The photo to store from an upload's bytes; raises `PhotoError` with the reason."""
    if not raw:
        raise PhotoError("the file is empty", status=400, code="empty")
    try:
        with Image.open(io.BytesIO(raw), formats=tuple(ACCEPTED)) as opened:
            _check_size(*opened.size, max_pixels)  # from the header: nothing decoded yet
            if opened.format == "JPEG":
                opened.draft("RGB", (MAX_SIDE, MAX_SIDE))  # decode big photos scaled down
            opened.load()
            upright = ImageOps.exif_transpose(opened)
        png = _has_alpha(upright)
        pixels = upright.convert("RGBA" if png else "RGB")
        pixels.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        thumb = _on_white(pixels) if png else pixels.copy()
        thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
        return Photo(
            data=_encode(pixels, png=png),
            content_type="image/png" if png else "image/jpeg",
            width=pixels.width,
            height=pixels.height,
            thumb=_encode(thumb, png=False, quality=80),
        )
    except PhotoError:
        raise
    except Image.DecompressionBombError:  # Pillow's own limit, checked as it opens: twice ours
        limit = min(max_pixels, 2 * (Image.MAX_IMAGE_PIXELS or 0)) or max_pixels
        raise PhotoError(
            f"the image has more than {limit:,} pixels; at most {max_pixels:,} are taken",
            status=413,
            code="too_many_pixels",
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure to decode hostile bytes is a refusal
        raise PhotoError(
            f"not a JPEG, PNG or WebP image that can be read ({type(exc).__name__})",
            status=415,
            code="not_image",
        ) from None


class PhotoDesk:
    """Prepares uploaded photos one at a time per process, off the event loop."""

    def __init__(self, *, max_pixels: int) -> None:
        self.max_pixels = max_pixels
        self._turn = asyncio.Lock()

    async def prepare(self, raw: bytes) -> Photo:
        async with self._turn:
            return await asyncio.to_thread(prepare_photo, raw, max_pixels=self.max_pixels)
