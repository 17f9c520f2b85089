"""One writer per training session: `<session_name>.lock`, created atomically (O_EXCL, which
holds on NFS too), holding the writer's host, pid and process start time.

A second run of the same session stops in one line naming the holder. A lock whose process is
gone (a run killed with -9, a crashed node of the same host) is taken over, said in one line;
the start time tells a reused pid from the holder. A lock held on another host cannot be
checked from here: it stands until that run ends or the file is removed.
"""
import contextlib
import os
import socket


def _start_time(pid):
    """The process's start time in clock ticks since boot (Linux), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid, start):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    now = _start_time(pid)
    return start in (None, "None") or now is None or now == start


def _holder_line():
    return f"{socket.gethostname()} {os.getpid()} {_start_time(os.getpid())}\n"


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def session_lock(path, enabled=True, say=print):
    """Hold the lock file `path` for the block; `enabled=False` (torchrun ranks other than 0)
    holds nothing. Raises ValueError naming the holder when another live run holds it."""
    if not enabled:
        yield
        return
    mine = _holder_line()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = _read(path)
            if held is None:  # released meanwhile
                continue
            host, pid, start = (held.split() + ["?", "0", "None"])[:3]
            if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid), start):
                raise ValueError(f"{path}: the session is being written by pid {pid} on {host}; wait for that "
                                 "run to end (or remove this file if it is gone)") from None
            if _read(path) == held:  # still the dead run's: take it over
                try:
                    os.remove(path)
                except FileNotFoundError:  # another run took it over first: ask again
                    continue
                say(f"took over {path} from pid {pid}, which is gone")
            continue
        with os.fdopen(fd, "w") as f:
            f.write(mine)
        break
    try:
        yield
    finally:
        if _read(path) == mine:
            os.remove(path)
