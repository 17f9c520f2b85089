"""Helper processes (loader workers, CRF and evaluation pools) end with the process that
started them, a kill -9 included: no orphans holding memory after a killed run."""
import concurrent.futures as cf
import ctypes
import multiprocessing
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid, *_ignored):
    """Initialiser for a helper process: it ignores Ctrl-C, and Linux sends it SIGKILL when its
    parent ends (elsewhere that part does nothing). `parent_pid` closes the race of a parent
    that died before this ran; extra arguments (a loader's worker id) are ignored, so it serves
    as worker_init_fn via partial."""
    # Ctrl-C reaches the whole process group: the main process decides what stops, and when.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # blocked while it started (HelperExecutor): a pending one drops
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl (another libc): the helpers' own checks remain
        return
    if os.getppid() != parent_pid:
        os._exit(1)


class HelperExecutor(cf.ProcessPoolExecutor):
    """A ProcessPoolExecutor whose helpers start with Ctrl-C blocked (they start on demand, inside
    `submit`): one pressed while a spawned interpreter starts up (seconds) is dropped by its
    initialiser instead of killing it, and reaches this process once the helper is started."""

    def submit(self, fn, /, *args, **kwargs):
        if not hasattr(signal, "pthread_sigmask"):
            return super().submit(fn, *args, **kwargs)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return super().submit(fn, *args, **kwargs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def helper_executor(workers, start_method=None):
    """A process pool of `workers` helpers that end with this process and leave Ctrl-C to it."""
    return HelperExecutor(workers, mp_context=multiprocessing.get_context(start_method),
                          initializer=die_with_parent, initargs=(os.getpid(),))


class BoundedPool:
    """The one pool for helper work: top-level functions on `num_workers` helper processes (of
    `start_method`: "spawn" is safe after CUDA starts; None is the platform's default), or
    threads with `threads=True` (file writes, which release the GIL), or inline with 0.

    `submit` blocks while `max_pending` jobs (default 2 per worker) are outstanding, so memory
    stays bounded when a fast producer (the GPU) feeds slow consumers (the CRF); `map` keeps
    the input order. Fail fast: a job that raised makes the next `submit` (or leaving the
    `with` block) raise its exception. On leaving, the jobs still waiting are dropped after an
    error and finished otherwise; running ones always finish, so no helper is killed while it
    writes, and a dead helper is an error (BrokenProcessPool), not a wait.
    """

    def __init__(self, num_workers, start_method=None, threads=False, max_pending=None):
        self.num_workers = int(num_workers)
        if self.num_workers < 0:
            raise ValueError(f"BoundedPool: num_workers must be >= 0, got {num_workers}")
        self.max_pending = max(1, int(max_pending) if max_pending is not None else 2 * self.num_workers)
        self._pending = set()
        self._executor = None
        if self.num_workers and threads:
            self._executor = cf.ThreadPoolExecutor(max_workers=self.num_workers)
        elif self.num_workers:
            self._executor = helper_executor(self.num_workers, start_method)

    def submit(self, fn, *args, **kwargs):
        """Schedule fn(*args, **kwargs); returns a concurrent.futures.Future."""
        if self._executor is None:
            future = cf.Future()
            future.set_result(fn(*args, **kwargs))
            return future
        self._reap()
        while len(self._pending) >= self.max_pending:
            cf.wait(self._pending, return_when=cf.FIRST_COMPLETED)
            self._reap()
        future = self._executor.submit(fn, *args, **kwargs)
        self._pending.add(future)
        return future

    def map(self, fn, iterable, chunksize=1):
        """fn over `iterable` on the helpers, results in order (lazily); `chunksize` items per task."""
        if self._executor is None:
            return map(fn, iterable)
        return self._executor.map(fn, iterable, chunksize=chunksize)

    def join(self):
        """Wait for every submitted job; raises the first failure."""
        cf.wait(self._pending)
        self._reap()

    def _reap(self):
        done = {f for f in self._pending if f.done()}
        self._pending -= done
        for future in done:
            error = future.exception()
            if error is not None:
                raise error

    def close(self, cancel=False):
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=cancel)
            self._executor = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.close(cancel=True)
            return False
        try:
            self.join()
        finally:
            self.close(cancel=True)
        return False
