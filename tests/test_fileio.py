"""Atomic writes leave a complete file or none; a killed write's temporary is found and removed."""
import os

import pytest

from tool.engine.files import atomic_path, remove_temporaries


def test_a_failed_write_leaves_no_file_and_the_old_one_intact(tmp_path):
    target = tmp_path / "a.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("disk gone")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.pt"]


def test_remove_temporaries_takes_only_those_of_the_path(tmp_path):
    target = tmp_path / "seam.resume.pt"
    with atomic_path(target) as tmp:  # as a kill -9 mid-write would leave it
        left = tmp
        os.link(tmp, tmp_path / "kept")
    os.rename(tmp_path / "kept", left)
    others = [tmp_path / ".seam.abcd1234.tmp.pth", tmp_path / ".seam.resume2.abcd1234.tmp.pt",
              tmp_path / ".seam.resume.abcd1234.tmp.pth"]
    for f in others:
        f.write_text("x")
    assert remove_temporaries(tmp_path, of=target) == [left]
    assert not os.path.exists(left) and all(f.exists() for f in others) and target.exists()
    assert remove_temporaries(tmp_path / "nowhere", of="x.pt") == []
