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
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl (another libc): the helpers' own checks remain
        return
    if os.getppid() != parent_pid:
        os._exit(1)


def helper_executor(workers, start_method=None):
    """A ProcessPoolExecutor of `workers` helpers that end with this process."""
    return cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(start_method),
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
