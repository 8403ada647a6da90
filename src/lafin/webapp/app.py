"""The demo's page: its layout (a ``gr.Blocks``) and the wiring of its events to
:class:`~lafin.webapp.handlers.DemoHandlers`, queued one model run at a time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from lafin.landmarks import EXPRESSION_NAMES
from lafin.webapp.handlers import DemoHandlers
from lafin.webapp.memory import release_memory
from lafin.webapp.painter import EMPTY_PAINTER, PAINTER_CSS, SEND_PAINTING
from lafin.webapp.session import Session
from lafin.webapp.storage import forget_session, owned_temp_dir
from lafin.webapp.table import TABLE_HEADERS
from lafin.webapp.uploads import DEFAULT_MAX_UPLOAD_PIXELS

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

    from lafin.pipeline import LaFInModel

SESSION_TTL = 2 * 3600.0  # seconds a session's work is kept after its last change

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
   view and then click where it should go. Click **Regenerate**.

Large photos and photos with several faces are handled whole: the faces the hole touches are found,
aligned, inpainted and put back (mode *auto* or *photo*). Known pixels are never changed.
"""

CSS = (
    """
#lafin-status, #lafin-edit-status { min-height: 2.5em; }
"""
    + PAINTER_CSS
)


def build_app(
    model: "LaFInModel",
    max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
    *,
    work_dir: str | Path | None = None,
    title: str = "lafin web demo",
    session_ttl: float = SESSION_TTL,
) -> "gr.Blocks":
    """The demo page (a ``gr.Blocks``, queued one model run at a time; not launched).

    Args:
        model: the loaded model.
        max_upload_pixels: largest photo or mask (width x height) the handlers accept.
        work_dir: the app's temporary folder (Gradio's cache and the result files); default: a
            new one, removed when the process exits. ``GRADIO_TEMP_DIR`` is set to a folder in
            it (process-wide: Gradio reads it at run time).
        session_ttl: seconds a session's work is kept after its last change, even if its tab
            stays open (a closed tab's is deleted at once).
    """
    root = owned_temp_dir(work_dir)
    gradio_cache = root / "gradio"
    gradio_cache.mkdir(exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(gradio_cache)
    import gradio as gr

    from lafin.pipeline import MODES
    from lafin.restore import DEFAULT_THRESHOLD

    # the result files live in Gradio's cache folder: served from where they are written (no
    # hashed copy per file, none left behind), and removed with their session
    handlers = DemoHandlers(model, max_upload_pixels, work_dir=gradio_cache, upload_dir=gradio_cache)
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        session = gr.State(
            Session(),
            time_to_live=session_ttl,
            delete_callback=lambda value: (handlers.cleanup(value), release_memory()),
        )
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=3):
                # photos come in through "Open photos" (read once at full size on the server);
                # the painter holds a reduced copy to paint on
                gr.Markdown("**Paint the hole** (brush **[** **]**, eraser **E**, undo a stroke **Ctrl+Z**)")
                editor = gr.HTML(EMPTY_PAINTER, elem_id="lafin-painter")
                painted = gr.Textbox(visible=False)
                with gr.Row():
                    brush_smaller = gr.Button("Brush − [", size="sm", elem_id="lafin-brush-smaller")
                    brush_larger = gr.Button("Brush + ]", size="sm", elem_id="lafin-brush-larger")
                    eraser_btn = gr.Button("Eraser E", size="sm", elem_id="lafin-eraser")
                    clear_btn = gr.Button("Clear strokes", size="sm", elem_id="lafin-clear")
                    gr.HTML('<span id="lafin-brush-info"></span>')
                with gr.Row():
                    undo_btn = gr.Button("Undo (Ctrl+Z)", size="sm", elem_id="lafin-undo")
                    redo_btn = gr.Button("Redo (Ctrl+Y)", size="sm", elem_id="lafin-redo")
                    rerun_btn = gr.Button("Re-run last hole", size="sm", elem_id="lafin-rerun")
            with gr.Column(scale=1, min_width=240):
                photos = gr.File(
                    label="Open photos (one, several or a folder's worth)",
                    file_count="multiple",
                    type="filepath",
                    elem_id="lafin-photos",
                    height=120,
                )
                with gr.Row():
                    prev_btn = gr.Button("◀ Previous", size="sm", elem_id="lafin-prev")
                    next_btn = gr.Button("Next ▶", size="sm", elem_id="lafin-next")
                photo_list = gr.Dropdown(
                    choices=[], label="Photo", interactive=True, elem_id="lafin-photo-list"
                )
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
                    info="crop: one face crop; photo: find the faces; auto: crop for "
                    "small images, photo for large ones",
                )
                example_btn = gr.Button("Load example", elem_id="lafin-example")
                with gr.Group():
                    detect_btn = gr.Button("Detect damage", elem_id="lafin-detect")
                    threshold = gr.Slider(
                        0.05,
                        0.95,
                        value=DEFAULT_THRESHOLD,
                        step=0.05,
                        label="Damage threshold",
                        info="lower: more is proposed as damage (scratches, "
                        "cracks, dust, tears of old photos)",
                        elem_id="lafin-threshold",
                    )
                inpaint_btn = gr.Button("Inpaint", variant="primary", elem_id="lafin-inpaint")
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
        with gr.Accordion("Edit the structure (landmarks)", open=True):
            with gr.Row():
                preset_btns = {
                    name: gr.Button(
                        name.capitalize(), size="sm", elem_id=f"lafin-preset-{name.replace(' ', '-')}"
                    )
                    for name in EXPRESSION_NAMES
                }
            with gr.Row():
                strength = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Expression strength")
                reset_btn = gr.Button("Reset to predicted", size="sm")
                lm_upload = gr.UploadButton(
                    "Load landmarks (.pts/.json/.npy)",
                    size="sm",
                    file_types=[".pts", ".json", ".npy"],
                    type="filepath",
                )
                regenerate_btn = gr.Button("Regenerate", variant="primary", elem_id="lafin-regenerate")
            # beside the buttons that change it: the page's top status is out of sight here
            edit_status = gr.Markdown(elem_id="lafin-edit-status")
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
        downloads = gr.File(
            label="Downloads: result, mask, landmarks (.json, .pts) and the "
            "saved result of each opened photo",
            file_count="multiple",
            interactive=False,
            elem_id="lafin-downloads",
        )

        page_outputs = [editor, compare, view, table, downloads, status, session]
        edit_outputs = [view, table, edit_status, session]
        # a run's progress (its stage) shows in the status line alone: redrawing a progress
        # overlay on every output at each stage kept the browser busy on large photos
        model_queue = {"concurrency_id": "model", "concurrency_limit": 1, "show_progress_on": [status]}
        light_queue = {"concurrency_id": "edit", "concurrency_limit": 2}

        def on_inpaint(editor_value, mask_path, mode_value, state, progress=gr.Progress()):
            return handlers.inpainting.inpaint(editor_value, mask_path, mode_value, state, progress=progress)

        def on_detect(threshold_value, state, progress=gr.Progress()):
            return handlers.damage.detect(threshold_value, state, progress=progress)

        def on_rerun(mode_value, state, progress=gr.Progress()):
            return handlers.inpainting.rerun(mode_value, state, progress=progress)

        def on_regenerate(rows, mode_value, state, progress=gr.Progress()):
            return handlers.inpainting.regenerate(rows, mode_value, state, progress=progress)

        def on_open(paths, state):
            outputs = handlers.photos.open(paths, state)
            names = [n for n, _ in state.photos]
            return outputs + (
                None,
                gr.update(choices=names, value=names[state.photo_index] if names else None),
            )

        def on_step(delta, state):
            outputs = handlers.photos.step(delta, state)
            return outputs + (gr.update(value=state.photos[state.photo_index][0]),)

        def on_choose(name, state):
            if state.photos and name == state.photos[state.photo_index][0]:
                return (gr.skip(),) * (len(page_outputs))
            return handlers.photos.choose(name, state)

        def on_example(state):
            return handlers.photos.load_example(state) + (None, gr.update(choices=[], value=None))

        def on_select(state, evt):
            return handlers.landmarks.click(state, evt.index)

        def on_unload(request: gr.Request):
            forget_session(demo, handlers.files, getattr(request, "session_hash", None))

        # a real annotation object: Gradio passes the click event by this type, and the
        # module's postponed (string) annotations could not name the locally imported gradio
        on_select.__annotations__["evt"] = gr.SelectData
        on_unload.__annotations__["request"] = gr.Request

        # each run shows its result first, then writes the full-size PNGs for the downloads
        runs = [
            inpaint_btn.click(
                on_inpaint,
                [painted, mask_file, mode, session],
                page_outputs,
                js=SEND_PAINTING,
                **model_queue,
            ),
            rerun_btn.click(on_rerun, [mode, session], page_outputs, **model_queue),
            regenerate_btn.click(on_regenerate, [table, mode, session], page_outputs, **model_queue),
        ]
        for run in runs:
            run.success(handlers.files.write_downloads, [session], [downloads], **light_queue)
        detect_btn.click(on_detect, [threshold, session], [editor, mask_file, status, session], **model_queue)
        undo_btn.click(handlers.inpainting.undo, [session], page_outputs, **light_queue)
        redo_btn.click(handlers.inpainting.redo, [session], page_outputs, **light_queue)
        photos.upload(on_open, [photos, session], page_outputs + [photos, photo_list], **light_queue)
        prev_btn.click(lambda s: on_step(-1, s), [session], page_outputs + [photo_list], **light_queue)
        next_btn.click(lambda s: on_step(1, s), [session], page_outputs + [photo_list], **light_queue)
        photo_list.input(on_choose, [photo_list, session], page_outputs, **light_queue)
        example_btn.click(on_example, [session], page_outputs + [mask_file, photo_list], **light_queue)
        # painting tools work in the page alone: no trip to the server
        brush_smaller.click(None, js="() => window.lafinPainter.resize(0.8)")
        brush_larger.click(None, js="() => window.lafinPainter.resize(1.25)")
        eraser_btn.click(None, js="() => window.lafinPainter.toggleEraser()")
        clear_btn.click(None, js="() => window.lafinPainter.clear()")
        for name, btn in preset_btns.items():
            btn.click(
                lambda s, st, _name=name: handlers.landmarks.apply_preset(_name, s, st),
                [strength, session],
                edit_outputs,
                **light_queue,
            )
        reset_btn.click(handlers.landmarks.reset, [session], edit_outputs, **light_queue)
        lm_upload.upload(
            handlers.landmarks.load_file,
            [lm_upload, session],
            edit_outputs,
            api_name="load_landmarks_file",  # the API name clients (gradio_client) know
            **light_queue,
        )
        table.input(
            handlers.landmarks.edit_table, [table, session], [view, edit_status, session], **light_queue
        )
        view.select(on_select, [session], edit_outputs, **light_queue)
        demo.unload(on_unload)
    demo.queue(default_concurrency_limit=1, max_size=64)
    demo.lafin_work_dir = root  # type: ignore[attr-defined]
    demo.lafin_handlers = handlers  # type: ignore[attr-defined]
    return demo
