"""The wiring of the page's events (:class:`~lafin.webapp.layout.PageLayout`) to
:class:`~lafin.webapp.handlers.DemoHandlers`: model runs go through one queue, one at a time;
light edits through another; the painting tools stay in the page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lafin.webapp.handlers import DemoHandlers
from lafin.webapp.layout import PageLayout
from lafin.webapp.painter import SEND_PAINTING
from lafin.webapp.storage import forget_session

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr

# photo changes, undo/redo, landmark edits: quick, two at a time beside a model run
LIGHT_QUEUE: dict[str, Any] = {"concurrency_id": "edit", "concurrency_limit": 2}


def model_queue(layout: PageLayout) -> dict[str, Any]:
    """The queue settings of a model run: one at a time, its progress in the status line."""
    # a run's progress (its stage) shows in the status line alone: redrawing a progress
    # overlay on every output at each stage kept the browser busy on large photos
    return {"concurrency_id": "model", "concurrency_limit": 1, "show_progress_on": [layout.results.status]}


def wire_events(demo: gr.Blocks, layout: PageLayout, handlers: DemoHandlers) -> None:
    """Connect every event of the page, inside the open ``gr.Blocks`` (the order of the calls
    is the order of the app's API endpoints)."""
    wire_model_runs(layout, handlers)
    wire_history_and_photos(layout, handlers)
    wire_painting_tools(layout)
    wire_landmark_edits(layout, handlers)
    wire_unload(demo, handlers)


def wire_model_runs(layout: PageLayout, handlers: DemoHandlers) -> None:
    """Inpaint, Re-run, Regenerate (each at the Skin grain slider's value; Regenerate grows
    the hole over moved points while its checkbox is ticked; then their downloads) and Detect
    damage."""
    import gradio as gr

    def on_inpaint(editor_value, mask_path, mode_value, grain, state, progress=gr.Progress()):
        return handlers.inpainting.inpaint(
            editor_value, mask_path, mode_value, state, grain, progress=progress
        )

    def on_detect(threshold_value, state, progress=gr.Progress()):
        return handlers.damage.detect(threshold_value, state, progress=progress)

    def on_rerun(mode_value, grain, state, progress=gr.Progress()):
        return handlers.inpainting.rerun(mode_value, state, grain, progress=progress)

    def on_regenerate(rows, mode_value, grain, grow, state, progress=gr.Progress()):
        return handlers.inpainting.regenerate(
            rows, mode_value, state, grain, progress=progress, grow_hole=bool(grow)
        )

    painting, inputs, session = layout.painting, layout.inputs, layout.session
    page_outputs, queue = layout.page_outputs, model_queue(layout)
    # each run shows its result first, then writes the full-size PNGs for the downloads
    runs = [
        inputs.inpaint.click(
            on_inpaint,
            [painting.painted, inputs.mask_file, inputs.mode, inputs.grain, session],
            page_outputs,
            js=SEND_PAINTING,
            **queue,
        ),
        painting.rerun.click(on_rerun, [inputs.mode, inputs.grain, session], page_outputs, **queue),
        layout.landmarks.regenerate.click(
            on_regenerate,
            [layout.landmarks.table, inputs.mode, inputs.grain, layout.landmarks.grow_hole, session],
            page_outputs,
            **queue,
        ),
    ]
    for run in runs:
        run.success(handlers.files.write_downloads, [session], [layout.downloads], **LIGHT_QUEUE)
    inputs.damage.detect.click(
        on_detect,
        [inputs.damage.threshold, session],
        [painting.editor, inputs.mask_file, layout.results.status, session],
        **queue,
    )


def wire_history_and_photos(layout: PageLayout, handlers: DemoHandlers) -> None:
    """Undo, Redo, and the photos: open, previous/next, choose from the list, the example."""
    import gradio as gr

    page_outputs = layout.page_outputs

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

    painting, inputs, session = layout.painting, layout.inputs, layout.session
    painting.undo.click(handlers.inpainting.undo, [session], page_outputs, **LIGHT_QUEUE)
    painting.redo.click(handlers.inpainting.redo, [session], page_outputs, **LIGHT_QUEUE)
    photo_list = inputs.photo_list
    inputs.photos.upload(
        on_open, [inputs.photos, session], page_outputs + [inputs.photos, photo_list], **LIGHT_QUEUE
    )
    inputs.previous.click(lambda s: on_step(-1, s), [session], page_outputs + [photo_list], **LIGHT_QUEUE)
    inputs.next.click(lambda s: on_step(1, s), [session], page_outputs + [photo_list], **LIGHT_QUEUE)
    photo_list.input(on_choose, [photo_list, session], page_outputs, **LIGHT_QUEUE)
    inputs.example.click(on_example, [session], page_outputs + [inputs.mask_file, photo_list], **LIGHT_QUEUE)


def wire_painting_tools(layout: PageLayout) -> None:
    """The brush size, the eraser and Clear strokes."""
    # painting tools work in the page alone: no trip to the server
    painting = layout.painting
    painting.brush_smaller.click(None, js="() => window.lafinPainter.resize(0.8)")
    painting.brush_larger.click(None, js="() => window.lafinPainter.resize(1.25)")
    painting.eraser.click(None, js="() => window.lafinPainter.toggleEraser()")
    painting.clear.click(None, js="() => window.lafinPainter.clear()")


def wire_landmark_edits(layout: PageLayout, handlers: DemoHandlers) -> None:
    """Expression presets, Reset, a landmarks file, the table and clicks on the landmark view."""
    import gradio as gr

    def on_select(state, evt):
        return handlers.landmarks.click(state, evt.index)

    # a real annotation object: Gradio passes the click event by this type, and the
    # module's postponed (string) annotations could not name the locally imported gradio
    on_select.__annotations__["evt"] = gr.SelectData

    panel, session, edit_outputs = layout.landmarks, layout.session, layout.edit_outputs
    for name, btn in panel.presets.items():
        btn.click(
            lambda s, st, _name=name: handlers.landmarks.apply_preset(_name, s, st),
            [panel.strength, session],
            edit_outputs,
            **LIGHT_QUEUE,
        )
    panel.reset.click(handlers.landmarks.reset, [session], edit_outputs, **LIGHT_QUEUE)
    panel.upload.upload(
        handlers.landmarks.load_file,
        [panel.upload, session],
        edit_outputs,
        api_name="load_landmarks_file",  # the API name clients (gradio_client) know
        **LIGHT_QUEUE,
    )
    panel.table.input(
        handlers.landmarks.edit_table,
        [panel.table, session],
        [layout.results.view, panel.status, session],
        **LIGHT_QUEUE,
    )
    layout.results.view.select(on_select, [session], edit_outputs, **LIGHT_QUEUE)


def wire_unload(demo: gr.Blocks, handlers: DemoHandlers) -> None:
    """A closed tab: its session's files go at once."""
    import gradio as gr

    def on_unload(request: gr.Request):
        forget_session(demo, handlers.files, getattr(request, "session_hash", None))

    on_unload.__annotations__["request"] = gr.Request  # as for on_select: a real type
    demo.unload(on_unload)
