"""Google Speech Commands v0.02 keyword spotting (12 classes, 49x10 MFCC features)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile
import torch
from torch.utils.data import TensorDataset
from torchvision.datasets.utils import download_and_extract_archive

from lightning_nas.data.base import TaskDataModule, check_fraction, ensure_dataset
from lightning_nas.errors import DatasetNotFoundError, UserError

URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
FOLDER = "speech_commands_v0.02"
NOISE_DIR = "_background_noise_"
CACHE_DIR = ".lightning_nas_cache"
KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
CLASSES = KEYWORDS + ("_silence_", "_unknown_")
SILENCE, UNKNOWN = 10, 11
SAMPLE_RATE = 16000
MFCC = dict(sr=SAMPLE_RATE, n_mfcc=10, n_fft=640, hop_length=320, n_mels=40, center=False)
CACHE_VERSION = 1  # bump when the feature pipeline changes
SPLITS = ("train", "val", "test")


def read_clip(path: Path) -> np.ndarray:
    """Read a WAV as float32 mono, padded/trimmed to one second."""
    audio, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    if sr != SAMPLE_RATE:
        raise UserError(f"{path} has sample rate {sr}, expected {SAMPLE_RATE}")
    audio = audio.mean(axis=1)[:SAMPLE_RATE]
    return np.pad(audio, (0, SAMPLE_RATE - len(audio)))


def mfcc(clips: np.ndarray) -> np.ndarray:
    """(N, 16000) waveforms -> (N, 49, 10) float32 MFCCs."""
    import librosa

    out = [librosa.feature.mfcc(y=clips[i : i + 512], **MFCC) for i in range(0, len(clips), 512)]
    return np.ascontiguousarray(np.concatenate(out).transpose(0, 2, 1), dtype=np.float32)


class KWSDataModule(TaskDataModule):
    """Speech Commands v0.02 from ``data_dir/speech_commands_v0.02`` (input 1x49x10, 12 classes).

    Splits follow ``validation_list.txt`` / ``testing_list.txt`` (train = all other clips). Non-keyword
    words become ``_unknown_``, subsampled (seeded) to ``unknown_ratio`` x the number of keyword clips;
    ``silence_ratio`` x that many ``_silence_`` clips are random 1 s crops of the background noise at a
    random volume. Features are cached per split in ``.lightning_nas_cache`` and standardised per MFCC
    coefficient with train mean/std. No waveform augmentation (features are precomputed).
    """

    task = "kws"
    _input_shape = (1, 49, 10)
    _num_classes = 12
    task_defaults = {"batch_size": 100, "data_dir": "data"}

    def __init__(
        self,
        data_dir: Optional[str] = None,
        download: bool = False,
        batch_size: Optional[int] = None,
        num_workers: Optional[int] = None,
        seed: int = 0,
        train_fraction: float = 1.0,
        unknown_ratio: float = 0.1,
        silence_ratio: float = 0.1,
    ):
        batch_size = self.task_default("batch_size", batch_size)
        data_dir = self.task_default("data_dir", data_dir)
        super().__init__(batch_size=batch_size, num_workers=num_workers, seed=seed, train_fraction=train_fraction)
        self.data_dir = str(data_dir)
        self.download = bool(download)
        ratio = dict(allow_zero=True, allow_one=True, maximum=10, meaning=" (times the number of keyword clips)")
        self.unknown_ratio = check_fraction("unknown_ratio", unknown_ratio, **ratio)
        self.silence_ratio = check_fraction("silence_ratio", silence_ratio, **ratio)
        self.files: dict[str, list[tuple[str, int]]] = {}  # per split, filled by setup (silence excluded)
        self.save_hyperparameters()

    @property
    def root(self) -> Path:
        return Path(self.data_dir) / FOLDER

    def _missing(self, root: Optional[Path] = None) -> list[str]:
        needed = ("validation_list.txt", "testing_list.txt", NOISE_DIR)
        return [n for n in needed if not ((root or self.root) / n).exists()]

    def prepare_data(self) -> None:
        """Download and extract the official archive if it is missing and ``download`` is set."""
        ensure_dataset("Speech Commands v0.02", self.root, self._missing, self.download,
                       lambda: download_and_extract_archive(URL, download_root=str(self.root), remove_finished=True),
                       URL, f"extract {URL} there", lambda: not self._missing(Path(self.data_dir)))

    # -- file lists ---------------------------------------------------------------------------
    def _file_lists(self) -> dict[str, list[tuple[str, int]]]:
        """``{split: [(relative wav path, label), ...]}`` with unknown words subsampled."""
        listed = {}
        for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
            lines = (self.root / name).read_text().splitlines()
            listed[split] = {line.strip() for line in lines if line.strip()}
        words = sorted(d.name for d in os.scandir(self.root) if d.is_dir() and not d.name.startswith((".", "_")))
        by_split: dict[str, list[str]] = {s: [] for s in SPLITS}
        for word in words:
            for name in sorted(f.name for f in os.scandir(self.root / word) if f.name.endswith(".wav")):
                rel = f"{word}/{name}"
                split = "val" if rel in listed["val"] else "test" if rel in listed["test"] else "train"
                by_split[split].append(rel)

        label = {w: KEYWORDS.index(w) if w in KEYWORDS else UNKNOWN for w in words}
        lists = {}
        for i, split in enumerate(SPLITS):
            items = [(rel, label[rel.split("/")[0]]) for rel in by_split[split]]
            known = [it for it in items if it[1] != UNKNOWN]
            unknown = [it for it in items if it[1] == UNKNOWN]
            k = min(len(unknown), math.ceil(self.unknown_ratio * len(known)))
            rng = np.random.default_rng([self.seed, i])
            keep = np.sort(rng.permutation(len(unknown))[:k])
            lists[split] = known + [unknown[j] for j in keep]
        return lists

    def _noise_files(self) -> list[str]:
        return sorted(f.name for f in os.scandir(self.root / NOISE_DIR) if f.name.endswith(".wav"))

    # -- features -----------------------------------------------------------------------------
    def _compute(self, split_index: int, items: list[tuple[str, int]], n_silence: int, noise: list[str]):
        clips = [read_clip(self.root / rel) for rel, _ in items]
        labels = [lab for _, lab in items]
        if n_silence:
            if not noise:
                raise DatasetNotFoundError(f"no background-noise WAVs in {self.root / NOISE_DIR} (needed for _silence_)")
            rng = np.random.default_rng([self.seed, split_index, 2])
            tracks = [soundfile.read(str(self.root / NOISE_DIR / n), dtype="float32", always_2d=True)[0].mean(1) for n in noise]
            for _ in range(n_silence):
                track = tracks[rng.integers(len(tracks))]
                start = rng.integers(max(1, len(track) - SAMPLE_RATE + 1))
                crop = np.pad(track[start : start + SAMPLE_RATE], (0, max(0, SAMPLE_RATE - len(track))))
                clips.append(crop * rng.uniform(0, 1))
                labels.append(SILENCE)
        x = mfcc(np.stack(clips)) if clips else np.zeros((0, 49, 10), np.float32)
        return x, np.asarray(labels, dtype=np.int64)

    def _split_features(self, split_index: int, items, noise) -> tuple[np.ndarray, np.ndarray]:
        split = SPLITS[split_index]
        n_known = sum(lab != UNKNOWN for _, lab in items)
        n_silence = math.ceil(self.silence_ratio * n_known)
        settings = [CACHE_VERSION, MFCC, self.seed, split, n_silence, noise, items]
        digest = hashlib.sha1(json.dumps(settings).encode()).hexdigest()[:16]
        path = self.root / CACHE_DIR / f"{split}_{digest}.npz"
        if path.is_file():
            with np.load(path) as z:
                return z["x"], z["y"]
        x, y = self._compute(split_index, items, n_silence, noise)
        try:
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                np.savez(f, x=x, y=y)
            os.replace(tmp, path)
        except OSError as e:
            warnings.warn(f"could not cache KWS features in {path.parent}: {e}")
        return x, y

    def _load_splits(self):
        self.prepare_data()
        lists, noise = self._file_lists(), self._noise_files()
        self.files = lists
        feats = [self._split_features(i, lists[s], noise) for i, s in enumerate(SPLITS)]
        if len(feats[0][1]) == 0:
            raise DatasetNotFoundError(f"no training WAVs found under {self.root}/<word>/")
        train_x = feats[0][0]
        mean = train_x.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)
        std = train_x.std(axis=(0, 1), dtype=np.float64).astype(np.float32) + 1e-6
        return tuple(
            TensorDataset(torch.from_numpy((x - mean) / std).unsqueeze(1), torch.from_numpy(y)) for x, y in feats
        )
