"""FID/KID/PRC through torch-fidelity with the shipped digits classifier; the Inception weights rules."""

from __future__ import annotations

import pytest
import torch

from bregzoo import BregzooError, create_dataset, create_metric
from bregzoo_zoo.digits_cnn import ASSET, load_digits_cnn
from bregzoo_zoo.fidelity import DIGITS_EXTRACTOR, compute_fidelity, register_digits_extractor


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    train, test = create_dataset("digits"), create_dataset("digits", split="test")
    return train, torch.stack([test[i][0] for i in range(len(test))])


def test_shipped_classifier_reproduces_its_recorded_test_accuracy(digits):
    net, meta = load_digits_cnn()
    test = create_dataset("digits", split="test")
    with torch.no_grad():
        acc = float((net(test.to_float(test.pixels)).argmax(1) == test.labels).float().mean())
    assert f"{acc:.4f}" == meta["test_accuracy"]
    assert acc >= 0.97
    assert ASSET.stat().st_size < 1_000_000  # small enough to ship in the wheel


def test_extractor_is_registered_in_torch_fidelity():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    from torch_fidelity.utils import create_feature_extractor

    assert register_digits_extractor() == register_digits_extractor() == DIGITS_EXTRACTOR  # idempotent
    assert DIGITS_EXTRACTOR in FEATURE_EXTRACTORS_REGISTRY
    fe = create_feature_extractor(DIGITS_EXTRACTOR, ["penultimate", "logits"], cuda=False, verbose=False)
    feats, logits = fe(torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8))
    assert feats.shape == (5, 128) and logits.shape == (5, 10)
    with pytest.raises(Exception, match="uint8"):
        fe(torch.zeros(2, 1, 8, 8))


def test_fid_kid_prc_separate_real_digits_from_noise(digits):
    train, held_out = digits
    real = compute_fidelity(held_out, train)
    noise = compute_fidelity(torch.rand_like(held_out) * 2 - 1, train)
    assert set(real) == {"fid", "kid", "kid_std", "precision", "recall", "f_score"}
    assert real["fid"] < 15 and noise["fid"] > 20 * real["fid"]
    assert abs(real["kid"]) < 3 * real["kid_std"] + 1 and noise["kid"] > 10
    assert real["precision"] > 0.8 and real["recall"] > 0.8
    assert noise["precision"] < 0.5 and noise["recall"] < 0.2
    # The registered metric is the same computation, one metric at a time.
    assert create_metric("fid")(held_out, train) == {"fid": pytest.approx(real["fid"])}


def test_fidelity_input_errors(digits):
    train, held_out = digits
    with pytest.raises(BregzooError, match=r"shape \(4, 3, 8, 8\)"):
        create_metric("fid")(torch.zeros(4, 3, 8, 8), train)
    with pytest.raises(BregzooError, match="feature_extractor"):
        create_metric("fid", feature_extractor="clip")(held_out, train)


def test_inception_needs_a_local_weights_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("BREGZOO_INCEPTION_WEIGHTS", raising=False)
    fake = type("D", (), {"data_shape": (3, 32, 32), "sample": lambda self, n, generator=None: torch.zeros(n, 3, 32, 32)})()
    with pytest.raises(BregzooError) as err:
        create_metric("fid")(torch.zeros(4, 3, 32, 32), fake)
    msg = str(err.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in msg and "BREGZOO_INCEPTION_WEIGHTS" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg
    monkeypatch.setenv("BREGZOO_INCEPTION_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(BregzooError, match="nope.pth' does not exist"):
        create_metric("kid")(torch.zeros(4, 3, 32, 32), fake)


class _Evil:
    def __reduce__(self):
        import builtins

        return builtins.exec, ("open(__import__('os').environ['BREGZOO_PWNED'], 'w').write('pwned')",)


def test_inception_weights_that_are_not_plain_tensors_are_refused(tmp_path, monkeypatch):
    marker, bad = tmp_path / "pwned", tmp_path / "weights.pth"
    monkeypatch.setenv("BREGZOO_PWNED", str(marker))
    torch.save({"fc.weight": _Evil()}, bad)
    fake = type("D", (), {"data_shape": (3, 32, 32), "sample": lambda self, n, generator=None: torch.zeros(n, 3, 32, 32)})()
    with pytest.raises(BregzooError, match="refusing to unpickle"):
        create_metric("fid", inception_weights=str(bad))(torch.zeros(4, 3, 32, 32), fake)
    assert not marker.exists()


@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory):
    """A file of InceptionV3's layout with random weights (the real one is a 95 MB download), saved as plain tensors."""
    from unittest import mock

    from torch_fidelity import feature_extractor_inceptionv3 as fe

    with mock.patch.object(fe, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("inception") / "weights.pth"
    torch.save(net.state_dict(), path)
    return path


def test_fid_reads_the_inception_file_once_and_only_weights_only(random_inception_weights, monkeypatch):
    from bregzoo_zoo import fidelity

    fidelity._inception_state.cache_clear()
    real_load, calls = torch.load, []

    def weights_only_load(*args, **kwargs):  # torch-fidelity's own loader passes weights_only=False
        calls.append(kwargs.get("weights_only"))
        assert kwargs.get("weights_only") is True, f"torch.load{args[:1]} with weights_only={kwargs.get('weights_only')}"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", weights_only_load)
    fake = type("D", (), {"data_shape": (3, 32, 32),
                          "sample": lambda self, n, generator=None: torch.rand(n, 3, 32, 32, generator=generator) * 2 - 1})()
    samples = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = create_metric("fid", inception_weights=str(random_inception_weights), reference=2)(samples, fake)
    assert torch.isfinite(torch.tensor(out["fid"])), out
    fidelity.inception_state(str(random_inception_weights))  # kid and prc of the same evaluation: no second load
    assert calls == [True]
