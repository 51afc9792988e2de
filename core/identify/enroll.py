"""Teach a trained identifier a new language from a few clips, without retraining.

The shipped model's backend is Gaussian (:class:`core.identify.backends.GaussianBackend`): every language
is a mean in a ``dim``-dimensional projection of the supervector, all sharing one covariance. A new
language is therefore one more mean: the average projected supervector of its clips. The projection,
the class means and the shared covariance travel in the checkpoint's ``backend`` entry; the logits are
folded back into the model's linear classifier, so identify runs exactly as fast as before.

``enroll(checkpoint, language, clips, out)`` writes a new checkpoint that records which clips taught it
(``enrolled``). An enrolled model answers every language with the Gaussian backend (a shipped model may
answer with a logistic regression, a little more accurate, which cannot grow), using the Gaussian backend's
own temperature and "ok" rule: measured on the original languages, not on the new one, as the record says.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable, Iterable

import torch

from core.audio.decode import load_audio
from core.audio.features import FeatureConfig, log_mel
from core.audio.speech import speech_seconds
from core.checkpoint import load_checkpoint, save_checkpoint
from core.errors import DeepLanguageError
from core.identify.backends import linear_from_backend
from core.identify.embeddings import clip_row
from core.identify.gmm import clip_input
from core.identify.pretrained import WhisperHead, WhisperHeadConfig, encoder_of
from core.identify.whisper import whisper_code
from core.identify.models import build_model
from core.data.datasets import AUDIO_SUFFIXES

MIN_SPEECH_SECONDS = 30.0  # less than this gives a mean too noisy to be a language (see the GMM model's README)
# A pretrained encoder's embedding is far less noisy per second: 15 s of speech (a minute of Common Voice clips
# holds 25-40 s) already gives a usable mean (bench/identify_enrol.py).
MIN_PRETRAINED_SPEECH_SECONDS = 15.0
MIN_CLIP_SPEECH_SECONDS = 0.5  # a clip with less speech than this teaches nothing and is skipped
LANGUAGE_CODE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$")  # es, yue, zh-CN, pt_BR

Clip = str | Path | tuple[str, bytes]


def clip_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files and folders (searched recursively for audio) -> audio files, sorted per folder."""
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES))
        else:
            files.append(path)
    return files


