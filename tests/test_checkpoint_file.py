"""The checkpoint a run starts from is chosen, and an unusable one refused, before torch or a model is needed."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
from damaged_files import flip_one_bit

from trainspeed.errors import ConfigError, DataError
from trainspeed.record.checkpoint_file import checkpoint_problem, start_checkpoint
from trainspeed.resume import checkpoint_state


def _saved(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(64)}, "global_step": 7, "epoch": 1}, path)
    return path


def _zip_without_pickle(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return path


def _cut_short(path: Path) -> Path:
    data = _saved(path).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _flipped(member: str):
    def write(path: Path) -> Path:
        return flip_one_bit(_saved(path), member)

    return write


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _bytes(data: bytes):
    def write(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return write


PROBLEMS = [
    (lambda path: path, "no such file"),
    (_folder, "not a file"),
    (_bytes(b""), "an empty file"),
    (_bytes(b"garbage!"), "not a checkpoint, or one cut short (8 bytes"),
    (_cut_short, "not a checkpoint, or one cut short"),
    (_zip_without_pickle, "a zip archive, but not one written by torch.save"),
    (_flipped("data.pkl"), "damaged: x/data.pkl does not match the checksum it was saved with"),
    (_flipped("data/0"), "damaged: x/data/0 does not match the checksum"),
]


def test_torch_loads_a_damaged_tensor_without_complaint_so_the_checksum_is_checked(tmp_path):
    damaged = _flipped("data/0")(tmp_path / "x.ckpt")
    assert torch.load(damaged, weights_only=False)["state_dict"]["w"].abs().sum() > 0  # saved as zeros
    assert "damaged" in checkpoint_problem(damaged)


@pytest.mark.parametrize(("make", "problem"), PROBLEMS)
def test_an_unusable_file_is_named_with_its_problem(tmp_path, make, problem):
    path = make(tmp_path / "x.ckpt")
    assert problem in checkpoint_problem(path)
    with pytest.raises(ConfigError) as refused:
        start_checkpoint(tmp_path, None, str(path))
    assert str(refused.value).startswith(f"ckpt_path={str(path)!r} is not valid ({problem}")


def test_a_saved_checkpoint_is_accepted_and_chosen_by_each_setting(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    other = _saved(tmp_path / "other.ckpt")
    assert checkpoint_problem(other) is None
    assert start_checkpoint(tmp_path, None, str(other)) == str(other)
    assert start_checkpoint(tmp_path, str(tmp_path), None) is None  # resume= before the first checkpoint
    assert start_checkpoint(tmp_path, None, "last") == "last"  # left to Lightning
    _saved(last)
    assert start_checkpoint(tmp_path, str(tmp_path), None) == str(last)
    assert start_checkpoint(tmp_path, None, "last") == str(last)
    assert start_checkpoint(tmp_path, str(tmp_path), str(other)) == str(other)  # ckpt_path= wins, as in fit()
    last.write_bytes(b"\0" * 10)
    with pytest.raises(ConfigError, match=rf"^resume=.*{last}: not a checkpoint.*move {last} away"):
        start_checkpoint(tmp_path, str(tmp_path), None)
    with pytest.raises(ConfigError, match=rf"^ckpt_path='last' is not valid \({last}: not a checkpoint"):
        start_checkpoint(tmp_path, None, "last")


def test_a_checkpoint_torch_cannot_read_is_a_data_error_naming_it(tmp_path):
    path = tmp_path / "bad.ckpt"
    with zipfile.ZipFile(path, "w") as archive:  # the layout of torch.save, with a damaged pickle
        archive.writestr("bad/data.pkl", b"\x80\x02not a pickle")
        archive.writestr("bad/version", "3\n")
    assert checkpoint_problem(path) is None
    with pytest.raises(DataError, match=f"checkpoint {path} is unreadable or corrupt"):
        checkpoint_state(str(path))
    assert checkpoint_state(str(_saved(tmp_path / "good.ckpt"))).step == 7


def test_a_run_that_trained_is_not_resumed_from_step_0_when_its_checkpoint_is_gone(tmp_path):
    from report_fixtures import make_job

    from trainspeed.record.checkpoint_file import start_checkpoint

    run = make_job(tmp_path, 0, ["seed=0"], seconds=1.0)  # a record of 100 steps, no checkpoints/
    with pytest.raises(ConfigError, match=r"trained 100 steps, but checkpoints/last.ckpt is missing"):
        start_checkpoint(run, str(run), None)
    (run / "summary.json").unlink()  # killed before its first checkpoint and its record: it starts again
    assert start_checkpoint(run, str(run), None) is None
