"""How much memory a GMM-supervector training will need, told before it starts, and refused when it will not fit.

Nothing in the fit holds the dataset (:mod:`core.identify.gmm`): clips are read one at a time and supervectors
go to disk. What still grows is small per row: the manifest, each row's label and speaker, and the Gaussian
backend's projection of every row (``backend_dim`` numbers, and the randomized SVD's ``backend_dim + 10``
column basis). The fixed parts are the interpreter with torch and scikit-learn, the UBM's EM over its frame
sample (responsibilities ``ubm_frames x n_components``) and the chunk being worked on.
"""

from __future__ import annotations

from dataclasses import replace

from core.errors import DeepLanguageError

GB = 1024 ** 3
BASE_BYTES = 0.6 * GB  # python, torch, scikit-learn, the Whisper-free identify stack: measured at about 0.55 GB
PER_CLIP_BYTES = 2_000  # manifest row, label, speaker, unit name
EM_ARRAYS = 4  # float64 (ubm_frames, n_components) arrays alive at once in GaussianMixture's EM
BASIS_ARRAYS = 4  # float64 (n_rows, backend_dim + 10) arrays in the randomized SVD (basis, product, LU factors)
CHUNK_ARRAYS = 4  # float64 (CHUNK_ROWS, embedding_dim) arrays alive at once in a chunk's products


def peak_bytes(cfg, n_clips: int, n_rows: int) -> float:
    """Estimated peak resident memory of fitting ``cfg`` (a GMMSupervectorConfig) on ``n_clips`` clips that
    give ``n_rows`` supervectors (copies and background included)."""
    from core.identify.vectors import CHUNK_ROWS

    dim = cfg.n_components * cfg.frame_dim
    em = cfg.ubm_frames * (cfg.n_components * EM_ARRAYS + cfg.frame_dim) * 8
    backend = n_rows * (cfg.backend_dim + 10) * BASIS_ARRAYS * 8 + CHUNK_ROWS * dim * CHUNK_ARRAYS * 8
    solver = dim * (cfg.n_classes + len(cfg.background_languages)) * 8 * 24  # L-BFGS keeps 10 pairs of steps
    return BASE_BYTES + n_clips * PER_CLIP_BYTES + max(em, backend + solver)


def available_bytes() -> float | None:
    """Memory the system can give now (``MemAvailable``), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check(cfg, n_clips: int, n_clean: int, n_background: int) -> float:
    """Refuse (DeepLanguageError) a fit that will not fit in memory, naming what it needs and what lowers it.

    ``n_clips``: clips read; ``n_clean``: training and validation clips (each gives ``1 + len(augment)`` rows);
    ``n_background``: background clips. Returns the estimate in bytes.
    """
    rows = n_clean * (1 + len(cfg.augment)) + n_background
    need, have = peak_bytes(cfg, n_clips, rows), available_bytes()
    if have is None or need <= have:
        return need
    options = []
    if cfg.augment:
        options.append(f"no augmentation (--model-config '{{\"augment\": []}}'): "
                       f"{peak_bytes(cfg, n_clips, n_clean + n_background) / GB:.1f} GB")
    if cfg.n_components > 64:
        fewer = replace(cfg, n_components=cfg.n_components // 2)
        options.append(f"{fewer.n_components} components (--model-config '{{\"n_components\": "
                       f"{fewer.n_components}}}'): {peak_bytes(fewer, n_clips, rows) / GB:.1f} GB")
    options.append("a subset of the data (--languages, or a smaller dataset folder)")
    raise DeepLanguageError(
        f"training the GMM supervector on {n_clips} clips ({rows} supervectors) needs about {need / GB:.1f} GB of "
        f"memory; {have / GB:.1f} GB is available. Lower it with: " + "; ".join(options) + ".")


def memory_error_message(cfg, n_clips: int, n_rows: int) -> str:
    """What a MemoryError in the middle of a fit means to the person who started it."""
    return (f"ran out of memory training the GMM supervector on {n_clips} clips ({n_rows} supervectors; estimated "
            f"{peak_bytes(cfg, n_clips, n_rows) / GB:.1f} GB). Free memory, or train with no augmentation "
            f"(--model-config '{{\"augment\": []}}'), fewer components, or a subset of the data (--languages).")
