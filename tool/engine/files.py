"""Writing outputs: atomically (complete or absent, never half-written), into folders checked
before the work, with one-line errors naming the path."""
import contextlib
import errno
import os
import re
import shutil
import tempfile

import numpy as np

from tool.vis import label_image


class WriteError(OSError):
    """An output that cannot be written (disk full, no permission, a file where a folder should
    be); its message is one line naming the path and the reason."""


# errno values that mean "this output cannot be written" (others pass through as they are)
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG, errno.EIO,
                errno.ENOTDIR, errno.EISDIR}


def _write_error(path, code):
    error = WriteError(f"{path}: cannot write: {os.strerror(code)} ({errno.errorcode.get(code, code)})")
    error.errno = code
    return error


def _disk_full(directory):
    try:
        return shutil.disk_usage(directory).free < 16 * 2**20
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the extension so that writers choosing a format by suffix
    (PIL, np.savez) behave as for the final name.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=directory)
        os.close(fd)
        yield tmp
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as e:
        # EEXIST, ENOENT: the folder cannot be made, before the temporary exists (later: an input's)
        if e.errno not in WRITE_ERRNOS | ({errno.EEXIST, errno.ENOENT} if tmp is None else set()):
            raise
        raise _write_error(path, e.errno) from None
    except RuntimeError:  # torch's zip writer reports a full disk as "unexpected pos ..."
        if not _disk_full(directory):
            raise
        raise _write_error(path, errno.ENOSPC) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def keep_as(path, other):
    """Make `other` a second name of the file at `path`, atomically (a hard link; a copy where the
    file system has none)."""
    with atomic_path(other) as tmp:
        os.remove(tmp)
        try:
            os.link(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)


def remove_temporaries(folder, of=None, before=None):
    """Remove the atomic_path temporaries in `folder` that a killed write left: those of the file
    `of` (a name in the folder) or of any file, and only those last written before `before` (a
    time.time(); not those another process of this run is writing now). Returns them."""
    if not os.path.isdir(folder):
        return []
    base, ext = (r".+", r"\.\w+") if of is None else map(re.escape, os.path.splitext(os.path.basename(of)))
    pattern = re.compile(rf"\.{base}\.\w{{8}}\.tmp{ext}")  # atomic_path's names: mkstemp's 8 random characters
    stale = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if pattern.fullmatch(name) and (before is None or os.path.getmtime(path) < before):
            os.remove(path)
            stale.append(path)
    return stale


UMASK = os.umask(0)  # read once, at import (before any thread), and put back
os.umask(UMASK)


def save_npz(path, **arrays):
    """np.savez_compressed, atomically; arrays only (loadable with allow_pickle=False)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def _nearest_existing(path):
    """`path` (absolute) or the nearest folder above it that exists."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def require_writable(folders):
    """Fail before the work, not at its first save, when an output folder cannot be made or
    written (WriteError naming it). Creates nothing: checks the nearest folder that exists."""
    for folder in folders:
        folder = os.path.abspath(os.fspath(folder))
        existing = _nearest_existing(folder)
        if not os.path.isdir(existing):
            raise WriteError(f"{folder}: cannot write: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise WriteError(f"{folder}: cannot write: {os.strerror(errno.EACCES)} (EACCES) in {existing}")


def require_files(paths, what):
    """Fail before a long run, not hours into it, when inputs are missing: one line, exit status 1."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise SystemExit(f"error: {missing[0]}: {what} not found ({len(missing)} of {len(paths)} missing)")


def size_text(nbytes):
    """A byte count for people: 12.3 GB, 4.1 MB, 512 kB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def check_free_space(needs, what="this run", override=None):
    """`needs`: {folder: bytes to be written there}. Summed per file system; a file system with
    less free space is a WriteError naming the folder, the need and the free space (and
    `override`, the flag that skips the check)."""
    per_device = {}
    for folder, need in needs.items():
        existing = _nearest_existing(os.path.abspath(folder))
        device = os.stat(existing).st_dev
        total, folders, _ = per_device.get(device, (0, [], existing))
        per_device[device] = (total + need, folders + [folder], existing)
    for need, folders, existing in per_device.values():
        free = shutil.disk_usage(existing).free
        if need > free:
            raise WriteError(f"{folders[0]}: {what} writes up to {size_text(need)} on this file system "
                             f"({', '.join(folders)}), {size_text(free)} are free"
                             + (f" ({override} to go on)" if override else ""))


def save_image(path, img):
    """A PIL image as a PNG, atomically."""
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def save_label_png(path, label):
    """An (H, W) label map (class ids, 255 = ignore) as a VOC-palette PNG, atomically."""
    save_image(path, label_image(label, path))
