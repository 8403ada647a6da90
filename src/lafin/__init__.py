"""lafin: landmark-guided face inpainting (LaFIn) for CPU and GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["InferenceOptions", "InpaintResult", "LaFInModel", "__version__"]

if TYPE_CHECKING:
    from lafin.options import InferenceOptions
    from lafin.pipeline import InpaintResult, LaFInModel


def __getattr__(name: str) -> Any:
    # imported on first use, so `import lafin` (e.g. for the CLI's --version) stays fast
    if name in ("LaFInModel", "InpaintResult", "InferenceOptions"):
        from lafin import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'lafin' has no attribute {name!r}")
