"""The painter: the canvas the hole is painted on, and its strokes as a full-resolution mask.

The page shows a reduced copy of the photo (:func:`preview`) under a transparent canvas of the
same size; the page's script (:data:`PAINTER_SCRIPT`) paints on it, and Inpaint sends the stroke
layer as one small PNG data URL (:data:`SEND_PAINTING`), which :func:`hole_from_painting` scales
up to the photo's size. A plain 2D canvas: painting and sending the strokes take milliseconds,
where a WebGL editor on a machine without a GPU took seconds to export and to reload each image.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

from lafin.webapp.errors import page_error

PREVIEW_SIDE = 1024  # the editor's and the before/after previews' longer side


def preview_scale(shape: tuple[int, ...], side: int) -> float:
    """The scale of :func:`preview`'s copy of an image of ``shape`` (<= 1)."""
    return min(1.0, side / max(shape[0], shape[1]))


def preview(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """A copy whose longer side is at most ``side``, and its scale (the image itself when it is
    small enough). Halved with a Gaussian (``pyrDown``) while it is over twice the size, then a
    light Gaussian and bilinear: less aliasing than INTER_AREA (1-px stripes) at a third of its
    time for a 1500-px photo (it runs on every result)."""
    h, w = image.shape[:2]
    scale = preview_scale(image.shape, side)
    if scale >= 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = image
    while min(small.shape[0] / size[1], small.shape[1] / size[0]) >= 2:
        small = cv2.pyrDown(small)
    left = size[0] / small.shape[1]  # the reduction still to do, 0.5..1
    if left < 0.95:
        small = cv2.GaussianBlur(small, (0, 0), 0.4 / left)
    return cv2.resize(small, size, interpolation=cv2.INTER_LINEAR), scale


def preview_shape(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """(h, w) of the reduced copy of an image of ``shape`` at ``scale``."""
    if scale >= 1.0:
        return (shape[0], shape[1])
    return max(1, round(shape[0] * scale)), max(1, round(shape[1] * scale))


def reduce_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` (nonzero = hole) at ``shape`` (h, w), bool: a reduced pixel is hole when any
    part of it is, so a 1-px scratch stays visible (and stays in the hole) in a reduced copy."""
    on = (np.asarray(mask) > 0).astype(np.float32)
    if on.shape == tuple(shape):
        return on > 0
    interp = cv2.INTER_AREA if on.shape[0] >= shape[0] else cv2.INTER_NEAREST
    return cv2.resize(on, (shape[1], shape[0]), interpolation=interp) > 0


def enlarge(strokes: np.ndarray, shape: tuple[int, int], smooth: bool = True) -> np.ndarray:
    """A painted layer (nonzero = painted) at the photo's ``shape``, bool; ``smooth``: the
    outline is interpolated and cut at half (smooth edges), else each pixel is repeated."""
    size = (shape[1], shape[0])
    if not smooth:
        return cv2.resize(strokes.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    big = cv2.resize((strokes > 0).astype(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR)
    return big >= 128


def _png_data_url(image: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def painter_html(jpeg: bytes, w: int, h: int, brush_size: int, painted: np.ndarray | None = None) -> str:
    """The painter's HTML: the preview (``jpeg``, ``w`` x ``h``) under a transparent canvas of
    the same size that the page's script paints on; ``painted`` (HxW, any size, nonzero = hole)
    pre-paints it."""
    mask_attr = ""
    if painted is not None:
        hole = reduce_mask(painted, (h, w))
        layer = np.zeros((h, w, 4), np.uint8)
        layer[hole] = (255, 0, 255, 255)  # BGRA magenta, the brush's colour
        mask_attr = f' data-mask="{_png_data_url(layer)}"'
    return (
        f'<div class="lafin-paint" data-w="{w}" data-h="{h}" data-brush="{int(brush_size)}"'
        f'{mask_attr} style="aspect-ratio: {w} / {h}; width: min(100%, calc(480px * {w} / '
        f'{h}));"><img alt="the photo to paint on" draggable="false" '
        f'src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode("ascii")}">'
        "<canvas></canvas></div>"
    )


def decode_painting(data_url: str | None) -> np.ndarray | None:
    """The painter's stroke layer (a PNG data URL) -> HxW uint8, 1 where painted; None when
    nothing was sent. Raises gr.Error for anything that is not a PNG data URL."""
    if not data_url:
        return None
    head, _, payload = str(data_url).partition(",")
    if head != "data:image/png;base64" or not payload:
        raise page_error("The painting did not arrive as an image: reload the page.")
    try:
        raw = np.frombuffer(base64.b64decode(payload, validate=True), np.uint8)
        layer = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    except (ValueError, cv2.error):
        layer = None
    if layer is None or layer.ndim != 3 or layer.shape[2] != 4:
        raise page_error("The painting did not arrive as an image: reload the page.")
    return (layer[..., 3] > 0).astype(np.uint8)


def hole_from_painting(
    painted: str | None, shape: tuple[int, int], scale: float, proposed: np.ndarray | None = None
) -> np.ndarray:
    """The hole at the photo's ``shape`` (HxW uint8, 1 = hole) from the painter's stroke layer
    (a PNG data URL at the preview's size, ``scale`` times the photo's; every non-transparent
    pixel is hole). Nothing sent is an empty hole.

    Args:
        proposed: the detected damage (full resolution) that was put in the painter, or None:
            where the user left its reduced copy as it was, its full-resolution outline is kept
            (a 1-px scratch is not blurred by the preview); what they erased goes, what they
            added comes in.
    """
    expected = preview_shape(shape, scale)
    strokes = decode_painting(painted)
    if strokes is None:
        return np.zeros(shape, np.uint8)
    if strokes.shape != expected:
        raise page_error(
            f"The painting ({strokes.shape[1]}x{strokes.shape[0]}) does not match "
            "the opened photo: reload the page and open the photo again."
        )
    if strokes.shape == tuple(shape):
        return strokes
    if proposed is not None and proposed.shape == tuple(shape):
        shown = reduce_mask(proposed, expected)
        added = strokes.astype(bool) & ~shown
        erased = shown & ~strokes.astype(bool)
        hole = proposed.astype(bool)
        if erased.any():
            hole &= ~enlarge(erased, shape, smooth=False)
        if added.any():
            hole |= enlarge(added, shape)
        return hole.astype(np.uint8)
    return enlarge(strokes, shape).astype(np.uint8)


PAINTER_CSS = """
#lafin-painter { min-height: 480px; }
.lafin-paint { position: relative; margin: 0 auto; touch-action: none; }
.lafin-paint img, .lafin-paint canvas { position: absolute; inset: 0; width: 100%; height: 100%;
  user-select: none; }
.lafin-paint canvas { opacity: 0.6; cursor: crosshair; }
.lafin-empty { display: flex; align-items: center; justify-content: center; height: 480px;
  border: 2px dashed #bbb; border-radius: 8px; color: #666; }
"""

EMPTY_PAINTER = (
    '<div class="lafin-empty">Open a photo (or drop one here), or click <i>Load example</i>.</div>'
)

# The painter and the keyboard (the page's <head>). Keys click the page's own buttons, so they
# do what the buttons do; typing in a field is left alone. A file dropped on the painter goes to
# "Open photos", which reads it once at full size and answers for every file it refuses.
PAINTER_SCRIPT = """
<script>
(() => {
  const P = { box: null, ctx: null, brush: 8, erase: false, strokes: [], painted: false };
  window.lafinPainter = P;
  const setup = (box) => {
    box.dataset.ready = "1";
    const canvas = box.querySelector("canvas");
    canvas.width = +box.dataset.w; canvas.height = +box.dataset.h;
    Object.assign(P, { box, canvas, ctx: canvas.getContext("2d", { willReadFrequently: true }),
                       brush: +box.dataset.brush, strokes: [], painted: !!box.dataset.mask });
    if (box.dataset.mask) {
      const m = new Image(); m.onload = () => P.ctx.drawImage(m, 0, 0); m.src = box.dataset.mask;
    }
    let last = null;
    const at = (e) => { const r = canvas.getBoundingClientRect();
      return [(e.clientX - r.left) * canvas.width / r.width,
              (e.clientY - r.top) * canvas.height / r.height]; };
    const line = (a, b) => { const c = P.ctx;
      c.globalCompositeOperation = P.erase ? "destination-out" : "source-over";
      c.strokeStyle = "#ff00ff"; c.lineWidth = 2 * P.brush; c.lineCap = "round";
      c.lineJoin = "round"; c.beginPath(); c.moveTo(a[0], a[1]); c.lineTo(b[0], b[1]);
      c.stroke(); };
    canvas.addEventListener("pointerdown", (e) => {
      P.strokes.push(P.ctx.getImageData(0, 0, canvas.width, canvas.height));
      if (P.strokes.length > 30) P.strokes.shift();
      P.painted = true;
      canvas.setPointerCapture(e.pointerId); last = at(e); line(last, last); e.preventDefault();
    });
    canvas.addEventListener("pointermove", (e) => {
      if (last) { const p = at(e); line(last, p); last = p; } });
    const stop = () => { last = null; };
    canvas.addEventListener("pointerup", stop); canvas.addEventListener("pointercancel", stop);
    P.say();
  };
  P.say = (text) => { const s = document.querySelector("#lafin-brush-info");
    if (s) s.textContent = text || `brush ${P.brush} px${P.erase ? " (eraser)" : ""}`; };
  P.mask = () => {
    if (!P.ctx || !P.box || !P.box.isConnected || !P.painted) return "";
    const d = P.ctx.getImageData(0, 0, P.canvas.width, P.canvas.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i]) return P.canvas.toDataURL("image/png");
    return "";
  };
  P.resize = (f) => { P.brush = Math.max(1, Math.min(300,
      Math.round(P.brush * f) === P.brush ? P.brush + (f > 1 ? 1 : -1) : Math.round(P.brush * f)));
    P.say(); };
  P.toggleEraser = () => { P.erase = !P.erase; P.say(); };
  P.undoStroke = () => { if (!P.strokes.length || !P.box || !P.box.isConnected) return false;
    P.ctx.putImageData(P.strokes.pop(), 0, 0); return true; };
  P.clear = () => { if (!P.ctx) return; P.strokes.push(P.ctx.getImageData(0, 0, P.canvas.width,
    P.canvas.height)); P.ctx.clearRect(0, 0, P.canvas.width, P.canvas.height); };
  new MutationObserver(() => {
    document.querySelectorAll(".lafin-paint:not([data-ready])").forEach(setup);
  }).observe(document.documentElement, { childList: true, subtree: true });

  const press = (id) => { const b = document.getElementById(id); if (b) b.click(); return !!b; };
  const typing = (el) => el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  document.addEventListener("keydown", (e) => {
    if (typing(e.target)) return;
    const mod = e.ctrlKey || e.metaKey, key = e.key.toLowerCase();
    let done = true;
    if (!mod && !e.altKey && e.key === "[") P.resize(0.8);
    else if (!mod && !e.altKey && e.key === "]") P.resize(1.25);
    else if (!mod && !e.altKey && key === "e") P.toggleEraser();
    // Ctrl+Z takes back the strokes painted since the last run first, then the runs
    else if (mod && key === "z" && !e.shiftKey) done = P.undoStroke() || press("lafin-undo");
    else if (mod && (key === "y" || (key === "z" && e.shiftKey))) done = press("lafin-redo");
    else if (mod && e.key === "Enter") done = press("lafin-inpaint");
    else done = false;
    if (done) e.preventDefault();
  }, true);
  const onPainter = (e) => e.target && e.target.closest && e.target.closest("#lafin-painter");
  document.addEventListener("dragover", (e) => { if (onPainter(e)) e.preventDefault(); }, true);
  document.addEventListener("drop", (e) => {
    if (!onPainter(e)) return;
    e.preventDefault(); e.stopPropagation();
    const input = document.querySelector("#lafin-photos input[type=file]");
    if (!input || !e.dataTransfer || !e.dataTransfer.files.length) return;
    const files = new DataTransfer();
    for (const f of e.dataTransfer.files) files.items.add(f);
    input.files = files.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }, true);
})();
</script>
"""

# the Inpaint button sends the painter's strokes in place of the hidden field's value
SEND_PAINTING = "(painted, ...rest) => [window.lafinPainter ? window.lafinPainter.mask() : '', ...rest]"