def enroll(checkpoint: str | Path, language: str, clips: list[Clip], out: str | Path, replace: bool = False,
           on_progress: Callable[..., None] | None = None) -> dict:
    """Add (or with ``replace``, re-teach) ``language`` from ``clips`` (paths or ``(name, bytes)`` pairs).

    Returns ``{"language", "languages", "n_used", "n_skipped", "skipped": [{"clip", "reason"}],
    "seconds_of_speech", "out"}``. Raises DeepLanguageError for a bad code, a known code without
    ``replace``, a checkpoint without a Gaussian backend, or too little speech (saying how much more).
    """
    if not LANGUAGE_CODE.match(language or ""):
        raise DeepLanguageError(f"{language!r} is not a language code; give one like es, yue or zh-CN.")
    state = load_checkpoint(checkpoint)
    labels = list(state["labels"])
    if language in labels and not replace:
        raise DeepLanguageError(f"{checkpoint} already knows {language!r}; pass --replace (replace=True) to "
                                f"re-teach it from these clips instead.")
    if state["model"]["kind"] == "whisper-head":
        return _enroll_pretrained(state, checkpoint, language, clips, out, replace, on_progress)
    backend = state.get("backend")
    if not backend or backend.get("kind") != "gauss":
        raise DeepLanguageError(f"{checkpoint} has no Gaussian backend, so it cannot learn a language without "
                                f"retraining. Use checkpoints/identify-default/best.pt (a whisper-head) "
                                f"or a gmm-supervector trained by checkpoints/identify-gmm/README.md's command.")
    model = build_model(state["model"]["kind"], state["model"]["config"])
    model.load_state_dict(state["state_dict"])
    model.eval()
    features = FeatureConfig.from_dict(state["features"])
    components = backend["components"].float()
    # The Gaussian backend standardises with its own statistics (the regression's scaler may differ slightly).
    mean = backend.get("mean", state["state_dict"]["scaler_mean"]).float()
    scale = backend.get("scale", state["state_dict"]["scaler_scale"]).float()

    def embed(audio):
        with torch.no_grad():
            x = clip_input(torch.from_numpy(log_mel(audio, features)))
            return (((model.supervectors(x)[0] - mean) / scale) @ components.T).double()

    embeddings, used, skipped, seconds = _embed_clips(clips, embed, features.sample_rate, language, on_progress)
    means = backend["class_means"].double()
    new_mean = torch.stack(embeddings).mean(0)[None]
    replacing = language in labels
    if replacing:
        index = labels.index(language)
        means = torch.cat([means[:index], new_mean, means[index + 1:]])
    else:
        labels.append(language)
        means = torch.cat([means, new_mean])
    weight, bias = linear_from_backend(components.double(), means, backend["precision"].double())
    # From here on every language is answered by the Gaussian backend, with its own calibration.
    state["state_dict"].update({"classifier.weight": weight.float(), "classifier.bias": bias.float(),
                                "scaler_mean": mean, "scaler_scale": scale})
    state["model"]["config"] = {**state["model"]["config"], "n_classes": len(labels), "backend": "gauss"}
    state["labels"] = labels
    state["backend"] = {**backend, "class_means": means.float()}
    state["calibration"] = backend.get("calibration") or state.get("calibration", {})
    record = {"language": language, "replaced": replacing,
              "from": str(checkpoint), "clips": used, "n_skipped": len(skipped), "seconds_of_speech": round(seconds, 1),
              "note": "answers come from the Gaussian backend; its temperature and ok rule were measured "
                      "on the original languages, not on this one"}
    state["enrolled"] = [*state.get("enrolled", []), record]
    save_checkpoint(state, out)
    return {"language": language, "languages": labels, "n_used": len(used), "n_skipped": len(skipped),
            "skipped": skipped, "seconds_of_speech": round(seconds, 1), "out": str(out)}


def _embed_clips(clips: list[Clip], embed: Callable, sample_rate: int, language: str,
                 on_progress: Callable[..., None] | None,
                 min_seconds: float = MIN_SPEECH_SECONDS) -> tuple[list, list, list, float]:
    """Each clip with speech -> ``embed(audio)``; unreadable or silent clips skipped with the reason."""
    embeddings, used, skipped, seconds = [], [], [], 0.0
    for done, clip in enumerate(clips, 1):
        name = clip[0] if isinstance(clip, tuple) else str(clip)
        try:
            audio = load_audio(clip[1] if isinstance(clip, tuple) else clip, sample_rate, name=name)
        except DeepLanguageError as error:
            skipped.append({"clip": name, "reason": str(error)})
            continue
        voiced = speech_seconds(audio)
        if voiced < MIN_CLIP_SPEECH_SECONDS:
            skipped.append({"clip": name, "reason": f"no speech ({voiced:.1f} s voiced)"})
        else:
            embeddings.append(embed(audio))
            used.append({"clip": Path(name).name, "seconds_of_speech": round(voiced, 2)})
            seconds += voiced
        if on_progress:
            on_progress(done, len(clips), used=len(used), skipped=len(skipped))
    if seconds < min_seconds:
        raise DeepLanguageError(
            f"{len(used)} clip(s) hold {seconds:.0f} s of speech ({len(skipped)} skipped); at least "
            f"{min_seconds:.0f} s is needed to learn {language!r}: add about "
            f"{max(1, math.ceil(min_seconds - seconds))} s more (a minute or more is better).")
    return embeddings, used, skipped, seconds


