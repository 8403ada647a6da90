"""A session's files on the server and their removal: result folders, downloads, uploads.

Every file the demo writes lives under its work folder (Gradio's cache, in :func:`build_app
<lafin.webapp.app.build_app>`), one folder per session. Uploaded files are counted per session
that uses them (two tabs may upload the same photo) and deleted when the last one ends. A
session ends when its tab closes (:func:`forget_session`), when it expires (the ``gr.State``'s
time to live) or when the server stops.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from lafin.landmarks import save_landmarks
from lafin.webapp.memory import release_memory
from lafin.webapp.session import Session

if TYPE_CHECKING:  # pragma: no cover
    import gradio as gr


class SessionFiles:
    """The sessions' folders, download files and uploads.

    Args:
        work_dir: where per-session result folders are made.
        upload_dir: Gradio's upload folder: an uploaded file in it is deleted when the last
            session that used it ends (None: uploads are left alone).
    """

    def __init__(self, work_dir: str | Path, upload_dir: str | Path | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.upload_dir = None if upload_dir is None else Path(upload_dir).resolve()
        self._upload_users: dict[str, int] = {}  # uploaded file -> sessions using it
        self._uploads_lock = threading.Lock()

    def hold(self, session: Session, *paths: str) -> None:
        """Count ``session`` among the users of these uploaded files (once each)."""
        if self.upload_dir is None:
            return
        with self._uploads_lock:
            for path in paths:
                path = str(Path(path).resolve())
                if path in session.uploads or self.upload_dir not in Path(path).parents:
                    continue
                session.uploads.add(path)
                self._upload_users[path] = self._upload_users.get(path, 0) + 1

    def _release(self, session: Session) -> None:
        """``session`` ended: delete the uploads no other session uses (and their folders,
        Gradio's one per upload, when empty)."""
        with self._uploads_lock:
            for path in session.uploads:
                users = self._upload_users.get(path, 1) - 1
                if users > 0:
                    self._upload_users[path] = users
                    continue
                self._upload_users.pop(path, None)
                Path(path).unlink(missing_ok=True)
                try:
                    Path(path).parent.rmdir()
                except OSError:
                    pass  # not empty
            session.uploads.clear()

    def folder(self, session: Session) -> Path:
        """The session's own folder for result files (made when first asked for)."""
        if session.out_dir is None or not Path(session.out_dir).is_dir():
            sessions = self.work_dir / "sessions"
            sessions.mkdir(parents=True, exist_ok=True)
            session.out_dir = tempfile.mkdtemp(prefix="s-", dir=sessions)
        return Path(session.out_dir)

    @staticmethod
    def other_photos_results(session: Session) -> list[str]:
        """The saved result of every other photo of the opened folder (that still exists)."""
        return [p for name, p in sorted(session.saved.items()) if name != session.name and os.path.exists(p)]

    def write_downloads(self, session: Session) -> list[str]:
        """The shown result's downloads, written once (a run's follow-up event, so the result is
        on the page before its PNG is compressed): result PNG, mask PNG (white = hole), the
        landmarks (.json and .pts), in a fresh sub-folder (earlier runs' files stay valid for
        their open links); the result is also saved as ``<photo>-lafin.png``, and the saved
        result of every other photo of the opened folder is listed after them."""
        step = session.step
        if step is None or step.mask is None:
            return []
        if not step.files or not all(os.path.exists(f) for f in step.files):
            out = Path(tempfile.mkdtemp(prefix="run-", dir=self.folder(session)))
            files = [out / "lafin-result.png", out / "lafin-mask.png"]
            # compress_level 1: ~3x faster than the default, a few % larger
            Image.fromarray(step.image).save(files[0], compress_level=1)
            Image.fromarray(step.mask.astype(bool)).save(files[1])
            if step.landmarks is not None:
                files += [out / "lafin-landmarks.json", out / "lafin-landmarks.pts"]
                save_landmarks(files[2], step.landmarks)
                save_landmarks(files[3], step.landmarks)
            saved = out / f"{session.name}-lafin.png"
            try:
                os.link(files[0], saved)  # the same file under the photo's name, no copy
            except OSError:
                shutil.copyfile(files[0], saved)
            step.files = [str(f) for f in files]
            session.saved[session.name] = str(saved)
        return list(step.files) + self.other_photos_results(session)

    def cleanup(self, session: Session | None) -> None:
        """Remove a session's result files, drop its images and release its uploads (the
        State's delete callback; anything that is not a session is left alone)."""
        if isinstance(session, Session):
            if session.out_dir:
                shutil.rmtree(session.out_dir, ignore_errors=True)
            session.forget()
            self._release(session)


def forget_session(demo: "gr.Blocks", files: SessionFiles, session_hash: str | None) -> None:
    """A browser tab closed: delete its files and images now. Gradio alone would keep a closed
    session's state for an hour and its per-session copy of the page's config until 10,000
    sessions, which grew the server by ~10 MB per visitor. An unknown tab is nothing to do."""
    holder = getattr(demo, "state_holder", None)
    if holder is None or not session_hash or session_hash not in holder:
        return
    with holder.lock:
        data = holder.session_data.pop(session_hash, None)
        holder.time_last_used.pop(session_hash, None)
    if data is not None:
        for value in data.state_data.values():
            files.cleanup(value)
        data.state_data.clear()
        del data
        release_memory()


def owned_temp_dir(work_dir: str | Path | None) -> Path:
    """``work_dir`` (made if missing), or a new temporary folder removed when the process exits."""
    if work_dir is not None:
        path = Path(work_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(tempfile.mkdtemp(prefix="lafin-web-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
