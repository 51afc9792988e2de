"""Which language is spoken in a clip: decode -> speech check -> log-mel -> 3 s windows -> model -> one answer.

``identify(audio_or_path, bundle, languages)`` returns a plain dict (the CLI's JSON line, the
page's data)::

    {"path", "status": "ok" | "no_speech" | "uncertain", "language": str | None,
     "probabilities": {lang: p}, "best_guess": str | None, "seconds": float,
     "windows": [{"start", "end", "language", "probabilities"}]}

Only the audio is a feature: the file's name never reaches the model. Long clips are cut into
3 s windows every 1 s; each window's probabilities are renormalised over the allowed
languages and reported in ``windows`` (the timeline). The clip's answer is their mean over the
windows that hold speech, except for whole-clip models (the GMM supervector), which answer
clips up to 30 s from one pass over the whole clip (see :func:`core.models.scores_whole_clip`)
and draw the timeline from that same pass: each window's statistics are sums over the clip's
own frames (see :func:`core.identify.models.predict_clip`), so a 10 s clip's 1,000 frames are
scored once, not once per window that holds them and again for the clip (3,400 frames).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from core.audio.speech import VAD_HOP, speech_mask, MIN_SPEECH_SECONDS
from core.audio.decode import load_audio
from core.checkpoint import load_checkpoint, rebuild_model
from core.errors import DeepLanguageError
from core.audio.features import log_mel
from core.identify.models import (MODELS, build_model, clip_windows, input_normalization, normalize_windows, one_thread,
                                  predict_clip, scores_whole_clip)
from core.identify.card import CARD_FIELDS, DEFAULT_CHECKPOINT, ModelCard, card_from_checkpoint
from core.identify.pretrained import score_audio

MIN_WINDOW_SPEECH_SECONDS = 0.5  # windows with less speech than this don't vote (unless none has more)


@dataclass
class Identifier(ModelCard):
    """A loaded model and everything needed to feed it (its card): built once, never mutated (st.cache_resource)."""

    model: torch.nn.Module = field(kw_only=True)


def load_identifier(checkpoint_path: str | Path = DEFAULT_CHECKPOINT) -> Identifier:
    """Rebuild the model a checkpoint describes (its stored kind and config win) and load its weights."""
    checkpoint = load_checkpoint(checkpoint_path, CARD_FIELDS)  # the schema checked: one clear error
    model = rebuild_model(checkpoint, build_model, checkpoint_path, kinds=tuple(MODELS))
    card = card_from_checkpoint(checkpoint, checkpoint_path)
    if len(card.labels) != getattr(model.config, "n_classes", len(card.labels)):
        raise DeepLanguageError(f"checkpoint {checkpoint_path} is malformed: its 'labels' are not the "
                                f"{model.config.n_classes} language names its model answers. Retrain it.")
    return Identifier(**{f.name: getattr(card, f.name) for f in fields(ModelCard)}, model=model)


def calibrate(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature scaling on probabilities ``(..., n_classes)``: softmax(z / T) = p ** (1 / T), renormalised.

    Working on probabilities (not logits) keeps every model's forward untouched; renormalising over a
    subset of languages afterwards is the same as restricting the calibrated softmax.
    """
    if temperature == 1.0:
        return probabilities
    scaled = (probabilities.clamp(min=1e-30).log() / temperature)
    return torch.softmax(scaled, dim=-1)


def is_ok(probabilities: torch.Tensor, rule: dict) -> bool:
    """Whether a distribution ``(n_languages,)`` is confident enough for an answer under ``rule``."""
    ranked = probabilities.sort(descending=True).values
    top = float(ranked[0])
    margin = top - float(ranked[1]) if len(ranked) > 1 else 1.0
    return top >= rule["min_probability"] and margin >= rule["min_margin"]


def check_languages(languages: list[str] | None, labels: list[str]) -> None:
    if languages is None:
        return
    unknown = sorted(set(languages) - set(labels))
    if unknown or not languages:
        raise DeepLanguageError(f"unknown language(s) {', '.join(unknown) or '(none given)'}; "
                                f"this model knows {', '.join(labels)}.")


def identify(audio_or_path, bundle: Identifier, languages: list[str] | None = None, *,
             name: str | None = None, return_audio: bool = False) -> dict | tuple[dict, np.ndarray]:
    """Identify the language of one clip (a path, bytes, a file object or 16 kHz samples).

    ``languages`` restricts the answer (probabilities renormalised over them). A file that
    can't be decoded raises :class:`DeepLanguageError`; silence gives ``status="no_speech"``.
    ``return_audio``: also return the decoded 16 kHz samples (the page plays and draws them: one decode).
    """
    check_languages(languages, bundle.labels)
    allowed = [i for i, label in enumerate(bundle.labels) if languages is None or label in languages]
    path = str(audio_or_path) if isinstance(audio_or_path, (str, Path)) else name
    audio = load_audio(audio_or_path, bundle.features.sample_rate, name=name)
    seconds = len(audio) / bundle.features.sample_rate
    result = {"path": path, "status": "no_speech", "language": None, "probabilities": {}, "best_guess": None,
              "seconds": round(seconds, 3), "windows": []}
    voiced = speech_mask(audio)
    if voiced.sum() * VAD_HOP / bundle.features.sample_rate >= MIN_SPEECH_SECONDS:
        starts, probs, clip_probs, n_frames = score_clip(bundle, audio)
        result.update(_answer(bundle, starts, probs, clip_probs, n_frames, voiced, allowed))
    return (result, audio) if return_audio else result


