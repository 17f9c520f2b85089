"""Helper processes (loader workers, CRF and evaluation pools) end with the process that
started them, a kill -9 included: no orphans holding memory after a killed run."""
import concurrent.futures as cf
import contextlib
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


@contextlib.contextmanager
def helper_pool(workers, start_method=None):
    """A process pool of `workers` helpers that end with this process. On leaving (an error
    included) the tasks still waiting are dropped; running ones and up to workers + 1 already
    queued finish. No helper is killed while it writes a result, which can leave
    multiprocessing.Pool.terminate() waiting forever (a test run hung there once), and a dead
    helper is an error (BrokenProcessPool), not a wait."""
    executor = helper_executor(workers, start_method)
    try:
        yield executor
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
