"""Guarding uploads: a body-size limit ahead of form parsing, and safe image decoding."""

from __future__ import annotations

from io import BytesIO

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from PIL import Image, UnidentifiedImageError

__all__ = ["UploadLimit", "read_upload_image"]


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


# Pixels an uploaded image may have (Pillow's own bomb check starts at ~89 MP).
_MAX_IMAGE_PIXELS = 40_000_000


def read_upload_image(data: bytes) -> Image.Image:
    try:
        with Image.open(BytesIO(data)) as opened:
            if opened.width * opened.height > _MAX_IMAGE_PIXELS:
                raise HTTPException(413, f"image: {opened.width}x{opened.height} pixels is more "
                                         f"than the {_MAX_IMAGE_PIXELS} allowed")
            return opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise HTTPException(422, "image: not an image file this server can read (JPEG, PNG, WebP, ...)")
