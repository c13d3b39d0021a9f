"""Image datasets on small generated fixtures (every format), their errors, and the image backbones' shapes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bregzoo import BregzooError, create_backbone, create_dataset


pytestmark = pytest.mark.usefixtures("one_thread")


# -- fixtures -------------------------------------------------------------------------------------
def _fake_cifar_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    return rng.randint(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.randint(0, 10, n).astype(np.uint8)


def _write_cifar_bin(folder: Path, n: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The official binary layout: label byte + R, G, B planes, row-major; n records a file."""
    folder.mkdir(parents=True)
    written = {}
    for k, name in enumerate([f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]):
        pixels, labels = _fake_cifar_arrays(n, k)
        records = np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
        written[name] = (pixels, labels)
    return written


def _write_cifar_py(folder: Path, n: int = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder.mkdir(parents=True)
    written = {}
    for k, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        pixels, labels = _fake_cifar_arrays(n, 10 + k)
        batch = {b"batch_label": b"fake", b"labels": labels.tolist(), b"data": pixels.reshape(n, -1),
                 b"filenames": [b"x.png"] * n}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = (pixels, labels)
    return written


def _to_float(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).float() / 127.5 - 1


# -- digits ---------------------------------------------------------------------------------------
def test_digits_split_is_fixed_disjoint_and_scaled():
    train, test = create_dataset("digits"), create_dataset("digits:split=test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.data_shape == test.data_shape == (1, 8, 8)
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and 0 <= y <= 9
    assert train.pixels.max() == 16  # integer grey levels 0..16 map to [-1, 1]
    assert float(train.to_float(train.pixels).min()) == -1.0 and float(train.to_float(train.pixels).max()) == 1.0
    flat = lambda d: {tuple(p.flatten().tolist()) + (int(lab),) for p, lab in zip(d.pixels, d.labels)}
    assert len(flat(train) & flat(test)) < 5  # the raw data has a few exact duplicates; the indices are disjoint
    again = create_dataset("digits:split=test")
    assert torch.equal(again.pixels, test.pixels)
    s = train.sample(5, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 8, 8) and s.min() >= -1 and s.max() <= 1
    with pytest.raises(BregzooError, match="split"):
        create_dataset("digits:split=val")


# -- cifar10 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("point_at", ["parent", "folder"])
def test_cifar10_binary_reads_records_exactly(tmp_path, point_at):
    written = _write_cifar_bin(tmp_path / "cifar-10-batches-bin")
    root = tmp_path if point_at == "parent" else tmp_path / "cifar-10-batches-bin"
    train = create_dataset("cifar10", root=str(root))
    test = create_dataset("cifar10", root=str(root), split="test")
    assert (len(train), len(test)) == (15, 3) and train.data_shape == (3, 32, 32)
    pixels, labels = written["data_batch_2.bin"]
    x, y = train[3]  # the first record of the second file
    assert torch.equal(x, _to_float(pixels[0])) and y == labels[0]
    x, y = test[2]
    assert torch.equal(x, _to_float(written["test_batch.bin"][0][2])) and y == written["test_batch.bin"][1][2]
    assert train.sample(4).shape == (4, 3, 32, 32)


def test_cifar10_python_version_reads_through_the_restricted_unpickler(tmp_path):
    written = _write_cifar_py(tmp_path / "cifar-10-batches-py")
    train = create_dataset("cifar10", root=str(tmp_path))
    assert len(train) == 10
    pixels, labels = written["data_batch_1"]
    x, y = train[1]
    assert torch.equal(x, _to_float(pixels[1])) and y == labels[1]


class _Evil:
    def __reduce__(self):
        import builtins

        return builtins.exec, ("open(__import__('os').environ['BREGZOO_PWNED'], 'w').write('pwned')",)


def test_malicious_cifar_pickle_does_not_execute(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("BREGZOO_PWNED", str(marker))
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_py(folder)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(BregzooError, match="refusing to load the global .*exec"):
        create_dataset("cifar10", root=str(tmp_path))
    assert not marker.exists()


def test_cifar10_missing_dir_says_what_to_download_and_where(tmp_path):
    with pytest.raises(BregzooError) as err:
        create_dataset("cifar10", root=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert "\n" not in msg
    assert "cifar-10-binary.tar.gz" in msg and "nowhere" in msg and "data_batch_1.bin" in msg


def test_cifar10_truncated_binary_is_a_clear_error(tmp_path):
    _write_cifar_bin(tmp_path / "cifar-10-batches-bin")
    f = tmp_path / "cifar-10-batches-bin" / "data_batch_4.bin"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(BregzooError, match="data_batch_4.bin.*truncated or corrupt"):
        create_dataset("cifar10", root=str(tmp_path))


def test_cifar10_incomplete_folder_names_the_missing_file(tmp_path):
    _write_cifar_bin(tmp_path / "cifar-10-batches-bin")
    (tmp_path / "cifar-10-batches-bin" / "data_batch_5.bin").unlink()
    with pytest.raises(BregzooError, match="data_batch_5.bin.*missing"):
        create_dataset("cifar10", root=str(tmp_path))


def test_cifar10_truncated_pickle_and_wrong_shape_are_clear_errors(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_py(folder)
    f = folder / "data_batch_2"
    f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(BregzooError, match="data_batch_2.*truncated or corrupt"):
        create_dataset("cifar10", root=str(tmp_path))
    f.write_bytes(pickle.dumps({b"data": np.zeros((2, 784), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(BregzooError, match=r"shape \(2, 784\).*3x32x32"):
        create_dataset("cifar10", root=str(tmp_path))


# -- image folder ---------------------------------------------------------------------------------
def _write_pngs(root: Path) -> None:
    from PIL import Image

    rng = np.random.RandomState(0)
    for sub, size in (("cats", (40, 30)), ("dogs", (16, 16))):
        (root / sub).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / sub / f"{i}.png")
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(root / "white.jpg")


def test_image_folder_resizes_crops_and_labels(tmp_path):
    _write_pngs(tmp_path)
    ds = create_dataset("image-folder", root=str(tmp_path), size=8)
    assert len(ds) == 5 and ds.data_shape == (3, 8, 8)
    labels = sorted(ds[i][1] for i in range(len(ds)))
    assert labels == [0, 0, 0, 1, 1]  # cats=0, dogs=1, the top-level file 0
    white = ds[ds.files.index(tmp_path / "white.jpg")][0]
    assert torch.allclose(white, torch.ones(3, 8, 8), atol=0.02)
    grey = create_dataset("image-folder", root=str(tmp_path), size=4, channels=1)
    assert grey.sample(3).shape == (3, 1, 4, 4)
    assert all(-1 <= float(v) <= 1 for v in grey.sample(3).flatten())


def test_image_folder_errors(tmp_path):
    with pytest.raises(BregzooError, match="not a directory"):
        create_dataset("image-folder", root=str(tmp_path / "missing"))
    with pytest.raises(BregzooError, match="no .png"):
        create_dataset("image-folder", root=str(tmp_path))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    ds = create_dataset("image-folder", root=str(tmp_path))
    with pytest.raises(BregzooError, match="broken.png"):
        ds[0]
    with pytest.raises(BregzooError, match="channels"):
        create_dataset("image-folder", root=str(tmp_path), channels=4)


# -- unet backbone --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 16, 16), (3, 32, 32)])
def test_unet_shapes_and_scalar_head(shape):
    torch.manual_seed(0)
    spec = "unet:channels=16,mults=1x2x2,blocks=1,attn=8"
    net = create_backbone(spec, data_shape=shape)
    head = create_backbone(spec, data_shape=shape, scalar_output=True)
    x, c = torch.randn(3, *shape), torch.randn(3)
    assert net(x, c).shape == (3, *shape)
    assert head(x, c).shape == (3,)
    assert not hasattr(head, "up")  # the estimator is the encoder only
    assert sum(p.numel() for p in head.parameters()) < sum(p.numel() for p in net.parameters())


def test_unet_is_time_conditioned_and_trainable():
    torch.manual_seed(0)
    net = create_backbone("unet:channels=16,mults=1x2,blocks=1", data_shape=(1, 8, 8))
    x = torch.randn(4, 1, 8, 8)
    assert torch.count_nonzero(net(x, torch.zeros(4))) == 0  # zero-initialised output layer
    for p in net.parameters():  # leave the zero init so that every path carries signal
        p.data.add_(0.05 * torch.randn_like(p))
    out = net(x, torch.zeros(4))
    assert not torch.allclose(out, net(x, torch.ones(4)))  # c_noise changes the output
    assert torch.allclose(out[:2], net(x[:2], torch.zeros(2)), atol=1e-5)  # per-sample, no batch coupling
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_unet_option_parsing_and_shape_errors():
    net = create_backbone("unet:channels=8,mults=1x2,blocks=1,attn=none", data_shape=(1, 8, 8))
    assert net(torch.randn(2, 1, 8, 8), torch.zeros(2)).shape == (2, 1, 8, 8)
    with pytest.raises(BregzooError, match="divisible by 4"):
        create_backbone("unet:mults=1x2x2", data_shape=(1, 6, 6))
    with pytest.raises(BregzooError, match="image data"):
        create_backbone("unet", data_shape=(2,))
    with pytest.raises(BregzooError, match="mults"):
        create_backbone("unet:mults=1-2", data_shape=(1, 8, 8))  # '1-2' parses as -1


# -- timm trunk -----------------------------------------------------------------------------------
def test_timm_trunk_is_a_time_conditioned_scalar_estimator():
    torch.manual_seed(0)
    net = create_backbone("timm:model=resnet18", data_shape=(1, 8, 8), scalar_output=True).eval()
    x = torch.randn(3, 1, 8, 8)
    out = net(x, torch.zeros(3))
    assert out.shape == (3,)
    assert not torch.allclose(out, net(x, torch.full((3,), 2.0)))  # the extra channel carries c_noise
    assert net.model.conv1.in_channels == 2
    with pytest.raises(BregzooError, match="scalar output only"):
        create_backbone("timm:model=resnet18", data_shape=(1, 8, 8))
    with pytest.raises(BregzooError, match="resnet18"):
        create_backbone("timm:model=resnet1B", data_shape=(1, 8, 8), scalar_output=True)


def test_timm_pretrained_is_offline_only(tmp_path, monkeypatch):
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save_file

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(BregzooError, match="not on this machine.*checkpoint=FILE"):
        create_backbone("timm:model=resnet18,pretrained=true", data_shape=(3, 16, 16), scalar_output=True)
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    # A file in the Hugging Face cache layout is found and loaded; the first conv is adapted to 4 channels.
    torch.manual_seed(1)
    src = timm.create_model("resnet18")
    snap = tmp_path / "hf" / "models--timm--resnet18.a1_in1k"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("abc")
    (snap / "snapshots" / "abc").mkdir(parents=True)
    save_file(src.state_dict(), str(snap / "snapshots" / "abc" / "model.safetensors"))
    net = create_backbone("timm:model=resnet18,pretrained=true", data_shape=(3, 16, 16), scalar_output=True)
    assert torch.equal(net.model.layer1[0].conv1.weight, src.layer1[0].conv1.weight)
    assert net.model.conv1.weight.shape[1] == 4
    # An explicit checkpoint file works too, and a missing one is a clear error.
    save_file(src.state_dict(), str(tmp_path / "r18.safetensors"))
    net = create_backbone("timm", data_shape=(3, 16, 16), scalar_output=True, checkpoint=str(tmp_path / "r18.safetensors"))
    assert torch.equal(net.model.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    with pytest.raises(BregzooError, match="does not exist"):
        create_backbone("timm", data_shape=(3, 16, 16), scalar_output=True, checkpoint=str(tmp_path / "none.pt"))
