"""Data modules: tiny datasets written in the real on-disk formats under tmp_path (no network)."""

from __future__ import annotations

import inspect
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

import lightning_nas.data.cifar10 as cifar_mod
import lightning_nas.data.kws as kws_mod
from lightning_nas.data import TaskDataModule, datamodules
from lightning_nas.data.cifar10 import CIFAR10DataModule
from lightning_nas.data.digits import DigitsDataModule
from lightning_nas.data.kws import KWSDataModule
from lightning_nas.data.vww import VWWDataModule
from lightning_nas.errors import DatasetNotFoundError, UserError


def ids(ds) -> set:
    return {int(i) for i in ds.indices}


# ---------------------------------------------------------------------------------------- generic
def test_registry_and_metadata_before_setup(tmp_path):
    registry = datamodules()  # every task module of lightning_nas.data, found without a list
    known = {"digits": ((1, 8, 8), 10), "cifar10": ((3, 32, 32), 10), "kws": ((1, 49, 10), 12), "vww": ((3, 96, 96), 2)}
    assert set(known) <= set(registry)
    for name, cls in registry.items():
        assert issubclass(cls, TaskDataModule) and cls.task == name
        params = inspect.signature(cls.__init__).parameters
        kwargs = {"data_dir": str(tmp_path / "nothing")} if "data_dir" in params else {}
        dm = cls(**kwargs)  # no disk access yet
        shape = (dm.input_shape, dm.num_classes)
        assert len(dm.input_shape) == 3 and min(dm.input_shape) > 0 and dm.num_classes >= 2
        assert shape == known.get(name, shape)
        assert dm.hparams["seed"] == 0
        for p in inspect.signature(cls.__init__).parameters.values():
            assert p.name == "self" or p.annotation is not inspect.Parameter.empty, (cls, p.name)
    assert VWWDataModule(data_dir="x", resolution=64).input_shape == (3, 64, 64)


def test_jsonargparse_builds_from_config():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(DigitsDataModule, "data")
    cfg = parser.parse_object({"data": {"batch_size": 16, "train_fraction": 0.5}})
    dm = parser.instantiate_classes(cfg).data
    assert isinstance(dm, DigitsDataModule) and dm.batch_size == 16 and dm.train_fraction == 0.5


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction + test_fraction"),
        ({"train_fraction": 0.0}, "train_fraction"),
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
    ],
)
def test_bad_arguments_raise_user_error(kwargs, name):
    with pytest.raises(UserError, match=re.escape(name)):
        DigitsDataModule(**kwargs)


# ----------------------------------------------------------------------------------------- digits
def test_digits_splits_shapes_and_normalisation():
    dm = DigitsDataModule(batch_size=32)
    dm.setup("fit")
    sizes = [len(dm.train_set), len(dm.val_set), len(dm.test_set)]
    assert sizes == [1257, 270, 270] and sum(sizes) == 1797
    idx = {k: set(v.tolist()) for k, v in dm.split_indices.items()}
    assert not (idx["train"] & idx["val"]) and not (idx["train"] & idx["test"]) and not (idx["val"] & idx["test"])
    for ds in (dm.train_set, dm.val_set, dm.test_set):
        assert set(ds.tensors[1].tolist()) == set(range(10))  # stratified: every class in every split
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    train_x = dm.train_set.tensors[0]
    assert abs(train_x.mean().item()) < 1e-4 and abs(train_x.std().item() - 1) < 1e-2
    train_set = dm.train_set
    dm.setup("test")  # idempotent
    assert dm.train_set is train_set
    assert next(iter(dm.val_dataloader()))[0].shape == (32, 1, 8, 8)


def test_digits_determinism_seed_and_shuffle():
    a, b, c = DigitsDataModule(seed=3), DigitsDataModule(seed=3), DigitsDataModule(seed=4)
    for dm in (a, b, c):
        dm.setup()
    for k in ("train", "val", "test"):
        assert np.array_equal(a.split_indices[k], b.split_indices[k])
    assert not np.array_equal(a.split_indices["val"], c.split_indices["val"])
    ya = [y for _, y in a.train_dataloader()]
    yb = [y for _, y in b.train_dataloader()]
    assert all(torch.equal(p, q) for p, q in zip(ya, yb))
    # train shuffles, val does not
    assert not torch.equal(torch.cat(ya), a.train_set.tensors[1])
    assert torch.equal(torch.cat([y for _, y in a.val_dataloader()]), a.val_set.tensors[1])


