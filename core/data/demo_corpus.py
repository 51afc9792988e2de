"""The embedded demo corpus: multilingual speech the project synthesizes itself with espeak-ng.

Nothing is downloaded and no system package is needed: PyPI's ``espeakng-loader`` ships
``libespeak-ng.so`` and its data, driven here through ctypes. Every language gets a fixed table
of voices (an espeak variant such as ``+m3``/``+f2``/``+klatt`` with its own rate, pitch and word
gap); each voice is one speaker, so speaker-disjoint splits work as on real data. Clips are
sentences (or pairs of sentences) from the pools below, 2-6 s long, lightly augmented with noise
at a random SNR, a random gain and a little silence at both ends.

The output has Common Voice's layout, so the reader that loads Common Voice loads it too::

    <out>/<lang>/clips/demo_<lang>_<NNNNN>.flac    16 kHz mono 16-bit FLAC
    <out>/<lang>/validated.tsv                     Common Voice's columns
    <out>/README.md                                what this is and how it was made
    <out>/.complete                                JSON of the build parameters, written last

The same seed gives byte-identical tsv files and identical audio samples.
"""

import csv
import json
import os
import queue
import re
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.audio.decode import SAMPLE_RATE
from core.data.espeak import ESPEAK_SAMPLE_RATE, Espeak, Voice, load_espeak_library
from core.errors import UsageError
from core.files import atomic_path, write_text
from core.paths import DEMO_CORPUS_DIR

MIN_SECONDS = 2.0  # a clip's duration, silences included
MAX_SECONDS = 6.0
SILENCE_SECONDS = (0.1, 0.4)  # leading and trailing silence, each drawn in this range
SNR_DB = (15.0, 40.0)  # additive noise, speech RMS over noise RMS
PEAK_DBFS = (-12.0, -1.0)  # random gain: the clip's peak lands in this range
JOIN_PROBABILITY = 0.3  # how often a clip joins two sentences even when one would do
MAX_ATTEMPTS = 40  # sentence draws per clip before falling back to pad or trim

# Bump when sentences, voices or augmentation change: a corpus built by older code is rebuilt.
CORPUS_FORMAT = 1
MARKER_NAME = ".complete"
TSV_COLUMNS = ("client_id", "path", "sentence", "up_votes", "down_votes",
               "age", "gender", "accent", "locale", "segment")


# Common Voice locale -> espeak-ng base voices; voice k of a language uses base k % len, so
# languages with several accents (es/es-419, en-us/en, pt-br/pt) get both.
ESPEAK_BASES = {
    "es": ("es", "es-419"),
    "it": ("it",),
    "ja": ("ja",),
    "en": ("en-us", "en"),
    "fr": ("fr",),
    "de": ("de",),
    "pt": ("pt-br", "pt"),
    "nl": ("nl",),
}
DEMO_LANGUAGES = tuple(ESPEAK_BASES)

# espeak-ng voice variants (files in espeak-ng-data/voices/!v) and the gender each one sounds.
# `klatt3` (Klatt synthesis, the base voice's male pitch) rather than `klatt`, whose source came
# out buzzy and barely voiced; `croak` is creaky on purpose; the whisper variants are unvoiced.
VOICE_VARIANTS = (
    ("m1", "male"), ("f1", "female"), ("m2", "male"), ("f2", "female"),
    ("m3", "male"), ("f3", "female"), ("m4", "male"), ("f4", "female"),
    ("m7", "male"), ("f5", "female"), ("klatt3", "male"), ("steph", "female"),
    ("croak", "male"), ("Annie", "female"),
)
N_VOICES = len(VOICE_VARIANTS)  # per language, one speaker each
RATE_WPM = (140, 190)  # espeak words per minute (its default is 175)
PITCH = (30, 70)  # espeak's 0-99 pitch scale (default 50), on top of the variant's own
WORD_GAP = (0, 2)  # extra pause between words, in units of 10 ms


@dataclass(frozen=True)
class DemoCorpusSummary:
    n_languages: int
    n_clips: int
    n_voices: int
    seconds: float  # total audio, silences included


