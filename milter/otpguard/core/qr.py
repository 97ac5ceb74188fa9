"""QR codes in pictures: the URL a phone camera would open (zxing-cpp over Pillow).

A QR code moves the link out of every URL filter's sight and onto a phone. Decoding costs
milliseconds per picture, so it runs only for mail that claims a brand (the engine asks,
after the claim is known) and only within bounds: at most analysis.qr_max_images pictures
of at most analysis.qr_max_pixels pixels each (read from the header before any pixel is
decoded; a JPEG is reduced by its decoder first). A picture over the bounds is a limit reached,
never a silent skip."""
from __future__ import annotations

import io
import warnings

from .message import Link

_JPEG_REDUCE = 8  # libjpeg can decode at 1/2, 1/4, 1/8 scale for almost nothing


def decode(data: bytes, max_pixels: int) -> tuple[list[str], str]:
    """(texts of the QR codes in the picture, a limit note or "")."""
    try:
        from PIL import Image
        import zxingcpp
    except ImportError:  # pragma: no cover - both are dependencies
        return [], "QR decoding unavailable"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own bound is below
            img = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > max_pixels:
            if img.format == "JPEG":
                scale = max(1, min(_JPEG_REDUCE, int((width * height / max_pixels) ** 0.5) + 1))
                img.draft("L", (width // scale, height // scale))
                width, height = img.size
            if width * height > max_pixels:
                return [], f"picture of {width}x{height} pixels: not decoded for QR codes (qr_max_pixels {max_pixels})"
        img.seek(0)
        img = img.convert("L")
        found = zxingcpp.read_barcodes(img, formats=(zxingcpp.BarcodeFormat.QRCode, zxingcpp.BarcodeFormat.MicroQRCode),
                                       try_rotate=False, try_downscale=True, try_invert=True)
        return [b.text for b in found if b.valid and b.text][:10], ""
    except Image.DecompressionBombError as exc:  # over Pillow's own bound (2 x 89 Mpixels): no decoding
        return [], f"picture too large for QR decoding ({exc})"[:200]
    except Exception:  # noqa: BLE001 - Pillow and zxing raise many types on hostile pictures
        return [], ""


def qr_links(images: tuple[bytes, ...], max_images: int, max_pixels: int) -> tuple[list[Link], list[str]]:
    """Links from the QR codes of the first max_images pictures; the limits reached."""
    from .urls import resolve

    links: list[Link] = []
    notes: list[str] = []
    for data in images[:max_images]:
        texts, note = decode(data, max_pixels)
        if note:
            notes.append(note)
        for text in texts:
            links.append(Link(href=resolve(text.strip()), text="", source="qr"))
    if len(images) > max_images:
        notes.append(f"{len(images)} pictures: only the first {max_images} decoded for QR codes")
    return links, notes