def test_digits_train_fraction_subset():
    full = DigitsDataModule(seed=1)
    part, part2 = DigitsDataModule(seed=1, train_fraction=0.25), DigitsDataModule(seed=1, train_fraction=0.25)
    for dm in (full, part, part2):
        dm.setup()
    assert len(part.train_set) == round(0.25 * 1257)
    assert part.train_set.indices == part2.train_set.indices
    assert len(set(part.train_set.indices)) == len(part.train_set)
    assert len(part.val_set) == len(full.val_set) and len(part.test_set) == len(full.test_set)


# ------------------------------------------------------------------------------------------ cifar
def write_cifar(root: Path, per_batch: int = 20, n_test: int = 10) -> Path:
    """Official layout; pixel [0,0,0] of each image encodes its global index (train) or 200 + i (test)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for b, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        data[:, 0] = (200 if name == "test_batch" else b * per_batch) + np.arange(n)
        batch = {b"batch_label": name.encode(), b"labels": [i % 10 for i in range(n)], b"data": data,
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


def test_cifar_missing_raises_clear_error(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as err:
        dm.setup()
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "download=true" in msg and "\n" not in msg
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, UserError)


def test_a_data_dir_naming_the_dataset_folder_itself_is_told_to_name_its_parent(tmp_path):
    """data_dir is the folder that holds cifar-10-batches-py/ or speech_commands_v0.02/ (and VWW's the
    one with person/ and non_person/): pointing at the wrong level says which folder to give."""
    folder = write_cifar(tmp_path)
    with pytest.raises(DatasetNotFoundError) as err:
        CIFAR10DataModule(data_dir=str(folder)).setup()
    assert f"set --data.init_args.data_dir {tmp_path}" in str(err.value) and "download=true" not in str(err.value)
    sc = write_speech_commands(tmp_path / "kws")
    with pytest.raises(DatasetNotFoundError) as err:
        kws(sc).setup()
    assert f"set --data.init_args.data_dir {tmp_path / 'kws'}" in str(err.value)
    vww = tmp_path / "v" / "vww"
    for label in ("person", "non_person"):
        write_images(vww / label, 2, (0, 0, 0))
    for wrong in (tmp_path / "v", vww / "person"):  # one level too high, one too deep
        with pytest.raises(DatasetNotFoundError) as err:
            VWWDataModule(data_dir=str(wrong)).setup()
        assert str(err.value).endswith(f"set --data.init_args.data_dir {vww}") and "\n" not in str(err.value)


def test_cifar_download_requested_calls_downloader(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, md5=None, **kw):
        calls.append((url, download_root, md5))
        write_cifar(Path(download_root))

    monkeypatch.setattr(cifar_mod, "download_and_extract_archive", fake_download)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=True, batch_size=4)
    dm.prepare_data()
    dm.setup()
    assert calls == [(cifar_mod.URL, str(tmp_path), "c58f30108f718f92721af3b95e74349a")]
    assert cifar_mod.URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert len(dm.train_set) == 90


def test_cifar_reads_official_format(tmp_path):
    write_cifar(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), batch_size=8, augment=False, val_fraction=0.1)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (90, 10, 10)
    assert not ids(dm.train_set) & ids(dm.val_set) and len(ids(dm.train_set) | ids(dm.val_set)) == 100
    assert sorted(int(dm.val_set[i][1]) for i in range(10)) == list(range(10))  # stratified
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (8, 3, 32, 32) and y.tolist() == [i % 10 for i in range(8)]
    expected = (np.arange(200, 208) / 255 - 0.4914) / 0.2470  # red channel, pixel (0, 0), normalised
    assert np.allclose(x[:, 0, 0, 0].numpy(), expected, atol=1e-5)
    # val images come from the training batches, identified by their encoded index
    x_val, _ = dm.val_set[0]
    assert round(((x_val[0, 0, 0] * 0.2470 + 0.4914) * 255).item()) == dm.val_set.indices[0]


def test_cifar_augment_only_on_train_and_seeded_split(tmp_path):
    write_cifar(tmp_path)
    a = CIFAR10DataModule(data_dir=str(tmp_path), seed=5)
    b = CIFAR10DataModule(data_dir=str(tmp_path), seed=5, train_fraction=0.5)
    a.setup()
    b.setup()
    assert a.val_set.indices == b.val_set.indices
    assert len(b.train_set) == 45
    torch.manual_seed(0)
    train_views = {a.train_set[0][0].sum().item() for _ in range(8)}
    assert len(train_views) > 1  # random crop / flip
    assert torch.equal(a.val_set[0][0], a.val_set[0][0])
    assert a.train_dataloader().dataset is a.train_set
    # BatchNorm recalibration data: the same training images, without crop / flip, and the
    # training split itself stays augmented
    plain = b.calibration_dataloader().dataset
    assert len(plain) == 45 and [plain[i][1] for i in range(45)] == [b.train_set[i][1] for i in range(45)]
    assert len({plain[0][0].sum().item() for _ in range(8)}) == 1
    x = plain[3][0]
    image = b.train_set.dataset.dataset.images[b.train_set.dataset.indices[b.train_set.indices[3]]]
    assert torch.allclose(x * torch.tensor(cifar_mod.STD).view(3, 1, 1) + torch.tensor(cifar_mod.MEAN).view(3, 1, 1),
                          image.float() / 255, atol=1e-5)
    assert len({b.train_set[0][0].sum().item() for _ in range(8)}) > 1
    unaugmented = CIFAR10DataModule(data_dir=str(tmp_path), augment=False)
    assert unaugmented.calibration_dataloader().dataset is unaugmented.train_set


# -------------------------------------------------------------------------------------------- kws
KW_WORDS, UNKNOWN_WORDS = ("yes", "no", "go"), ("cat", "dog")


def write_speech_commands(root: Path) -> Path:
    """6 clips per word (4 train / 1 val / 1 test), 2 background-noise files of 3 s."""
    sc = root / "speech_commands_v0.02"
    rng = np.random.default_rng(0)
    val, test = [], []
    t = np.arange(16000) / 16000
    for w, word in enumerate(KW_WORDS + UNKNOWN_WORDS):
        (sc / word).mkdir(parents=True)
        for i in range(6):
            name = f"{word}/spk{i}_nohash_0.wav"
            length = 8000 if i == 0 else 16000  # one short clip -> padded
            tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * w + 10 * i) * t[:length])
            soundfile.write(sc / name, tone.astype(np.float32), 16000, subtype="PCM_16")
            if i == 4:
                val.append(name)
            elif i == 5:
                test.append(name)
    (sc / "validation_list.txt").write_text("\n".join(val) + "\n")
    (sc / "testing_list.txt").write_text("\n".join(test) + "\n")
    (sc / "_background_noise_").mkdir()
    for k in range(2):
        noise = 0.1 * rng.standard_normal(48000).astype(np.float32)
        soundfile.write(sc / "_background_noise_" / f"noise{k}.wav", noise, 16000)
    return sc


@pytest.fixture
def speech(tmp_path):
    write_speech_commands(tmp_path)
    return tmp_path


def kws(data_dir, **kw):
    kw.setdefault("unknown_ratio", 0.5)
    kw.setdefault("silence_ratio", 0.25)
    return KWSDataModule(data_dir=str(data_dir), batch_size=8, **kw)


def test_kws_splits_labels_and_features(speech):
    dm = kws(speech)
    dm.setup()
    labels = {s: getattr(dm, f"{s}_set").tensors[1].tolist() for s in ("train", "val", "test")}
    # train: 4 clips x 3 keywords; unknown = ceil(0.5 * 12) = 6 of 8; silence = ceil(0.25 * 12) = 3
    assert {c: labels["train"].count(c) for c in set(labels["train"])} == {0: 4, 1: 4, 9: 4, 10: 3, 11: 6}
    # val/test: 3 keywords; unknown = min(2, ceil(1.5)) = 2; silence = ceil(0.75) = 1
    for s in ("val", "test"):
        assert {c: labels[s].count(c) for c in set(labels[s])} == {0: 1, 1: 1, 9: 1, 10: 1, 11: 2}
    # lists are honoured and splits are disjoint
    files = {s: {rel for rel, _ in dm.files[s]} for s in ("train", "val", "test")}
    listed_val = set((speech / "speech_commands_v0.02" / "validation_list.txt").read_text().split())
    assert files["val"] == listed_val and not files["train"] & (files["val"] | files["test"])
    assert all(lab == 11 for rel, lab in dm.files["train"] if rel.split("/")[0] in UNKNOWN_WORDS)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 49, 10) and x.dtype == torch.float32 and y.dtype == torch.int64
    train_x = dm.train_set.tensors[0]
    assert torch.isfinite(train_x).all()
    assert torch.allclose(train_x.mean(dim=(0, 1, 2)), torch.zeros(10), atol=1e-4)


def test_kws_read_clip_pads_and_mfcc_shape(speech):
    """The clip is the written waveform (a 200 Hz tone of 0.5 s, 16-bit), zero-padded to 1 s; its
    features are log-mel cepstra: 49 frames of 40 ms every 20 ms, constant over a steady tone,
    and a doubled amplitude (+6.02 dB in every mel band) raises only c0, by 6.02 dB x sqrt(40)
    (orthonormal DCT)."""
    clip = kws_mod.read_clip(speech / "speech_commands_v0.02" / "yes" / "spk0_nohash_0.wav")
    assert clip.shape == (16000,) and clip.dtype == np.float32 and not clip[8000:].any()
    tone = 0.3 * np.sin(2 * np.pi * 200 * np.arange(8000) / 16000)
    assert np.abs(clip[:8000] - tone).max() <= 1 / 32768 + 1e-6  # PCM_16 rounding
    # One clip per call: librosa's top_db floor is relative to the loudest clip of the whole call.
    features = np.concatenate([kws_mod.mfcc(clip[None]), kws_mod.mfcc(2 * clip[None])])
    assert features.shape == (2, 49, 10) and features.dtype == np.float32
    steady = features[0, :23]  # frames 0..22 lie inside the tone (frame k: samples 320k .. 320k + 640)
    assert np.abs(steady - steady.mean(0)).max() < 0.05 * np.abs(steady).max()
    assert np.abs(features[0, 30:] - steady.mean(0)).max() > 10  # the padded silence is not the tone
    shift = features[1] - features[0]
    assert np.allclose(shift[:23, 0], 20 * np.log10(2) * np.sqrt(40), atol=0.05)
    assert np.allclose(shift[:23, 1:], 0, atol=0.05)


def test_kws_feature_cache_reused(speech, monkeypatch):
    first = kws(speech)
    first.setup()
    cache = speech / "speech_commands_v0.02" / ".lightning_nas_cache"
    assert sorted(p.name.split("_")[0] for p in cache.glob("*.npz")) == ["test", "train", "val"]

    def no_reads(*a, **k):
        raise AssertionError("WAV read although features are cached")

    monkeypatch.setattr(soundfile, "read", no_reads)
    second = kws(speech)
    second.setup()
    for s in ("train", "val", "test"):
        for t1, t2 in zip(getattr(first, f"{s}_set").tensors, getattr(second, f"{s}_set").tensors):
            assert torch.equal(t1, t2)
    with pytest.raises(AssertionError, match="WAV read"):  # other settings -> other cache entry
        kws(speech, silence_ratio=0.5).setup()


def test_kws_seeded(speech):
    a, b, c = kws(speech, seed=1), kws(speech, seed=1), kws(speech, seed=2)
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.train_set.tensors[0], b.train_set.tensors[0])
    assert not torch.equal(a.train_set.tensors[0], c.train_set.tensors[0])  # other unknowns / silence crops
    assert len(kws(speech, train_fraction=0.5, seed=1).train_dataloader().dataset) == round(0.5 * 21)


def test_kws_missing_and_download(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as err:
        kws(tmp_path).setup()
    msg = str(err.value)
    assert str(tmp_path / "speech_commands_v0.02") in msg and "download=true" in msg and "\n" not in msg

    calls = []

    def fake_download(url, download_root, **kw):
        calls.append(url)
        write_speech_commands(Path(download_root).parent)

    monkeypatch.setattr(kws_mod, "download_and_extract_archive", fake_download)
    dm = kws(tmp_path, download=True)
    dm.setup()
    assert calls == ["http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"]
    assert len(dm.test_set) == 6


def test_kws_bad_ratio():
    with pytest.raises(UserError, match="unknown_ratio"):
        KWSDataModule(unknown_ratio=-1)


# -------------------------------------------------------------------------------------------- vww
def write_images(folder: Path, n: int, color: tuple[int, int, int]) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (24, 20), color).save(folder / f"img{i:03d}.png")


def test_vww_flat_layout_split(tmp_path):
    write_images(tmp_path / "person", 10, (255, 0, 0))
    write_images(tmp_path / "non_person", 10, (0, 0, 255))
    (tmp_path / "person" / "notes.txt").write_text("ignored")
    dm = VWWDataModule(data_dir=str(tmp_path), resolution=16, batch_size=4, val_fraction=0.2, test_fraction=0.2)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (12, 4, 4)
    paths = {s: {p for p, _ in dm.files[s]} for s in ("train", "val", "test")}
    assert len(paths["train"] | paths["val"] | paths["test"]) == 20
    for s in ("val", "test"):
        assert sorted(lab for _, lab in dm.files[s]) == [0, 0, 1, 1]  # stratified
    assert all(lab == ("/person/" in p) for p, lab in dm.files["train"])  # person=1, non_person=0
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 3, 16, 16) and y.dtype == torch.int64
    # red images (person) have a larger red than blue channel after normalisation, and vice versa
    assert all((img[0].mean() > img[2].mean()) == bool(lab) for img, lab in zip(x, y))
    same = VWWDataModule(data_dir=str(tmp_path), resolution=16, val_fraction=0.2, test_fraction=0.2)
    same.setup()
    assert same.files == dm.files


def test_vww_presplit_layout(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        write_images(tmp_path / split / "person", n, (200, 10, 10))
        write_images(tmp_path / split / "non_person", n, (10, 10, 200))
    dm = VWWDataModule(data_dir=str(tmp_path), resolution=8, batch_size=32, train_fraction=0.5)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (6, 4, 6)
    assert all(f"/{s}/" in p for s in ("train", "val", "test") for p, _ in dm.files[s])
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (6, 3, 8, 8)


def test_vww_recalibration_data_is_the_training_split_without_augmentation(tmp_path):
    # images with structure (a random crop or flip of a solid colour would look the same)
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 1), ("test", 1)):
        for label in ("person", "non_person"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                    tmp_path / split / label / f"img{i}.png")
    dm = VWWDataModule(data_dir=str(tmp_path), resolution=8, batch_size=32, train_fraction=0.5)
    dm.setup()
    torch.manual_seed(0)
    assert len({dm.train_set[0][0].sum().item() for _ in range(8)}) > 1  # training: random crop / flip
    plain, _ = next(iter(dm.calibration_dataloader()))  # recalibration: resized only, every time
    again, _ = next(iter(dm.calibration_dataloader()))
    assert plain.shape == (4, 3, 8, 8) and torch.equal(plain, again)
    first = Image.open(dm.train_set.dataset.items[dm.train_set.indices[0]][0]).convert("RGB")
    assert torch.equal(plain[0], dm.test_set.transform(first))
    assert len({dm.train_set[0][0].sum().item() for _ in range(8)}) > 1  # the training split is unchanged


def test_vww_missing_raises_with_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        VWWDataModule(data_dir=str(tmp_path / "vww")).setup()
    msg = str(err.value)
    assert str(tmp_path / "vww") in msg and "non_person" in msg and "visualwakewords" in msg and "\n" not in msg
    write_images(tmp_path / "vww" / "person", 2, (0, 0, 0))
    with pytest.raises(DatasetNotFoundError, match="non_person"):
        VWWDataModule(data_dir=str(tmp_path / "vww")).setup()