# The sentence pools, written for this project. Japanese is in kana only (espeak reads kanji as
# "Chinese letter") and spaced between phrases as in children's books, which lets the particles
# は/へ be spoken "wa"/"e" (see _spoken_text); validated.tsv stores it without the spaces.
SENTENCES_DIR = Path(__file__).with_name("sentences")  # <lang>.txt: one sentence a line
SENTENCES: dict[str, tuple[str, ...]] = {
    path.stem: tuple(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    for path in sorted(SENTENCES_DIR.glob("*.txt"))}

# Phrase-final は and へ are the topic and direction particles, spoken "wa" and "e".
_JA_PARTICLE_WA = re.compile(r"は(?=[\s、。？！]|$)")
_JA_PARTICLE_E = re.compile(r"へ(?=[\s、。？！]|$)")


def _spoken_text(language: str, text: str) -> str:
    """What espeak is given: the written sentence, with Japanese particles spelled as said."""
    if language == "ja":
        return _JA_PARTICLE_E.sub("え", _JA_PARTICLE_WA.sub("わ", text))
    return text


def _written_text(language: str, text: str) -> str:
    """What validated.tsv stores: Japanese without the phrase spaces, as it is normally written."""
    return text.replace(" ", "") if language == "ja" else text


def voices_for(language: str) -> tuple[Voice, ...]:
    """The fixed voice table of one language, independent of the build seed.

    Rate, pitch and word gap are drawn once from a generator seeded by the language code, so
    "es-voice03" is the same voice in every build and every process.
    """
    bases = ESPEAK_BASES[language]
    rng = np.random.default_rng([zlib.crc32(b"voices"), zlib.crc32(language.encode())])
    voices = []
    for k, (variant, gender) in enumerate(VOICE_VARIANTS):
        base = bases[k % len(bases)]
        voices.append(Voice(
            client_id=f"{language}-voice{k:02d}",
            espeak_name=f"{base}+{variant}",
            accent=base,
            gender=gender,
            rate_wpm=int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)),
            pitch=int(rng.integers(PITCH[0], PITCH[1] + 1)),
            word_gap=int(rng.integers(WORD_GAP[0], WORD_GAP[1] + 1)),
        ))
    return tuple(voices)


