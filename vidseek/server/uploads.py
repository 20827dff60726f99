"""Guarding uploads: a body-size limit ahead of form parsing, and safe image decoding."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from io import BytesIO
from typing import Iterator

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError

__all__ = ["UploadLimit", "DecodeSlots", "open_upload_image", "decode_upload_image"]


class UploadLimit:
    """Refuse request bodies over ``max_bytes`` before anything parses them (ASGI middleware).

    FastAPI reads a multipart form, spooling files to disk, before the endpoint runs, so the
    limit is enforced here from Content-Length (413). A body without one (chunked) is refused
    with 411: browsers and HTTP clients send it for uploads, and uvicorn never reads past it.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            declared = dict(scope["headers"]).get(b"content-length")
            refusal = None
            if declared is None:
                refusal = JSONResponse({"error": "a Content-Length header is required"}, status_code=411)
            elif not declared.isdigit() or int(declared) > self.max_bytes:
                refusal = JSONResponse({"error": f"request body larger than the limit of "
                                                 f"{self.max_bytes} bytes"}, status_code=413)
            if refusal is not None:
                return await refusal(scope, receive, send)
        await self.app(scope, receive, send)


class DecodeSlots:
    """At most ``count`` uploaded images decoded at once, each held until its search ends.

    A decoded picture takes ~8 bytes a pixel (decoded, then converted to RGB), and freed
    memory is seldom handed back to the system: bounding the pictures alive bounds the
    server's memory. A request waits ``wait_seconds`` for a slot, then gets 503.
    """

    def __init__(self, count: int, wait_seconds: float = 10.0) -> None:
        self._slots = threading.BoundedSemaphore(count)
        self.wait_seconds = wait_seconds

    def acquire(self, timeout: float | None = None) -> bool:
        return self._slots.acquire(timeout=timeout)

    def release(self) -> None:
        self._slots.release()

    @contextmanager
    def held(self) -> Iterator[None]:
        if not self.acquire(timeout=self.wait_seconds):
            raise HTTPException(503, "busy: other uploaded images are being decoded; try again shortly",
                                headers={"Retry-After": "5"})
        try:
            yield
        finally:
            self.release()


_UNREADABLE = "image: not an image file this server can read (JPEG, PNG, WebP, ...)"


def open_upload_image(data: bytes, max_pixels: int) -> Image.Image:
    """The uploaded image, opened but not decoded (Pillow reads only the header here):
    413 if it has more than ``max_pixels`` pixels, 422 if it is not an image."""
    try:
        opened = Image.open(BytesIO(data))
    except Image.DecompressionBombError:  # Pillow's own limit (~179 MP), far above ours
        raise HTTPException(413, f"image: more pixels than the {max_pixels} allowed")
    except (UnidentifiedImageError, OSError, ValueError):
        raise HTTPException(422, _UNREADABLE)
    if opened.width * opened.height > max_pixels:
        opened.close()
        raise HTTPException(413, f"image: {opened.width}x{opened.height} pixels is more than "
                                 f"the {max_pixels} allowed")
    return opened


def decode_upload_image(opened: Image.Image) -> Image.Image:
    """Decode an image from :func:`open_upload_image` to RGB (422 if its data is damaged)."""
    try:
        return opened.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise HTTPException(422, _UNREADABLE)
