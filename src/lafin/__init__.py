"""lafin: landmark-guided face inpainting."""

from __future__ import annotations

__version__ = "0.1.0"
