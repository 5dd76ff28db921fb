"""Non-blocking use of ITKITClient from a GUI: worker threads plus a poll()/tick() that the
owner calls from its own thread (in Slicer from a QTimer), so results, errors and progress
arrive on the GUI thread and the GUI never waits on the network.

Plain Python, like itkit_client.py: testable without Slicer.
"""
import concurrent.futures
import os
import sys
import time

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # Slicer may load us first
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from itkit_client import (ITKITClientError, JobCancelled, JobFailed, ServerError,
                          _JobsUnsupported, format_duration, slicer_hidden_module)


def server_summary(reply, transport_name=""):
    """One line about a server from ITKITClient.connect()'s reply, for the status area."""
    info, health = reply.get("info") or {}, reply.get("health") or {}
    cuda = health.get("cuda_available", info.get("cuda_available"))
    gpus = [g for g in info.get("devices") or [] if isinstance(g, dict)]
    if cuda and gpus:
        gpu = "GPU: " + ", ".join(
            f"{g.get('name', 'GPU')} ({g.get('free_bytes', 0) / 2**30:.1f} of "
            f"{g.get('total_bytes', 0) / 2**30:.1f} GiB free)" for g in gpus)
    elif cuda:
        gpu = f"GPU: CUDA, {health.get('cuda_device_count') or info.get('cuda_device_count') or '?'} device(s)"
    else:
        gpu = "GPU: none (CPU inference)"
    parts = [f"{info.get('name', 'ITKIT server')} {info.get('version', '')}".strip(), gpu]
    if info.get("auth_required"):
        parts.append("API key required")
    if transport_name:
        parts.append(f"client transport: {transport_name}")
    return " | ".join(parts)


class BackgroundTasks:
    """Runs blocking calls on worker threads; poll(), called from the owner's thread (Slicer's
    GUI thread, from a QTimer), delivers each result or exception to its callback there, so
    callbacks may touch widgets and the MRML scene."""

    def __init__(self, workers=2):
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                                               thread_name_prefix="itkit-task")
        self._pending = []  # (future, on_done, on_error)

    def submit(self, fn, *args, on_done=None, on_error=None, **kwargs):
        future = self._executor.submit(fn, *args, **kwargs)
        self._pending.append((future, on_done, on_error))
        return future

    @property
    def pending(self):
        return len(self._pending)

    @property
    def busy(self):
        return any(not f.done() for f, _, _ in self._pending)

    def poll(self):
        """Runs the callbacks of finished calls; returns how many calls are still pending."""
        finished, waiting = [], []
        for entry in self._pending:  # one done() per call: it may flip between two checks
            (finished if entry[0].done() else waiting).append(entry)
        self._pending = waiting
        for future, on_done, on_error in finished:
            if future.cancelled():
                continue
            error = future.exception()
            if error is not None:
                if on_error is None:
                    raise error
                on_error(error)
            elif on_done is not None:
                on_done(future.result())
        return len(self._pending)

    def shutdown(self):
        self._pending = []
        self._executor.shutdown(wait=False)


# ----------------------------------------------------------------------------- non-blocking run

