"""Checkpoints: safe loading (weights_only), refusal of pickles, atomic writes."""
import os
import pickle

import pytest
import torch
from mmengine.fileio import get_file_backend
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import _load_checkpoint

from toolbox import checkpoint_io
from toolbox.engine import checkpoint as ckpt
from toolbox.errors import UnsafeCheckpointError


class _Payload:
    """Unpickling this would create a marker file (it must never happen)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_plain_round_trip_restores_history_buffers(tmp_path):
    ckpt.install()
    buf = HistoryBuffer([1.0, 2.0, 4.0], [1, 1, 2], max_length=50)
    state = {"meta": {"epoch": 2}, "state_dict": {"w": torch.ones(2)},
             "message_hub": {"log_scalars": {"train/loss": buf}, "runtime_info": {"iter": 7}}}
    plain = {k: checkpoint_io.to_plain(v) for k, v in state.items()}
    path = tmp_path / "c.pth"
    torch.save(plain, path)
    # loadable by torch itself with weights_only=True: nothing beyond the allow-list
    with torch.serialization.safe_globals(checkpoint_io.SAFE_GLOBALS):
        torch.load(path, weights_only=True)
    loaded = _load_checkpoint(str(path), map_location="cpu")  # mmengine's entry point
    got = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert isinstance(got, HistoryBuffer)
    assert got.max_length == 50
    assert got.mean() == pytest.approx(buf.mean())
    assert got.data[1].tolist() == [1, 1, 2]
    assert loaded["message_hub"]["runtime_info"]["iter"] == 7


def test_unsafe_pickle_is_refused_and_not_executed(tmp_path):
    ckpt.install()
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "extra": _Payload(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        _load_checkpoint(str(path), map_location="cpu")
    assert "evil.pth" in str(info.value)
    assert "allow-list" in str(info.value)
    assert not marker.exists()


def test_missing_checkpoint_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        checkpoint_io.load_checkpoint(tmp_path / "nope.pth")


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    ckpt.install()
    target = tmp_path / "epoch_1.pth"
    backend = get_file_backend(str(target))
    assert isinstance(backend, ckpt.AtomicLocalBackend)
    backend.put(b"old contents", target)

    def boom(fd):
        raise KeyboardInterrupt  # killed between write and rename

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b"new contents that never land", target)
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_1.pth"]  # no temp file left


def test_pickle_module_error_type_is_unpickling_error(tmp_path):
    # guards the assumption load_checkpoint relies on
    path = tmp_path / "x.pth"
    torch.save({"x": _Payload(str(tmp_path / "m"))}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
