"""``ebmbench data``: fetch the image sets and the Inception weights, or say where to put them.

Nothing here touches the network: the download paths are replaced by what torchvision and
torch.hub do offline (they raise), and the files-present path uses MNIST files written in
their own format.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from ebmbench.cli import main
from tests.test_images import _write_idx


def run_data(capsys, *args: str) -> tuple[int, str]:
    try:
        main(["data", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network: torchvision's and torch.hub's downloads fail as they do offline."""
    import torch
    import torchvision

    def no_network(*args, **kwargs):
        raise RuntimeError("Error downloading:\nTried https://x/, got:\n"
                           "<urlopen error [Errno -2] Name or service not known>")

    def no_hub(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    for name in ("MNIST", "FashionMNIST", "CIFAR10"):
        monkeypatch.setattr(getattr(torchvision.datasets, name), "download", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_hub)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_offline_it_says_which_files_to_put_where_and_exits_1(capsys, offline):
    data = offline / "data"
    code, out = run_data(capsys, "--data-dir", str(data))
    assert code == 1 and "Traceback" not in out
    for folder, files in [("MNIST/raw", "train-images-idx3-ubyte.gz"),
                          ("FashionMNIST/raw", "t10k-labels-idx1-ubyte.gz"),
                          ("cifar-10-batches-py", "data_batch_1..5")]:
        assert f"{data / folder}/" in out and files in out
    weights = offline / "torch" / "hub" / "checkpoints"
    assert "weights-inception-2015-12-05-6726825d.pth" in out and f"into {weights}/" in out
    assert "the download failed" in out and "Name or service not known" in out
    assert "4 missing; runs that need them are recorded as skipped" in out
    assert not (offline / "torch").exists() and not data.exists()  # no empty folders left
    # Datasets that need no files are not listed unless named.
    assert "digits" not in out


def test_no_download_only_checks(capsys, offline):
    code, out = run_data(capsys, "mnist", "digits", "--no-download",
                         "--data-dir", str(offline / "d"))
    assert code == 1
    assert "download is off" in out and "Name or service not known" not in out
    assert "ok: digits needs no files" in out


def test_present_files_are_found_and_described(capsys, offline):
    rng = np.random.default_rng(0)
    raw = offline / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 30), ("t10k", 12)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n))
    code, out = run_data(capsys, "mnist", "--no-download", "--data-dir", str(offline / "data"))
    assert code == 0, out
    assert out.strip() == f"ok: mnist: 30 training and 12 test images (1, 28, 28) in {raw}"


def test_an_unknown_name_is_a_user_error(capsys):
    code, out = run_data(capsys, "mnst")
    assert code == 2 and "Did you mean 'mnist'?" in out and "Traceback" not in out


def test_as_a_command_offline_no_traceback(tmp_path):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch")}
    proc = subprocess.run(
        [sys.executable, "-m", "ebmbench.cli", "data", "fashion_mnist", "--no-download",
         "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"{Path(tmp_path, 'data', 'FashionMNIST', 'raw')}/" in proc.stdout