def _trim(audio: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Drop espeak's own leading/trailing near-silence (below 1 % of the peak, -40 dB)."""
    loud = np.flatnonzero(np.abs(audio) > threshold * np.abs(audio).max())
    return audio[loud[0]:loud[-1] + 1] if loud.size else audio


def _speech(espeak: Espeak, language: str, text: str, voice: Voice) -> np.ndarray:
    """(n_samples,) float32 in [-1, 1] at SAMPLE_RATE, trimmed of silence."""
    import soxr

    audio = espeak.synthesize(_spoken_text(language, text), voice).astype(np.float32) / 32768.0
    return soxr.resample(_trim(audio), ESPEAK_SAMPLE_RATE, SAMPLE_RATE).astype(np.float32)


def _noise(rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """Unit-RMS white or pink (1/f power) noise: room hiss and hum are rarely white."""
    if rng.random() < 0.5:
        noise = rng.standard_normal(n_samples)
    else:
        n_fft = 1 << (n_samples - 1).bit_length()  # a power of two: clip lengths can be prime
        spectrum = np.fft.rfft(rng.standard_normal(n_fft))
        spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=n_fft)[:n_samples]
    return noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def _make_clip(espeak: Espeak, language: str, voice: Voice,
               rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One clip: ((n_samples,) float32 at SAMPLE_RATE, its written sentence), 2-6 s long."""
    sentences = SENTENCES[language]
    lead, trail = rng.uniform(*SILENCE_SECONDS, size=2)
    min_samples = int((MIN_SECONDS - lead - trail) * SAMPLE_RATE)
    max_samples = int((MAX_SECONDS - lead - trail) * SAMPLE_RATE)

    speech, text = None, ""
    for _ in range(MAX_ATTEMPTS):
        first = int(rng.integers(len(sentences)))
        text = sentences[first]
        speech = _speech(espeak, language, text, voice)
        # Join a second sentence when one is too short, and sometimes just for variety.
        if speech.size <= max_samples and (speech.size < min_samples
                                           or rng.random() < JOIN_PROBABILITY):
            second = (first + 1 + int(rng.integers(len(sentences) - 1))) % len(sentences)
            joined = f"{text} {sentences[second]}"
            joined_speech = _speech(espeak, language, joined, voice)
            if joined_speech.size <= max_samples:
                text, speech = joined, joined_speech
        if min_samples <= speech.size <= max_samples:
            break
    # Not reached with these pools and rates (each sentence or pair fits); kept so a clip is
    # never outside 2-6 s even if the pools change.
    speech = speech[:max_samples]
    trail += max(0, min_samples - speech.size) / SAMPLE_RATE

    n_lead, n_trail = int(lead * SAMPLE_RATE), int(trail * SAMPLE_RATE)
    speech_rms = np.sqrt(np.mean(speech.astype(np.float64) ** 2))
    clip = np.concatenate([np.zeros(n_lead), speech, np.zeros(n_trail)])
    snr_db = rng.uniform(*SNR_DB)
    clip += _noise(rng, clip.size) * speech_rms * 10 ** (-snr_db / 20)
    peak = 10 ** (rng.uniform(*PEAK_DBFS) / 20)
    clip *= peak / np.abs(clip).max()
    return clip.astype(np.float32), _written_text(language, text)


# ---------------------------------------------------------------------------------------------
# One language per worker process.

_WORKER_PROGRESS = None  # a multiprocessing queue the worker reports finished clips on


def _init_worker(progress_queue) -> None:
    global _WORKER_PROGRESS
    _WORKER_PROGRESS = progress_queue


def _build_language(out_dir: Path, language: str, seed: int, n_clips: int) -> dict:
    """Write <out>/<language>/clips/*.flac and validated.tsv; returns its clip count and seconds."""
    import soundfile

    espeak = Espeak()
    voices = voices_for(language)
    clips_dir = out_dir / language / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    rows, n_samples = [], 0
    for index in range(n_clips):
        voice = voices[index % len(voices)]  # round robin: every voice says about as many clips
        # Seeded per (seed, language, clip): the clip does not depend on the build's order.
        rng = np.random.default_rng([seed, zlib.crc32(language.encode()), index])
        audio, sentence = _make_clip(espeak, language, voice, rng)
        name = f"demo_{language}_{index:05d}.flac"
        with atomic_path(clips_dir / name) as tmp:
            soundfile.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        rows.append((voice.client_id, name, sentence, "2", "0", "", voice.gender, voice.accent,
                     language, ""))  # in TSV_COLUMNS' order
        n_samples += audio.size
        if _WORKER_PROGRESS is not None:
            _WORKER_PROGRESS.put(1)

    # Plain tab-joined lines, as Common Voice writes them: no field holds a tab, newline or quote.
    table = "".join("\t".join(row) + "\n" for row in [TSV_COLUMNS, *rows])
    write_text(out_dir / language / "validated.tsv", table)
    return {"language": language, "n_clips": n_clips, "seconds": n_samples / SAMPLE_RATE,
            "espeak_version": espeak.version}


# ---------------------------------------------------------------------------------------------
# The build.

def _parameters(seed: int, n_clips: int, languages: Sequence[str]) -> dict:
    return {"format": CORPUS_FORMAT, "seed": seed, "n_clips": n_clips, "languages": list(languages)}


def _read_marker(out_dir: Path) -> dict | None:
    try:
        return json.loads((Path(out_dir) / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove_stale(out_dir: Path, languages: Sequence[str], n_clips: int) -> None:
    """Delete clips this build will not rewrite (fewer clips, dropped languages), ours only."""
    for language_dir in (d for d in out_dir.iterdir() if d.is_dir()):
        language = language_dir.name
        clips_dir = language_dir / "clips"
        for clip in clips_dir.glob(f"demo_{language}_*.flac"):
            index = clip.stem.rsplit("_", 1)[-1]
            if language not in languages or not index.isdigit() or int(index) >= n_clips:
                clip.unlink()
        for tmp in clips_dir.glob(".*.tmp"):
            tmp.unlink()
        if language not in languages and clips_dir.is_dir() and not any(clips_dir.iterdir()):
            (language_dir / "validated.tsv").unlink(missing_ok=True)
            clips_dir.rmdir()
            if not any(language_dir.iterdir()):
                language_dir.rmdir()


README_TEMPLATE = Path(__file__).with_name("demo_corpus_readme.md")  # str.format fields filled by _readme


def _readme(parameters: dict, results: list[dict], seconds_taken: float) -> str:
    languages = parameters["languages"]
    voices = "".join(f"| {v.client_id} | {v.espeak_name} | {v.gender} | {v.rate_wpm} | {v.pitch} | {v.word_gap} |\n"
                     for language in languages for v in voices_for(language))
    return README_TEMPLATE.read_text(encoding="utf-8").format(
        n_languages=len(languages), languages=", ".join(languages), languages_csv=",".join(languages),
        n_clips=parameters["n_clips"], n_total=sum(r["n_clips"] for r in results),
        minutes=sum(r["seconds"] for r in results) / 60, format=parameters["format"], seed=parameters["seed"],
        espeak_version=results[0]["espeak_version"] if results else "?", seconds_taken=seconds_taken,
        snr_low=SNR_DB[0], snr_high=SNR_DB[1], peak_low=PEAK_DBFS[0], peak_high=PEAK_DBFS[1],
        silence_low=SILENCE_SECONDS[0], silence_high=SILENCE_SECONDS[1], voices=voices)


def build_demo_corpus(out_dir: Path = DEMO_CORPUS_DIR, seed: int = 0, n_clips: int = 160,
                      languages: Sequence[str] = DEMO_LANGUAGES, workers: int | None = None,
                      on_progress: Callable[[int, int], None] | None = None,
                      force: bool = False) -> Path:
    """Synthesize the demo corpus into `out_dir` in Common Voice's layout; returns `out_dir`.

    A no-op when `out_dir` already holds a complete corpus built with the same parameters
    (unless `force`). `on_progress(done, total)` counts finished clips. Languages are built in
    parallel, one fresh process each, by `workers` processes (default: one per CPU core).
    """
    out_dir = Path(out_dir)
    languages = list(dict.fromkeys(languages))  # keep order, drop repeats
    unknown = [lang for lang in languages if lang not in ESPEAK_BASES]
    if unknown or not languages:
        raise UsageError(
            f"--languages: no demo voices for language(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(DEMO_LANGUAGES)}")
    if n_clips < 1:
        raise UsageError(f"--clips (clips per language) must be an integer >= 1, not {n_clips}")
    if seed < 0:
        raise UsageError(f"--seed must be an integer >= 0, not {seed}")
    total = n_clips * len(languages)
    parameters = _parameters(seed, n_clips, languages)
    if not force and _read_marker(out_dir) == parameters:
        if on_progress is not None:
            on_progress(total, total)
        return out_dir
    load_espeak_library()  # fail here, with the install hint, rather than in every worker

    import multiprocessing

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER_NAME).unlink(missing_ok=True)  # from here on the folder is incomplete
    _remove_stale(out_dir, languages, n_clips)

    # spawn, and one task per process: a fresh espeak per language keeps the audio independent
    # of which worker ran what before, and a streamlit or torch parent is never forked.
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    n_workers = max(1, min(workers or os.cpu_count() or 1, len(languages)))
    results: dict[str, dict] = {}
    done = 0
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=context, max_tasks_per_child=1,
                             initializer=_init_worker, initargs=(progress_queue,)) as pool:
        pending: set[Future] = {pool.submit(_build_language, out_dir, lang, seed, n_clips)
                                for lang in languages}
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for future in finished:
                    result = future.result()  # re-raises a worker's error here
                    results[result["language"]] = result
                while not progress_queue.empty():
                    progress_queue.get()
                    done += 1
                    if on_progress is not None:
                        on_progress(min(done, total), total)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    # A worker's last messages can arrive after its result: collect them, without hanging.
    while done < total:
        try:
            progress_queue.get(timeout=1.0)
        except queue.Empty:
            break
        done += 1
        if on_progress is not None:
            on_progress(done, total)
    if on_progress is not None and done < total:
        on_progress(total, total)

    ordered = [results[lang] for lang in languages]
    readme = _readme(parameters, ordered, time.perf_counter() - started)
    write_text(out_dir / "README.md", readme)
    # Last: its presence says every file above is complete.
    write_text(out_dir / MARKER_NAME, json.dumps(parameters, indent=2) + "\n")
    return out_dir


def is_demo_corpus(folder: str | Path) -> bool:
    """Whether ``folder`` holds a complete corpus built here: synthetic speech, not real voices."""
    return _read_marker(Path(folder)) is not None


def ensure_demo_corpus(out_dir: Path = DEMO_CORPUS_DIR,
                       on_progress: Callable[[int, int], None] | None = None) -> Path:
    """The demo corpus at `out_dir`: any complete one already there, else a default build."""
    if is_demo_corpus(out_dir):
        return Path(out_dir)
    return build_demo_corpus(out_dir, on_progress=on_progress)


def summarize_demo_corpus(out_dir: Path = DEMO_CORPUS_DIR) -> DemoCorpusSummary:
    """Counts and total duration of the corpus at `out_dir`, read from its tsv files and clips."""
    import soundfile
    out_dir = Path(out_dir)
    languages, clips, voices, seconds = 0, 0, set(), 0.0
    for tsv in sorted(out_dir.glob("*/validated.tsv")):
        languages += 1
        with tsv.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                clips += 1
                voices.add(row["client_id"])
                seconds += soundfile.info(str(tsv.parent / "clips" / row["path"])).duration
    return DemoCorpusSummary(languages, clips, len(voices), seconds)
