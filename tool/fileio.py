"""Atomic file writes: outputs are either complete or absent, never half-written."""
import contextlib
import os
import re
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the extension so that writers choosing a format by suffix
    (PIL, np.savez) behave as for the final name.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def remove_temporaries(path):
    """Remove the temporaries of `path` that an atomic_path write killed midway left; returns them."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    pattern = re.compile(rf"\.{re.escape(base)}\.\w{{8}}\.tmp{re.escape(ext)}")  # mkstemp's 8 characters
    stale = [os.path.join(directory, n) for n in os.listdir(directory) if pattern.fullmatch(n)] \
        if os.path.isdir(directory) else []
    for f in stale:
        os.remove(f)
    return stale


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npz(path, **arrays):
    """np.savez_compressed, atomically; arrays only (loadable with allow_pickle=False)."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def require_files(paths, what):
    """Fail before a long run, not hours into it, when inputs are missing: one line, exit status 1."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"error: {missing[0]}: {what} not found ({len(missing)} of {len(paths)} missing)")


def loader_errors(batches):
    """Iterate a DataLoader; bad data met by a loader worker (ValueError, FileNotFoundError naming
    the file) ends the run with that message's last line instead of a traceback."""
    try:
        yield from batches
    except (ValueError, FileNotFoundError) as e:
        last = str(e).strip().splitlines()[-1]
        raise SystemExit("error: " + re.sub(r"^(ValueError|FileNotFoundError): ", "", last)) from None


@contextlib.contextmanager
def cli_errors():
    """Turn bad input met while setting up (a missing file, bad content) into one `error:` line."""
    try:
        yield
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
