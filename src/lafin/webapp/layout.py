"""The page's components, one function per panel, top to bottom: the painter, the photo and
damage controls beside it, the status with the landmark view and the before/after slider, the
landmark editor and the downloads. Each function makes its panel inside the open ``gr.Blocks``
and returns its components in a small frozen container; :mod:`~lafin.webapp.events` wires them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lafin.landmarks import EXPRESSION_NAMES
from lafin.webapp.landmark_handlers import GROW_LABEL
from lafin.webapp.painter import EMPTY_PAINTER, PAINTER_CSS
from lafin.webapp.table import TABLE_HEADERS

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

INTRO = """\
# lafin: landmark-guided face inpainting
1. **Open a photo** (or several, or a folder's worth: step through them with *Previous*/*Next*),
   or click *Load example*. **Paint over the part to fill** with the brush (keys **[** and **]**
   change its size), or upload a mask image (white = hole).
2. Click **Inpaint** (Ctrl+Enter). The result replaces the photo in the editor: paint again and
   Inpaint to fix another spot. **Undo**/**Redo** (Ctrl+Z / Ctrl+Y) step through the results;
   drag the slider on the result to compare before and after.
   **Old photo?** *Detect damage* paints the scratches, cracks, dust and tears it finds (the
   threshold sets how much): correct them with the brush and the eraser, then Inpaint.
3. **Change the structure**: an expression button, the table, or click a point on the landmark
   view and then click where it should go. Click **Regenerate** (it grows the hole over moved
   points outside it, unless you untick the box).

Large photos and photos with several faces are handled whole: the faces the hole touches are found,
aligned, inpainted and put back (mode *auto* or *photo*). Known pixels are never changed.
"""

CSS = (
    """
#lafin-status, #lafin-edit-status { min-height: 2.5em; }
"""
    + PAINTER_CSS
)


@dataclass(frozen=True)
class PaintingPanel:
    """The painter (``painted`` receives its strokes when a run starts), its tools and the
    history buttons under it."""

    editor: gr.HTML
    painted: gr.Textbox
    brush_smaller: gr.Button
    brush_larger: gr.Button
    eraser: gr.Button
    clear: gr.Button
    undo: gr.Button
    redo: gr.Button
    rerun: gr.Button


@dataclass(frozen=True)
class DamageControls:
    """Detect damage on an old photo, and how much counts as damage."""

    detect: gr.Button
    threshold: gr.Slider


@dataclass(frozen=True)
class InputPanel:
    """Beside the painter: the photos, the mask file, the mode and the skin grain (the
    refiner's ``refiner_noise``) of Inpaint, Re-run and Regenerate, the example, the damage
    controls and the Inpaint button."""

    photos: gr.File
    previous: gr.Button
    next: gr.Button
    photo_list: gr.Dropdown
    mask_file: gr.File
    mode: gr.Radio
    grain: gr.Slider
    example: gr.Button
    damage: DamageControls
    inpaint: gr.Button


@dataclass(frozen=True)
class ResultPanel:
    """The status line of runs and photo changes, the landmark view and the before/after slider."""

    status: gr.Markdown
    view: gr.Image
    compare: gr.ImageSlider


@dataclass(frozen=True)
class LandmarkPanel:
    """The structure editor: expression presets (by name), strength, reset, a landmarks file,
    Regenerate and whether it grows the hole over moved points, the editor's own status line
    and the table."""

    presets: dict[str, gr.Button]
    strength: gr.Slider
    reset: gr.Button
    upload: gr.UploadButton
    regenerate: gr.Button
    grow_hole: gr.Checkbox
    status: gr.Markdown
    table: gr.Dataframe


@dataclass(frozen=True)
class PageLayout:
    """All of the page's panels, and the session state they work on."""

    session: gr.State
    painting: PaintingPanel
    inputs: InputPanel
    results: ResultPanel
    landmarks: LandmarkPanel
    downloads: gr.File

    @property
    def page_outputs(self) -> list[Any]:
        """What a run, undo/redo or photo change updates, in the order of ``Page.outputs()``."""
        results = self.results
        return [
            self.painting.editor,
            results.compare,
            results.view,
            self.landmarks.table,
            self.downloads,
            results.status,
            self.session,
        ]

    @property
    def edit_outputs(self) -> list[Any]:
        """What a landmark edit updates."""
        return [self.results.view, self.landmarks.table, self.landmarks.status, self.session]


def build_layout(session: gr.State) -> PageLayout:
    """Make the page's components, top to bottom, inside the open ``gr.Blocks``."""
    import gradio as gr

    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=3):
            painting = build_painting_panel()
        with gr.Column(scale=1, min_width=240):
            inputs = build_input_panel()
    results = build_result_panel()
    landmarks = build_landmark_panel()
    downloads = gr.File(
        label="Downloads: result, mask, landmarks (.json, .pts) and the saved result of each opened photo",
        file_count="multiple",
        interactive=False,
        elem_id="lafin-downloads",
    )
    return PageLayout(session, painting, inputs, results, landmarks, downloads)


def build_painting_panel() -> PaintingPanel:
    """The painter with its tools and the history buttons."""
    import gradio as gr

    # photos come in through "Open photos" (read once at full size on the server);
    # the painter holds a reduced copy to paint on
    gr.Markdown("**Paint the hole** (brush **[** **]**, eraser **E**, undo a stroke **Ctrl+Z**)")
    editor = gr.HTML(EMPTY_PAINTER, elem_id="lafin-painter")
    painted = gr.Textbox(visible=False)
    with gr.Row():
        brush_smaller = gr.Button("Brush − [", size="sm", elem_id="lafin-brush-smaller")
        brush_larger = gr.Button("Brush + ]", size="sm", elem_id="lafin-brush-larger")
        eraser = gr.Button("Eraser E", size="sm", elem_id="lafin-eraser")
        clear = gr.Button("Clear strokes", size="sm", elem_id="lafin-clear")
        gr.HTML('<span id="lafin-brush-info"></span>')
    with gr.Row():
        undo = gr.Button("Undo (Ctrl+Z)", size="sm", elem_id="lafin-undo")
        redo = gr.Button("Redo (Ctrl+Y)", size="sm", elem_id="lafin-redo")
        rerun = gr.Button("Re-run last hole", size="sm", elem_id="lafin-rerun")
    return PaintingPanel(editor, painted, brush_smaller, brush_larger, eraser, clear, undo, redo, rerun)


def build_input_panel() -> InputPanel:
    """The photos and how to run on them, beside the painter."""
    import gradio as gr

    from lafin.pipeline import MODES

    photos = gr.File(
        label="Open photos (one, several or a folder's worth)",
        file_count="multiple",
        type="filepath",
        elem_id="lafin-photos",
        height=120,
    )
    with gr.Row():
        previous = gr.Button("◀ Previous", size="sm", elem_id="lafin-prev")
        next_ = gr.Button("Next ▶", size="sm", elem_id="lafin-next")
    photo_list = gr.Dropdown(choices=[], label="Photo", interactive=True, elem_id="lafin-photo-list")
    mask_file = gr.File(
        label="...or upload a mask (white = hole; used instead of the painting)",
        type="filepath",
        elem_id="lafin-mask-file",
        height=100,
    )
    mode = gr.Radio(
        list(MODES),
        value="auto",
        label="Mode",
        info="crop: one face crop; photo: find the faces; auto: crop for small images, photo for large ones",
    )
    grain = build_grain_slider()
    example = gr.Button("Load example", elem_id="lafin-example")
    damage = build_damage_controls()
    inpaint = gr.Button("Inpaint", variant="primary", elem_id="lafin-inpaint")
    return InputPanel(photos, previous, next_, photo_list, mask_file, mode, grain, example, damage, inpaint)


def build_grain_slider() -> gr.Slider:
    """The refiner's ``refiner_noise`` (:class:`~lafin.options.InferenceOptions`), starting at
    the option's default."""
    import gradio as gr

    from lafin.options import InferenceOptions

    slider = gr.Slider(
        0.0,
        2.0,
        value=InferenceOptions().refiner_noise,
        step=0.1,
        label="Skin grain",
        info="the refiner's skin texture: lower (0.5, 0) gives smoother skin without stubble-like "
        "grain; 1 is what it learnt on (weights without a refiner ignore it)",
        elem_id="lafin-grain",
    )
    # the value goes to the handlers as sent: they refuse a bad one (from an API client) with
    # the page's one-line message, where Gradio's own range check logs a traceback and answers
    # a non-number with no message at all
    slider.preprocess = lambda payload: payload
    return slider


def build_damage_controls() -> DamageControls:
    """Detect damage and its threshold, grouped."""
    import gradio as gr

    from lafin.restore import DEFAULT_THRESHOLD

    with gr.Group():
        detect = gr.Button("Detect damage", elem_id="lafin-detect")
        threshold = gr.Slider(
            0.05,
            0.95,
            value=DEFAULT_THRESHOLD,
            step=0.05,
            label="Damage threshold",
            info="lower: more is proposed as damage (scratches, cracks, dust, tears of old photos)",
            elem_id="lafin-threshold",
        )
    return DamageControls(detect, threshold)


def build_result_panel() -> ResultPanel:
    """The status line, then the landmark view beside the before/after slider."""
    import gradio as gr

    status = gr.Markdown(elem_id="lafin-status")
    with gr.Row():
        view = gr.Image(
            label="What the model sees: the hole in white, the 68 landmarks "
            "(click a point, then where it should go)",
            type="numpy",
            format="jpeg",
            interactive=False,
            height=440,
            elem_id="lafin-view",
            buttons=["fullscreen"],
        )
        compare = gr.ImageSlider(
            label="Before / after (drag the slider)",
            type="filepath",
            interactive=False,
            height=440,
            elem_id="lafin-result",
            buttons=["fullscreen"],
        )
    return ResultPanel(status, view, compare)


def build_landmark_panel() -> LandmarkPanel:
    """The structure editor, in an open accordion."""
    import gradio as gr

    with gr.Accordion("Edit the structure (landmarks)", open=True):
        with gr.Row():
            presets = {
                name: gr.Button(
                    name.capitalize(), size="sm", elem_id=f"lafin-preset-{name.replace(' ', '-')}"
                )
                for name in EXPRESSION_NAMES
            }
        with gr.Row():
            strength = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Expression strength")
            reset = gr.Button("Reset to predicted", size="sm")
            upload = gr.UploadButton(
                "Load landmarks (.pts/.json/.npy)",
                size="sm",
                file_types=[".pts", ".json", ".npy"],
                type="filepath",
            )
            regenerate = gr.Button("Regenerate", variant="primary", elem_id="lafin-regenerate")
            grow_hole = gr.Checkbox(
                value=True,
                label=GROW_LABEL,
                info="repaint around moved points outside the hole too (else their pixels stay)",
                elem_id="lafin-grow-hole",
            )
        # beside the buttons that change it: the page's top status is out of sight here
        status = gr.Markdown(elem_id="lafin-edit-status")
        table = gr.Dataframe(
            headers=TABLE_HEADERS,
            datatype=["number", "str", "number", "number"],
            type="array",
            interactive=True,
            static_columns=[0, 1],
            label="Landmarks (x, y in image pixels; edit x and y)",
            max_height=360,
            elem_id="lafin-table",
        )
    return LandmarkPanel(presets, strength, reset, upload, regenerate, grow_hole, status, table)
