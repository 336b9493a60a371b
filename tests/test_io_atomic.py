"""foresplat.io.atomic: content lands only on success; temp files never linger."""

from __future__ import annotations

import json
import os

import pytest

from foresplat.io import atomic_open, atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_path_success_creates_parents_and_keeps_suffix(tmp_path):
    target = tmp_path / "a" / "b" / "out.tar.gz"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith("out.tar.gz") and tmp != target
        tmp.write_bytes(b"new")
        assert not target.exists()
    assert target.read_bytes() == b"new"
    assert _listing(target.parent) == ["out.tar.gz"]


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_error_keeps_old_content_and_removes_temp(tmp_path, exc):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(exc):
        with atomic_write(target) as tmp:
            tmp.write_bytes(b"partial")
            raise exc()
    assert target.read_bytes() == b"old"
    assert _listing(tmp_path) == ["x.bin"]


def test_atomic_write_nothing_written_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_write(tmp_path / "y.txt"):
            pass
    assert _listing(tmp_path) == []


def test_atomic_open_text_and_binary(tmp_path):
    with atomic_open(tmp_path / "t.txt", "w") as f:
        f.write("héllo\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(tmp_path / "t.txt", "wb") as f:
            f.write(b"zzz")
            raise KeyboardInterrupt
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "héllo\n"
    assert _listing(tmp_path) == ["t.txt"]
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "t.txt", "a"):
            pass


def test_helpers(tmp_path):
    assert atomic_write_bytes(tmp_path / "b", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert atomic_write_text(tmp_path / "d" / "t", "a\r\nb").read_bytes() == b"a\r\nb"
    obj = {"a": [1, 2.5, None], "b": "x"}
    p = atomic_write_json(tmp_path / "j.json", obj)
    assert json.loads(p.read_text()) == obj and p.read_text().endswith("\n")
    if os.name == "posix":  # regular permissions (umask), not mkstemp's 0600
        umask = os.umask(0)
        os.umask(umask)
        assert (p.stat().st_mode & 0o777) == (0o666 & ~umask)


def test_json_rejects_nan_and_objects_without_writing(tmp_path):
    (tmp_path / "j.json").write_text("{}")
    with pytest.raises(ValueError, match="j.json"):
        atomic_write_json(tmp_path / "j.json", {"x": float("nan")})
    with pytest.raises(TypeError, match="j.json"):
        atomic_write_json(tmp_path / "j.json", {"x": object()})
    assert (tmp_path / "j.json").read_text() == "{}"
    assert _listing(tmp_path) == ["j.json"]