def score_clip(bundle: Identifier, audio: np.ndarray) -> tuple[list[int], torch.Tensor, torch.Tensor | None, int]:
    """The one way a clip is scored, for every model: window starts (feature frames), window probabilities
    ``(n_windows, n_labels)``, the clip's ``(n_labels,)`` (None: the mean of its speech windows) and its frame count.
    All uncalibrated."""
    fps = bundle.features.frames_per_second
    if getattr(bundle.model, "pretrained_encoder", False):
        starts, probs, clip_probs, _ = score_audio(bundle.model, audio, bundle.window / fps, bundle.hop / fps)
        return starts, probs, clip_probs, int(np.ceil(len(audio) / bundle.features.sample_rate * fps))
    with one_thread():  # small tensors: a second thread only waits (see core.identify.models.one_thread)
        features = torch.from_numpy(log_mel(audio, bundle.features))
        return (*predict_clip(bundle.model, features, bundle.window, bundle.hop, fps), features.shape[1])


def _answer(bundle: Identifier, starts: list[int], probs: torch.Tensor, clip_probs: torch.Tensor | None,
            n_frames: int, voiced: np.ndarray, allowed: list[int]) -> dict:
    """identify's answer for a clip with speech: probabilities, windows, best guess and status."""
    result = {}
    fps = bundle.features.frames_per_second
    probs = calibrate(probs, bundle.temperature)[:, allowed]
    probs = probs / probs.sum(1, keepdim=True)
    # Speech per window, from the 10 ms VAD frames (the same hop as the features' by default).
    vad_per_frame = bundle.features.hop_length / VAD_HOP
    speech_s = np.array([voiced[int(s * vad_per_frame): int((s + bundle.window) * vad_per_frame)].sum()
                         for s in starts]) * VAD_HOP / bundle.features.sample_rate
    votes = speech_s >= MIN_WINDOW_SPEECH_SECONDS
    if clip_probs is not None:
        clip_probs = calibrate(clip_probs, bundle.temperature)[allowed]
        clip_probs = clip_probs / clip_probs.sum()
    else:
        clip_probs = probs[torch.from_numpy(votes)].mean(0) if votes.any() else probs.mean(0)

    labels = [bundle.labels[i] for i in allowed]
    # Plain floats first: indexing a tensor per number costs microseconds each, and there are windows x languages.
    window_rows, clip_row = probs.tolist(), clip_probs.tolist()
    result["probabilities"] = {label: round(p, 4) for label, p in zip(labels, clip_row)}
    result["windows"] = [
        {"start": round(s / fps, 2), "end": round(min(s + bundle.window, n_frames) / fps, 2),
         "language": labels[max(range(len(p)), key=p.__getitem__)], "speech_seconds": round(float(v), 2),
         "probabilities": {label: round(q, 4) for label, q in zip(labels, p)}}
        for s, p, v in zip(starts, window_rows, speech_s)
    ]
    result["best_guess"] = labels[int(clip_probs.argmax())]
    if is_ok(clip_probs, bundle.ok_rule):
        result.update(status="ok", language=result["best_guess"])
    else:
        result["status"] = "uncertain"
    return result


def error_result(path: str, message: str) -> dict:
    """The answer for a file that could not be read: same fields, status "error"."""
    return {"path": path, "status": "error", "language": None, "probabilities": {}, "best_guess": None,
            "seconds": None, "windows": [], "error": message}


@torch.no_grad()
def embed(audio_or_path, bundle: Identifier, *, name: str | None = None) -> np.ndarray:
    """The identifier's embedding of one clip, ``(embedding_dim,)``: what the study probes as kind "identify".

    Models that answer from the whole clip embed it in one pass; the others average the
    embeddings of their windows, as their answers average the windows' probabilities.
    """
    audio = load_audio(audio_or_path, bundle.features.sample_rate, name=name)
    if getattr(bundle.model, "pretrained_encoder", False):
        return score_audio(bundle.model, audio)[3][: bundle.model.embedding_dim]
    features = torch.from_numpy(log_mel(audio, bundle.features))
    normalization = input_normalization(bundle.model)
    if scores_whole_clip(bundle.model, features.shape[1], bundle.features.frames_per_second):
        windows = normalize_windows(features[None], kind=normalization)
    else:
        _, windows = clip_windows(features, bundle.window, bundle.hop, normalization)
    device = next(bundle.model.parameters()).device
    return bundle.model.embed(windows.to(device)).mean(dim=0).cpu().numpy()


def identify_files(paths: list[str], bundle: Identifier, languages: list[str] | None = None):
    """Yield one result per path, in order; a broken or missing file gives a status "error" result."""
    for path in paths:
        try:
            yield {**identify(path, bundle, languages), "error": None}
        except DeepLanguageError as error:
            yield error_result(str(path), str(error))


def format_result(result: dict) -> str:
    """One readable line per file for the CLI (a name holding a newline or other control character is quoted)."""
    path = result["path"] if str(result["path"]).isprintable() else json.dumps(str(result["path"]), ensure_ascii=False)
    if result["status"] == "error":
        error = result["error"] if result["error"].isprintable() else json.dumps(result["error"], ensure_ascii=False)
        return f"{path}: error: {error}"
    if result["status"] == "no_speech":
        return f"{path}: no speech found"
    top = sorted(result["probabilities"].items(), key=lambda kv: -kv[1])[:3]
    ranked = ", ".join(f"{lang} {p:.0%}" for lang, p in top)
    head = result["language"] if result["status"] == "ok" else f"uncertain (best guess {result['best_guess']})"
    return f"{path}: {head}  [{ranked}]  {result['seconds']:.1f} s, {len(result['windows'])} window(s)"