class InferenceRun:
    """One inference driven without blocking the caller.

    Every HTTP call runs on a worker thread; the owner calls tick() periodically (in Slicer
    from a QTimer) and reads phase/progress/message. Phases: (preparing,) uploading, queued,
    running, downloading, then done / failed / cancelled. Falls back to the synchronous /api/infer
    (no progress) on servers without /api/jobs.
    """

    def __init__(self, client, image_path, model_name, output_path=None, options=None,
                 poll_interval=0.5, prepare=None):
        # prepare: optional callable run first on the worker (e.g. writing the volume file).
        self.client, self.image_path, self.model_name = client, image_path, model_name
        self.prepare = prepare
        self.output_path, self.options, self.poll_interval = output_path, options, poll_interval
        self.phase = "idle"
        self.job_id = None
        self.status = None        # last JobStatus
        self.error = None         # exception when failed
        self.result_path = None
        self.synchronous = False  # True when the server has no job API
        self._executor = None
        self._future, self._pending = None, None
        self._next_poll = 0.0
        self._t0 = self._t1 = None

    # -- public

    def start(self):
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                               thread_name_prefix="itkit")
        self._t0 = time.monotonic()
        if self.prepare is not None:
            self.phase = "preparing"
            self._submit("prepare", self.prepare)
        else:
            self._upload()
        return self

    def _upload(self):
        self.phase = "uploading"
        self._submit("submit", self.client.submit_job, self.image_path, self.model_name, self.options)

    @property
    def finished(self):
        return self.phase in ("done", "failed", "cancelled")

    @property
    def busy(self):
        """A request is in flight (the worker thread needs CPU time)."""
        return self._future is not None and not self._future.done()

    @property
    def elapsed(self):
        if self._t0 is None:
            return 0.0
        return (self._t1 or time.monotonic()) - self._t0

    @property
    def progress(self):
        if self.phase == "done":
            return 1.0
        return self.status.progress if self.status and self.phase == "running" else None

    @property
    def message(self):
        if self.phase == "preparing":
            return "Preparing the volume..."
        if self.phase == "uploading":
            return "Sending volume to the server..."
        if self.phase == "queued":
            return "Queued on the server..."
        if self.phase == "running":
            if self.synchronous:
                return "Running on the server (no progress available)..."
            s = self.status
            if s and s.windows_total and s.stage in ("", "windows", "inference"):
                return f"Running: {s.windows_done}/{s.windows_total} windows"
            return f"Running: {s.stage}" if s and s.stage else "Running..."
        if self.phase == "downloading":
            return "Downloading the result..."
        if self.phase == "done":
            return f"Done in {format_duration(self.elapsed)}."
        if self.phase == "failed":
            return str(self.error)
        if self.phase == "cancelled":
            return "Cancelled."
        return ""

    def tick(self):
        """Advances the run without blocking; returns True while it is not finished."""
        if self.finished:
            return False
        if self._future is None:
            if self.phase in ("queued", "running") and time.monotonic() >= self._next_poll:
                self._submit("poll", self.client.job_status, self.job_id)
            return True
        if not self._future.done():
            return True
        kind, future = self._pending, self._future
        self._future = self._pending = None
        try:
            value = future.result()
        except _JobsUnsupported:
            self.synchronous, self.phase = True, "running"
            self._submit("result", self.client.infer, self.image_path, self.model_name,
                         self.output_path, self.options)
            return True
        except Exception as e:  # noqa: BLE001  (shown to the user, never swallowed)
            self._finish("failed", e)
            return False
        self._advance(kind, value)
        return not self.finished

    def cancel(self):
        """Stops waiting now and asks the server to cancel the job (in the background)."""
        if self.finished:
            return
        if self.job_id:
            self._executor.submit(self._cancel_quietly, self.job_id)
        elif self._pending == "submit" and self._future is not None:
            # Still uploading: cancel the job as soon as the server has given it an id.
            def on_submitted(f):
                if not f.cancelled() and f.exception() is None:
                    self._cancel_quietly(f.result())
            self._future.add_done_callback(on_submitted)
        self._finish("cancelled")

    def when_idle(self, fn):
        """Calls fn once no request of this run is in flight: now, or on the worker thread when
        the current one ends (a cancelled run may still be writing or sending its files)."""
        future = self._future
        if future is None or future.done():
            fn()
        else:
            future.add_done_callback(lambda _: fn())

    def wait(self, timeout=None, interval=0.05):
        """Blocking loop over tick() for scripts and tests; returns the result path."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.tick():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise ServerError(f"Inference did not finish within {timeout:g} s.")
            time.sleep(interval)
        if self.phase == "failed":
            raise self.error
        if self.phase == "cancelled":
            raise JobCancelled("Inference was cancelled.")
        return self.result_path

    # -- internals

    def _submit(self, kind, fn, *args):
        self._pending = kind
        self._future = self._executor.submit(fn, *args)

    def _advance(self, kind, value):
        if kind == "prepare":
            self._upload()
        elif kind == "submit":
            self.job_id, self.phase = value, "queued"
            self._next_poll = time.monotonic()
        elif kind == "poll":
            self.status = value
            if value.state == "done":
                self.phase = "downloading"
                self._submit("result", self.client.download_result, self.job_id,
                             self.output_path, self.options)
            elif value.state == "failed":
                self._finish("failed", JobFailed(
                    f"Inference failed on the server: {value.error or 'no message'}", None, value.error))
            elif value.state == "cancelled":
                self._finish("cancelled")
            else:
                self.phase = "queued" if value.state == "queued" else "running"
                self._next_poll = time.monotonic() + self.poll_interval
        elif kind == "result":
            self.result_path = value
            self._finish("done")

    def _cancel_quietly(self, job_id):
        try:
            self.client.cancel_job(job_id)
        except ITKITClientError:
            pass  # already finished or gone: nothing left to cancel

    def _finish(self, phase, error=None):
        self.phase, self.error = phase, error
        self._t1 = time.monotonic()
        if self._executor is not None:
            self._executor.shutdown(wait=False)


itkit_tasks = slicer_hidden_module("itkit_tasks")
