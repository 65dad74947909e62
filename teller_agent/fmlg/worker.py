"""A :class:`~teller_agent.fmlg.MotionGenerator` in a child process, streaming its motion back.

Offline rendering (``teller-agent render``) has the whole clip's audio up front. Generating all the
motion first and rendering after leaves one of two cores idle at each stage; the generator's many
small torch calls hold the GIL, so a thread does not help. Here the generator is loaded and run in
a forked child (which inherits the parent's imports: nothing is imported again) and sends each
chunk's motion frames through a pipe while the parent prepares the portrait, then renders and
encodes the frames already received.

The frames are those of ``generator.push_audio`` on ``chunk_s`` slices followed by ``flush``:
the same as :meth:`MotionGenerator.generate` to float rounding (chunking changes nothing else).
The child is forked on Linux only; elsewhere (macOS, where forking a process that has loaded
system frameworks is unsafe, and Windows, which cannot fork), or with ``fork=False``, the chunks are
generated in the calling process, one after the other, with the same results. A fork copies only
the calling thread: an application whose other threads may hold locks the generator needs (its
own, not tqdm's monitor or an idle pool) should pass ``fork=False``.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import traceback
from collections.abc import Callable, Iterator

import numpy as np

from ..errors import TellerError
from ..motion import MotionLatent
from .generator import MotionGenerator


class GenerationError(TellerError):
    """The motion generator's child process died, or raised an error that cannot be sent back (the
    message carries its traceback). Errors that can (e.g. :class:`~teller_agent.errors.CheckpointError`)
    are raised in the parent as they are."""


def _chunks(generator: MotionGenerator, pcm: np.ndarray, sample_rate: int, chunk_s: float) -> Iterator[MotionLatent]:
    generator.reset()
    step = max(1, int(chunk_s * sample_rate))
    for start in range(0, len(pcm), step):
        motion = generator.push_audio(pcm[start : start + step], sample_rate)
        if len(motion):
            yield motion
    tail = generator.flush()
    if len(tail):
        yield tail


def _child(conn, make_generator: Callable[[], MotionGenerator], pcm: np.ndarray, sample_rate: int,
           chunk_s: float) -> None:
    try:
        # one core: torch's intra-op pool and the BLAS behind numpy (whose idle workers busy-wait and
        # would take the core the parent renders on) get one thread each
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(1)
        threadpool_limits(1)
        for motion in _chunks(make_generator(), pcm, sample_rate, chunk_s):
            conn.send(("motion", motion))
        conn.send(("done", None))
    except BaseException as exc:  # raised again in the parent, with the child's traceback as a note
        try:
            exc.add_note("in the motion generator's process:\n" + traceback.format_exc().rstrip())
            conn.send(("error", exc))
        except Exception:  # not picklable: its text
            conn.send(("failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


class BackgroundGeneration:
    """Generate a whole clip's motion in a forked child process; iterate to receive it in chunks.

    Use as a context manager: leaving it (normally, or on any error while rendering) stops the
    child and closes the pipe, so nothing keeps running.

    Args:
        make_generator: builds the generator (e.g. ``lambda: MotionGenerator.from_settings(settings)``);
            called in the child, so loading the checkpoint overlaps the caller's own work.
        pcm: (N,) or (N, channels) speech samples, float in [-1, 1] or int16.
        sample_rate: Hz (resampled to 16 kHz inside the generator).
        chunk_s: seconds of audio per chunk sent back (0.5 s = about 12 frames).
        fork: generate in a forked child; None: on Linux (see the module docstring).

    Iterating yields :class:`MotionLatent` chunks (face68) in order, ``round(samples / 640)``
    frames at 16 kHz in all, then stops.

    Raises (while iterating):
        What ``make_generator`` or the generator raised in the child (e.g. CheckpointError), or
        GenerationError: the child died (its exit code), or its error could not be sent back.
    """

    def __init__(self, make_generator: Callable[[], MotionGenerator], pcm: np.ndarray, sample_rate: int,
                 chunk_s: float = 0.5, fork: bool | None = None):
        self.make_generator, self.pcm, self.sample_rate, self.chunk_s = make_generator, pcm, sample_rate, chunk_s
        self._process = None
        self._conn = None
        #: True when the motion comes from a child process (False: generated in this one).
        self.forked = sys.platform.startswith("linux") and fork is not False

    def __enter__(self) -> BackgroundGeneration:
        if self.forked:
            ctx = mp.get_context("fork")
            self._conn, child_conn = ctx.Pipe(duplex=False)
            self._process = ctx.Process(target=_child, name="teller-generate", daemon=True,
                                        args=(child_conn, self.make_generator, self.pcm, self.sample_rate, self.chunk_s))
            self._process.start()
            child_conn.close()  # the parent keeps only the reading end: EOF when the child exits
        return self

    def __iter__(self) -> Iterator[MotionLatent]:
        if not self.forked:
            yield from _chunks(self.make_generator(), self.pcm, self.sample_rate, self.chunk_s)
            return
        if self._conn is None:
            raise RuntimeError("use BackgroundGeneration as a context manager (with ... as chunks)")
        while True:
            try:
                kind, payload = self._conn.recv()
            except EOFError:
                self._process.join(timeout=5.0)
                raise GenerationError(f"the motion generator's process exited (code {self._process.exitcode}) "
                                      "before finishing; rerun, and check free memory") from None
            except Exception as e:  # a message that cannot be unpickled here
                raise GenerationError(f"cannot read the motion generator's message ({e}); rerun") from e
            if kind == "motion":
                yield payload
            elif kind == "done":
                return
            elif kind == "error":
                raise payload
            else:
                raise GenerationError(f"the motion generator failed in its process: {payload}")

    def __exit__(self, *exc) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.terminate()
            self._process.join(timeout=5.0)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


__all__ = ["BackgroundGeneration", "GenerationError"]