# Of its own teaching clips (each against a mean of the others) an enrolled language wins (0.8 gave ca 67.6 %).
ENROLLED_RECALL = 0.9


@torch.no_grad()
def enrolled_bias(model: WhisperHead, rows: torch.Tensor, projected: torch.Tensor, k: int) -> torch.Tensor:
    """The bias of enrolled language ``k``: the smallest that makes it win :data:`ENROLLED_RECALL` of its teaching
    clips, each scored with class mean of the other clips (leave one out), and never below the mean of the
    trained languages' biases (what it was before). A language Whisper confuses with a trained one (Catalan,
    heard as Spanish) needs a prior the trained languages got from their out-of-fold scores; with the others'
    mean it was recalled 53 % of the time from 3 speakers."""
    n = len(rows)
    floor = torch.cat([model.bias[:k], model.bias[k + 1:]]).mean()
    if n < 2:
        return floor
    needed = []
    for i in range(n):
        model.class_means[k] = (projected.sum(0) - projected[i]) / (n - 1)
        model.bias[k] = 0.0
        logits = model(rows[i: i + 1])[0]
        needed.append(torch.cat([logits[:k], logits[k + 1:]]).max() - logits[k])
    return torch.maximum(torch.quantile(torch.stack(needed), ENROLLED_RECALL), floor)


def _enroll_pretrained(state: dict, checkpoint, language: str, clips: list[Clip], out, replace: bool,
                       on_progress: Callable[..., None] | None) -> dict:
    """A ``whisper-head`` learns a language: one more mean in its Gaussian head, Whisper's own score of that
    language where Whisper knows it, and a bias (:func:`enrolled_bias`) from the teaching clips themselves."""
    labels = list(state["labels"])
    model = build_model(state["model"]["kind"], state["model"]["config"])
    model.load_state_dict(state["state_dict"])
    if not model.config.use_head:
        raise DeepLanguageError(f"{checkpoint} is Whisper's language-ID alone; train a whisper-head to teach it.")
    encoder = encoder_of(model)
    rows, used, skipped, seconds = _embed_clips(clips, lambda audio: torch.from_numpy(clip_row(audio, encoder)),
                                                16_000, language, on_progress, MIN_PRETRAINED_SPEECH_SECONDS)
    rows = torch.stack(rows)
    projected = ((model.embed(rows) - model.mean) / model.scale) @ model.components.T
    sd = state["state_dict"]
    codes = {code: i for i, code in enumerate(encoder.languages)}
    replacing = language in labels
    k = labels.index(language) if replacing else len(labels)
    if not replacing:
        labels.append(language)
        sd["class_means"] = torch.cat([sd["class_means"], projected.mean(0)[None]])
        sd["bias"] = torch.cat([sd["bias"], sd["bias"].mean()[None]])
        sd["whisper_index"] = torch.cat([sd["whisper_index"], torch.tensor([codes.get(whisper_code(language), -1)])])
    config = {**state["model"]["config"], "n_classes": len(labels), "whisper_index": sd["whisper_index"].tolist()}
    grown = WhisperHead(WhisperHeadConfig(**{**config, "whisper_index": tuple(config["whisper_index"])}))
    grown.load_state_dict(sd)
    sd["class_means"][k], sd["bias"][k] = projected.mean(0), enrolled_bias(grown, rows, projected, k)
    state["model"]["config"] = config
    state["labels"] = labels
    record = {"language": language, "replaced": replacing, "from": str(checkpoint), "clips": used,
              "n_skipped": len(skipped), "seconds_of_speech": round(seconds, 1),
              "note": "temperature and ok rule were measured on the original languages, not on this one"}
    state["enrolled"] = [*state.get("enrolled", []), record]
    save_checkpoint(state, out)
    return {"language": language, "languages": labels, "n_used": len(used), "n_skipped": len(skipped),
            "skipped": skipped, "seconds_of_speech": round(seconds, 1), "out": str(out)}
