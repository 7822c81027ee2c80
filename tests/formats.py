"""Small, separable datasets written in the official on-disk formats of the real tasks (CIFAR-10
python pickles, Speech Commands WAV folders with validation_list.txt / testing_list.txt, Visual
Wake Words image folders): what a user brings, at a size a test can train on."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
OTHER_WORDS = ["bed", "cat"]


def write_cifar10(root: Path, per_class: int = 30, test_per_class: int = 10, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py``: five training batches and ``test_batch`` (dicts of uint8 rows
    ``[R(1024) G(1024) B(1024)]``, byte keys, protocol 2). Class ``c`` is a noisy image of its own
    colour and stripe orientation."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def images(n_per_class: int) -> tuple[np.ndarray, list[int]]:
        labels = [c for c in range(10) for _ in range(n_per_class)]
        data = np.empty((len(labels), 3, 32, 32), dtype=np.float64)
        yy, xx = np.mgrid[0:32, 0:32]
        for i, c in enumerate(labels):
            colour = np.array([(c * 37) % 256, (c * 91 + 60) % 256, (c * 53 + 120) % 256], dtype=np.float64)
            stripes = 15 * np.sin((xx * np.cos(c * 0.3) + yy * np.sin(c * 0.3)) * 0.8)
            data[i] = colour[:, None, None] + stripes + rng.normal(0, 10, (3, 32, 32))
        order = rng.permutation(len(labels))
        return np.clip(data, 0, 255).astype(np.uint8).reshape(len(labels), 3072)[order], [labels[i] for i in order]

    train, train_labels = images(per_class)
    chunks = np.array_split(np.arange(len(train_labels)), 5)
    for b, chunk in enumerate(chunks, 1):
        _dump(folder / f"data_batch_{b}", f"training batch {b} of 5", train[chunk], [train_labels[i] for i in chunk])
    test, test_labels = images(test_per_class)
    _dump(folder / "test_batch", "testing batch 1 of 1", test, test_labels)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"class{c}".encode() for c in range(10)],
                                                        b"num_cases_per_batch": len(chunks[0]),
                                                        b"num_vis": 3072}, protocol=2))
    return folder


def _dump(path: Path, label: str, data: np.ndarray, labels: list[int]) -> None:
    batch = {b"batch_label": label.encode(), b"labels": labels, b"data": data,
             b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(labels))]}
    with open(path, "wb") as f:
        pickle.dump(batch, f, protocol=2)


def write_speech_commands(root: Path, clips_per_word: int = 10, seed: int = 0) -> Path:
    """``root/speech_commands_v0.02/<word>/<speaker>_nohash_<n>.wav`` (16 kHz mono PCM16), the official
    ``validation_list.txt`` / ``testing_list.txt`` and ``_background_noise_/``. Each word is a
    noisy tone of its own pitch (the keywords are told apart by their MFCCs)."""
    import soundfile

    rng = np.random.default_rng(seed)
    sc = root / "speech_commands_v0.02"
    t = np.arange(16000) / 16000
    val, test = [], []
    for w, word in enumerate(KEYWORDS + OTHER_WORDS):
        (sc / word).mkdir(parents=True)
        for i in range(clips_per_word):
            name = f"{word}/{i:08x}_nohash_0.wav"
            tone = 0.4 * np.sin(2 * np.pi * 150 * (1.35 ** w) * t) + 0.02 * rng.standard_normal(16000)
            soundfile.write(sc / name, tone.astype(np.float32), 16000, subtype="PCM_16")
            if i % 5 == 3:
                val.append(name)
            elif i % 5 == 4:
                test.append(name)
    (sc / "validation_list.txt").write_text("\n".join(val) + "\n")
    (sc / "testing_list.txt").write_text("\n".join(test) + "\n")
    (sc / "_background_noise_").mkdir()
    for k in range(2):
        soundfile.write(sc / "_background_noise_" / f"noise{k}.wav",
                        (0.05 * rng.standard_normal(48000)).astype(np.float32), 16000)
    return sc


def write_vww(root: Path, per_class: int = 40, seed: int = 0, size: tuple[int, int] = (48, 40)) -> Path:
    """``root/{person,non_person}/*.jpg`` (the MLPerf Tiny ``vw_coco2014_96`` layout): "person"
    images are reddish with a bright blob, "non_person" bluish, with noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, colour in (("person", (200, 60, 50)), ("non_person", (40, 80, 200))):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(per_class):
            img = np.clip(np.array(colour)[None, None, :] + rng.normal(0, 30, (size[1], size[0], 3)), 0, 255)
            if label == "person":
                cy, cx = rng.integers(8, size[1] - 8), rng.integers(8, size[0] - 8)
                img[cy - 6:cy + 6, cx - 4:cx + 4] = 255
            Image.fromarray(img.astype(np.uint8)).save(folder / f"COCO_{i:06d}.jpg", quality=95)
    return root
