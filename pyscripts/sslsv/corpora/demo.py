"""The embedded demo corpus: a deterministic multi-speaker corpus synthesised offline with flite,
espeak-ng and sox, so that the whole recipe runs without downloading anything.

A *speaker* is a fixed combination of

* a TTS voice: one of flite's built-in voices or an espeak-ng accent with a voice variant
  (``en-us+m3``, ``en-gb-scotland+f2``, ...); each voice is shared by several speakers, who then
  differ only by the next three traits;
* a pitch shift and a vocal-tract (formant) shift. The formant shift is a resampling by sox ``pitch``
  (which keeps the duration and scales pitch and formants together); the TTS engine's own F0 is set
  lower or higher by the same amount beforehand, so that the F0 lands at the speaker's intended
  pitch shift while the formants move. (flite's ``rms`` voice has no F0 control: its pitch moves with
  its formants.);
* a channel colouring (sox ``highpass``, ``lowpass``, two ``equalizer`` bands, ``bass``, ``treble``);
* a habitual speaking rate.

Every *utterance* varies the text (sentences generated from word lists and templates), the speaking
rate, the room (sox ``reverb`` with random reverberance, damping and room scale, or none), the
recording level, and additive noise (white, pink or brown noise from sox ``synth``) at a random SNR
relative to the speech's RMS. Durations are kept within 2-6 s by choosing the sentence length for
the speaking rate, then trimming at a pause or padding with noise-only signal.

Everything random is drawn from one seeded generator while *planning* the corpus; synthesis then only
executes the plan, so the result does not depend on the number of parallel jobs, and sox runs in its
repeatable mode without dither: the same seed gives byte-identical WAV files.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..tables import DataError, atomic_path, write_table
from .common import make_trials, split_speakers, write_data_dir, write_trials

RATE = 16000
MIN_DUR = 2.0
MAX_DUR = 6.0
VERSION = "demo-corpus-1"  # bump when the synthesis changes, so stamps of older builds are invalid
TOOLS = ("sox", "flite", "espeak-ng")
log = logging.getLogger(__name__)
INSTALL_HINT = ("install them with your package manager, e.g. 'sudo apt-get install sox flite espeak-ng' "
                "(Debian/Ubuntu), 'sudo dnf install sox flite espeak-ng' (Fedora) or "
                "'conda install -c conda-forge sox espeak-ng', or run utils/setup_env.sh sox flite espeak-ng")

# flite voices and their approximate default mean F0 in Hz (what int_f0_target_mean is relative to);
# None: the voice ignores int_f0_target_mean (rms is a clustergen voice with its own F0 model).
# awb_time is left out: it is a limited-domain voice that can only speak the time of day.
FLITE_VOICES: dict[str, float | None] = {"kal": 95.0, "kal16": 95.0, "awb": 130.0, "slt": 170.0, "rms": None}
ESPEAK_ACCENTS = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
                  "en-gb-x-gbclan", "en-gb-x-gbcwmd")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
                   "klatt", "klatt2", "klatt3", "croak", "Andy", "david", "steph", "Annie", "belinda",
                   "grandpa", "grandma", "john", "linda", "aunty", "ed", "iven", "paul", "quincy", "rob",
                   "victor", "Jacky", "Lee", "Mario", "Mike", "gustave", "marcelo", "pablo", "shelby",
                   "Gene", "announcer", "Storm")
# espeak-ng -p (0-99, default 50) moves the F0 by about 14 cents a step below 50 and 17.8 above
# (measured on en-us: 80, 93, 102, 112, 125 Hz at -p 20, 40, 50, 60, 70)
ESPEAK_CENTS_PER_STEP = (14.0, 17.8)
ESPEAK_WPM = 175.0            # espeak-ng's default rate; words per second below are at this rate
WORDS_PER_SECOND = 3.1        # both engines at their default rate, including the pauses of our texts
NOISES = ("whitenoise", "pinknoise", "brownnoise")
NOISE_SECONDS = 30


@dataclass(frozen=True)
class Voice:
    """A TTS voice: ``engine`` is ``flite`` or ``espeak-ng``; ``f0`` is flite's default mean F0."""

    engine: str
    name: str
    f0: float | None = None

    @property
    def label(self) -> str:
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class Speaker:
    """The fixed traits of one speaker."""

    spk: str
    voice: Voice
    pitch_cents: float    # F0 shift relative to the voice's default
    formant_cents: float  # vocal-tract scaling (sox pitch = resampling that keeps the duration)
    rate: float           # habitual speaking rate, a factor on the engine's default
    channel: tuple[str, ...]  # sox effects colouring the speaker's channel


@dataclass(frozen=True)
class Utterance:
    """What varies per utterance; ``seed`` drives the noise excerpt and the padding split."""

    utt: str
    spk: str
    text: str
    rate: float          # speaking rate (factor on the engine's default), speaker's rate included
    reverb: tuple[float, ...] | None  # reverberance %, HF damping %, room scale %, pre-delay ms
    noise: str
    snr_db: float
    level_db: float      # speech RMS in dB relative to full scale
    seed: int


@dataclass(frozen=True)
class Plan:
    """The whole corpus: speakers, utterances and the train/test split."""

    speakers: dict[str, Speaker]
    utterances: list[Utterance]
    train: list[str]
    test: list[str]


# ---------------------------------------------------------------------------------------------------
# Text: sentences from templates and word lists.

_NAMES = ("Anna", "Boris", "Clara", "Daniel", "Elena", "Felix", "Grace", "Hugo", "Irene", "James",
          "Karen", "Leo", "Maria", "Nathan", "Olga", "Peter", "Rita", "Samuel", "Tina", "Victor",
          "Wendy", "Yusuf", "Zoe", "Martin", "Laura", "Oscar", "Helen", "Ivan", "Julia", "Kevin")
_ADJS = ("old", "quiet", "bright", "narrow", "heavy", "small", "wooden", "green", "empty", "busy",
         "cold", "warm", "broken", "famous", "strange", "gentle", "large", "yellow", "silver", "dusty",
         "modern", "tiny", "careful", "lucky", "noisy", "simple", "rusty", "clever", "hidden", "golden",
         "sharp", "soft", "rough", "tall", "early", "distant", "friendly", "proud", "sudden", "ancient")
_NOUNS = ("river", "window", "teacher", "garden", "bicycle", "letter", "market", "doctor", "kitchen",
          "village", "mountain", "camera", "basket", "station", "painter", "bridge", "island", "ladder",
          "engine", "forest", "pocket", "blanket", "student", "harbour", "lantern", "pencil", "tower",
          "orchard", "farmer", "captain", "library", "museum", "violin", "carpet", "tunnel", "meadow",
          "sailor", "bakery", "compass", "kettle", "cottage", "puzzle", "wagon", "chimney", "parcel",
          "mirror", "stadium", "journal", "ribbon", "saddle")
_VERBS_PAST = ("found", "painted", "carried", "opened", "watched", "repaired", "borrowed", "noticed",
               "visited", "cleaned", "followed", "described", "ordered", "moved", "measured", "packed",
               "sold", "closed", "remembered", "checked", "delivered", "photographed", "washed", "built")
_VERBS_BASE = ("find", "paint", "carry", "open", "watch", "repair", "borrow", "visit", "clean",
               "follow", "describe", "order", "move", "measure", "pack", "sell", "check", "deliver")
_PLACES = ("near the station", "behind the old church", "at the edge of town", "in the north valley",
           "beside the harbour", "under the bridge", "across the square", "on the second floor",
           "next to the bakery", "by the river", "inside the museum", "at the end of the road")
_TIMES = ("yesterday", "this morning", "last winter", "on Monday", "after lunch", "before sunrise",
          "every Sunday", "late at night", "in the spring", "two weeks ago", "at noon", "last year")
_ADVS = ("slowly", "quickly", "carefully", "quietly", "suddenly", "happily", "patiently", "loudly")
_NUMS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty")


def _plural(noun: str) -> str:
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


_TEMPLATES: tuple[Callable[[random.Random], str], ...] = (
    lambda r: f"the {r.choice(_ADJS)} {r.choice(_NOUNS)} {r.choice(_VERBS_PAST)} the {r.choice(_NOUNS)}",
    lambda r: f"{r.choice(_NAMES)} {r.choice(_VERBS_PAST)} {_a(r.choice(_ADJS))} {r.choice(_NOUNS)} "
              f"{r.choice(_PLACES)}",
    lambda r: f"{r.choice(_TIMES)} {r.choice(_NAMES)} {r.choice(_ADVS)} {r.choice(_VERBS_PAST)} "
              f"the {r.choice(_NOUNS)}",
    lambda r: f"{r.choice(_NAMES)} will {r.choice(_VERBS_BASE)} the {r.choice(_ADJS)} {r.choice(_NOUNS)}",
    lambda r: f"we saw {r.choice(_NUMS)} {r.choice(_ADJS)} {_plural(r.choice(_NOUNS))} {r.choice(_PLACES)}",
    lambda r: f"they had to {r.choice(_VERBS_BASE)} the {r.choice(_NOUNS)} {r.choice(_ADVS)}",
    lambda r: f"the {r.choice(_NOUNS)} was {r.choice(_ADJS)} and {r.choice(_ADJS)} {r.choice(_TIMES)}",
    lambda r: f"{r.choice(_NAMES)} said that the {r.choice(_NOUNS)} {r.choice(_PLACES)} is "
              f"{r.choice(_ADJS)}",
    lambda r: f"my {r.choice(_NOUNS)} has {r.choice(_NUMS)} {r.choice(_ADJS)} {_plural(r.choice(_NOUNS))}",
    lambda r: f"nobody {r.choice(_VERBS_PAST)} the {r.choice(_NOUNS)} of {r.choice(_NAMES)}",
)
_JOINERS = (", and ", ", but ", "; then ", ", while ", ". ", ", so ", ". ")


def make_sentence(rng: random.Random, num_words: int) -> str:
    """A sentence of about ``num_words`` words: template clauses joined until the count is reached."""
    parts = [rng.choice(_TEMPLATES)(rng)]
    while sum(len(p.split()) for p in parts) < num_words - 2:
        parts += [rng.choice(_JOINERS), rng.choice(_TEMPLATES)(rng)]
    text = "".join(p[0].upper() + p[1:] if i == 0 or parts[i - 1] == ". " else p for i, p in enumerate(parts))
    return text + "."


# ---------------------------------------------------------------------------------------------------
# Planning: every random choice of the corpus, made once from the seed.

def voice_pool() -> tuple[list[Voice], list[Voice]]:
    """All usable voices: (flite voices, espeak-ng accent+variant voices)."""
    flite = [Voice("flite", n, f0) for n, f0 in FLITE_VOICES.items()]
    espeak = [Voice("espeak-ng", f"{a}+{v}") for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    return flite, espeak


def _u(rng: random.Random, lo: float, hi: float) -> float:
    return round(rng.uniform(lo, hi), 2)


def _channel(rng: random.Random) -> tuple[str, ...]:
    """A random but fixed channel colouring (sox effects)."""
    f1 = round(math.exp(rng.uniform(math.log(250), math.log(1000))))
    f2 = round(math.exp(rng.uniform(math.log(1000), math.log(4500))))
    return (f"highpass {round(rng.uniform(50, 250))}", f"lowpass {round(rng.uniform(3800, 7600))}",
            f"equalizer {f1} {_u(rng, 0.7, 2.0)}q {_u(rng, -6, 6)}",
            f"equalizer {f2} {_u(rng, 0.7, 2.0)}q {_u(rng, -6, 6)}",
            f"bass {_u(rng, -4, 4)}", f"treble {_u(rng, -4, 4)}")


def design_speakers(num_speakers: int, rng: random.Random, per_voice: int = 2) -> list[Speaker]:
    """Speakers ``spk000``...: ``per_voice`` speakers share each TTS voice (about one voice in six
    from flite) and are kept apart by well-separated pitch/formant shifts and their channels."""
    flite, espeak = voice_pool()
    rng.shuffle(flite)
    rng.shuffle(espeak)
    per_voice = max(per_voice, -(-num_speakers // (len(flite) + len(espeak))))
    num_voices = -(-num_speakers // per_voice)
    voices: list[Voice] = []
    for i in range(num_voices):
        src = flite if (i % 6 == 0 and flite) else espeak
        voices.append(src.pop(0))
    slots = [voices[i // per_voice] for i in range(num_speakers)]
    rng.shuffle(slots)
    shifts: dict[str, list[tuple[float, float]]] = {}
    speakers = []
    for i, voice in enumerate(slots):
        taken = shifts.setdefault(voice.label, [])
        while True:  # speakers of one voice: at least ~1.5 semitones or ~100 cents of formant apart
            pitch, formant = _u(rng, -350, 350), _u(rng, -180, 180)
            if voice.f0 is None and voice.engine == "flite":
                pitch = formant  # no F0 control: pitch follows the resampling
            if all(math.hypot((pitch - p) / 150, (formant - f) / 100) >= 1.0 for p, f in taken):
                break
        taken.append((pitch, formant))
        speakers.append(Speaker(f"spk{i:03d}", voice, pitch, formant, _u(rng, 0.9, 1.1), _channel(rng)))
    return speakers


def plan_corpus(num_train_spk: int, num_test_spk: int, utts_per_spk: int, seed: int) -> Plan:
    """Draw the whole corpus (speakers, texts, per-utterance conditions, split) from ``seed``."""
    if num_train_spk < 1 or num_test_spk < 2:
        raise DataError(f"need at least one train speaker and two test speakers (one test speaker gives only "
                        f"target trials, and no EER; got {num_train_spk}, {num_test_spk})")
    if utts_per_spk < 2:
        raise DataError(f"need at least 2 utterances per speaker for target trials (got {utts_per_spk})")
    if num_train_spk + num_test_spk > 1000 or utts_per_spk > 1000:
        raise DataError("at most 1000 speakers and 1000 utterances per speaker")
    rng = random.Random(f"{VERSION}:{seed}")
    speakers = design_speakers(num_train_spk + num_test_spk, rng)
    utterances = []
    for spk in speakers:
        for j in range(utts_per_spk):
            rate = round(spk.rate * rng.uniform(0.85, 1.15), 3)
            target = rng.uniform(2.6, 5.4)
            words = max(4, round(target * WORDS_PER_SECOND * rate))
            text = make_sentence(rng, words)
            reverb = None if rng.random() < 0.2 else (
                _u(rng, 10, 70), _u(rng, 30, 90), _u(rng, 30, 100), _u(rng, 0, 30))
            utterances.append(Utterance(
                f"{spk.spk}-u{j:03d}", spk.spk, text, rate, reverb, rng.choice(NOISES),
                _u(rng, 3, 23), _u(rng, -32, -20), rng.randrange(2**31)))
    train, test = split_speakers([s.spk for s in speakers], num_test_spk, seed)
    return Plan({s.spk: s for s in speakers}, utterances, train, test)


# ---------------------------------------------------------------------------------------------------
# Commands.

def tts_command(spk: Speaker, utt: Utterance) -> list[str]:
    """The TTS command writing a WAV to stdout, with the F0 pre-compensated for the formant shift."""
    f0_cents = spk.pitch_cents - spk.formant_cents
    if spk.voice.engine == "espeak-ng":
        p = min(99, max(0, round(50 + f0_cents / ESPEAK_CENTS_PER_STEP[f0_cents > 0])))
        return ["espeak-ng", "-v", spk.voice.name, "-s", str(round(ESPEAK_WPM * utt.rate)), "-p", str(p),
                "--stdout", utt.text]
    cmd = ["flite", "-voice", spk.voice.name, "--setf", f"duration_stretch={1 / utt.rate:.3f}"]
    if spk.voice.f0 is not None:
        cmd += ["--setf", f"int_f0_target_mean={spk.voice.f0 * 2 ** (f0_cents / 1200):.1f}"]
    return cmd + ["-t", utt.text, "-o", "/dev/stdout"]


def sox_command(spk: Speaker, utt: Utterance) -> list[str]:
    """sox reading the TTS WAV on stdin, writing 16 kHz float32 raw to stdout: formant shift, channel,
    room. Repeatable mode (-R) and no dither (-D), so the output is a function of the input only."""
    effects = ["gain", "-15"]  # headroom for the equaliser boosts (sox works in fixed point)
    if abs(spk.formant_cents) >= 1:
        effects += ["pitch", f"{spk.formant_cents:.0f}"]
    effects += ["rate", "-h", str(RATE)]
    for e in spk.channel:
        effects += e.split()
    if utt.reverb is not None:
        reverberance, damping, room, predelay = utt.reverb
        effects += ["reverb", f"{reverberance}", f"{damping}", f"{room}", "100", f"{predelay}"]
    return ["sox", "-R", "-D", "-V1", "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32",
            "-c", "1", "-"] + effects


def noise_command(kind: str) -> list[str]:
    """sox synthesising ``NOISE_SECONDS`` of white/pink/brown noise (repeatable mode: fixed seed)."""
    return ["sox", "-R", "-D", "-V1", "-n", "-r", str(RATE), "-c", "1", "-t", "raw", "-e", "floating-point",
            "-b", "32", "-", "synth", str(NOISE_SECONDS), kind]


def _run(cmd: list[str], stdin: bytes | None = None, where: str = "") -> bytes:
    proc = subprocess.run(cmd, input=stdin, capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"{where}: command failed (exit {proc.returncode}): {' '.join(cmd)}\n{err}")
    return proc.stdout


# ---------------------------------------------------------------------------------------------------
# Signal processing after sox.

def _frame_db(x: np.ndarray, hop: int) -> np.ndarray:
    n = len(x) // hop
    e = (x[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(axis=1)
    return 10 * np.log10(e + 1e-12)


def fit_duration(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Trim leading/trailing silence, cut at a pause if longer than ``MAX_DUR``, pad with zeros if shorter
    than ``MIN_DUR``. Returns the signal and a 0/1 mask of the speech part (for its RMS)."""
    hop = RATE // 100
    db = _frame_db(x, hop)
    active = np.flatnonzero(db > db.max() - 45)
    margin = int(0.12 * RATE)
    x = x[max(0, active[0] * hop - margin): (active[-1] + 1) * hop + margin]
    limit = int((MAX_DUR - 0.05) * RATE)
    if len(x) > limit:  # cut at the quietest 10 ms frame in the last 1.5 s allowed, then fade out
        db = _frame_db(x[:limit], hop)
        lo = int((MAX_DUR - 1.5) * 100)
        cut = (lo + int(np.argmin(db[lo:]))) * hop
        x = x[:cut].copy()
        fade = min(len(x), hop * 2)
        x[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
    mask = np.ones(len(x), dtype=bool)
    short = int((MIN_DUR + 0.05) * RATE)
    if len(x) < short:
        total = int(rng.uniform(MIN_DUR + 0.1, MIN_DUR + 0.6) * RATE) - len(x)
        before = int(rng.integers(0, total + 1))
        x = np.concatenate([np.zeros(before, np.float32), x, np.zeros(total - before, np.float32)])
        mask = np.concatenate([np.zeros(before, bool), mask, np.zeros(total - before, bool)])
    return x, mask


def mix(x: np.ndarray, mask: np.ndarray, noise: np.ndarray, utt: Utterance,
        rng: np.random.Generator) -> np.ndarray:
    """Scale the speech to ``utt.level_db`` and add an excerpt of ``noise`` at ``utt.snr_db`` (relative
    to the speech's RMS); return int16 samples."""
    speech_rms = float(np.sqrt(np.mean(x[mask].astype(np.float64) ** 2)))
    if speech_rms <= 0:
        raise RuntimeError(f"{utt.utt}: the synthesised speech is silent")
    gain = 10 ** (utt.level_db / 20) / speech_rms
    start = int(rng.integers(0, len(noise) - len(x)))
    n = noise[start: start + len(x)].astype(np.float64)
    n = n / np.sqrt(np.mean(n ** 2)) * (10 ** ((utt.level_db - utt.snr_db) / 20))
    y = x.astype(np.float64) * gain + n
    return np.clip(np.round(y * 32768), -32768, 32767).astype(np.int16)


def synthesize(spk: Speaker, utt: Utterance, noises: dict[str, np.ndarray], out_wav: Path) -> float:
    """Synthesise one utterance into ``out_wav`` (written atomically); return its duration in seconds."""
    import soundfile as sf

    wav = _run(tts_command(spk, utt), where=utt.utt)
    raw = _run(sox_command(spk, utt), stdin=wav, where=utt.utt)
    x = np.frombuffer(raw, dtype="<f4")
    rng = np.random.default_rng(utt.seed)
    x, mask = fit_duration(x, rng)
    y = mix(x, mask, noises[utt.noise], utt, rng)
    dur = len(y) / RATE
    if not MIN_DUR <= dur <= MAX_DUR:
        raise RuntimeError(f"{utt.utt}: duration {dur:.2f} s outside [{MIN_DUR}, {MAX_DUR}]")
    with atomic_path(out_wav) as tmp:
        sf.write(tmp, y, RATE, subtype="PCM_16", format="WAV")
    return dur


# ---------------------------------------------------------------------------------------------------
# The build.

def check_tools(path: str | None = None) -> None:
    """Raise :class:`DataError` naming the missing tools and how to install them."""
    missing = [t for t in TOOLS if shutil.which(t, path=path) is None]
    if missing:
        raise DataError(f"the demo corpus needs {', '.join(missing)} on PATH; {INSTALL_HINT}")


def tool_versions() -> str:
    """Versions of the synthesis tools: part of the build's identity (another version, other audio)."""
    out = []
    for cmd in (["sox", "--version"], ["flite", "--version"], ["espeak-ng", "--version"]):
        p = subprocess.run(cmd, capture_output=True, text=True)
        lines = (p.stdout + p.stderr).strip().splitlines()
        out.append(lines[-1].strip() if lines else cmd[0])
    return " | ".join(out)


def describe_speaker(s: Speaker) -> str:
    """One line of speaker traits, for ``<audio-dir>/speakers``."""
    return (f"voice={s.voice.label} pitch_cents={s.pitch_cents:+.0f} formant_cents={s.formant_cents:+.0f} "
            f"rate={s.rate:.2f} channel=" + ",".join(e.replace(" ", ":") for e in s.channel))


def build_demo_corpus(audio_dir: str | os.PathLike, data_root: str | os.PathLike, num_train_spk: int = 48,
                      num_test_spk: int = 12, utts_per_spk: int = 16, seed: int = 0,
                      nj: int | None = None, name: str = "demo") -> bool:
    """Synthesise the corpus into ``audio_dir`` and write ``<data_root>/<name>_{train,test}`` (+ trials).

    Skipped when the stamp in ``audio_dir`` matches the options and the outputs; returns whether it
    built. A killed build is resumed: finished WAVs of the same plan (they are written atomically) are
    kept, WAVs of a different plan are removed first.
    """
    from ..stamp import is_done, mark_done

    audio_dir = Path(audio_dir).resolve()
    data_root = Path(data_root)
    train_dir, test_dir = data_root / f"{name}_train", data_root / f"{name}_test"
    outputs = [d / f for d in (train_dir, test_dir) for f in ("wav.scp", "utt2spk", "spk2utt", "utt2dur")]
    outputs.append(test_dir / "trials")
    check_tools()
    plan_id = (f"{VERSION} train={num_train_spk} test={num_test_spk} utts={utts_per_spk} seed={seed} "
               f"tools={tool_versions()}")
    opts = f"{plan_id} audio={audio_dir} data={data_root.resolve()}"
    stamp = audio_dir / f".demo_corpus.{name}.done"
    if is_done(stamp, outputs, opts):
        log.info(f"make_demo_corpus: {train_dir} and {test_dir} are up to date (stamp {stamp}); skipping")
        return False

    t0 = time.time()
    plan = plan_corpus(num_train_spk, num_test_spk, utts_per_spk, seed)
    audio_dir.mkdir(parents=True, exist_ok=True)
    plan_file = audio_dir / ".plan"
    wanted = {u.utt for u in plan.utterances}
    resume = plan_file.is_file() and plan_file.read_text().strip() == plan_id
    if not resume:
        plan_file.unlink(missing_ok=True)
    for f in audio_dir.glob("spk*-u*.wav"):  # WAVs of another plan, or beyond this one
        if not resume or f.stem not in wanted:
            f.unlink()
    for f in audio_dir.glob(".spk*-u*.wav.*.tmp"):  # left by a killed build
        f.unlink()
    with atomic_path(plan_file) as tmp:
        tmp.write_text(plan_id + "\n")

    noises = {k: np.frombuffer(_run(noise_command(k), where=k), dtype="<f4") for k in NOISES}
    todo = [u for u in plan.utterances if not (audio_dir / f"{u.utt}.wav").is_file()]
    nj = max(1, nj or os.cpu_count() or 1)
    log.info(f"make_demo_corpus: {len(plan.speakers)} speakers x {utts_per_spk} utterances; synthesising "
        f"{len(todo)} ({len(plan.utterances) - len(todo)} already done) with {nj} jobs into {audio_dir}")
    from tqdm import tqdm

    with ThreadPoolExecutor(nj) as pool, tqdm(total=len(todo), unit="utt", file=sys.stderr,
                                               disable=None) as bar:
        futures = [pool.submit(synthesize, plan.speakers[u.spk], u, noises, audio_dir / f"{u.utt}.wav")
                   for u in todo]
        for f in futures:
            f.result()
            bar.update(1)

    import soundfile as sf

    wav_scp, utt2spk, utt2dur = {}, {}, {}
    for u in plan.utterances:
        path = audio_dir / f"{u.utt}.wav"
        info = sf.info(str(path))
        if info.samplerate != RATE or info.channels != 1:
            raise DataError(f"{path}: expected {RATE} Hz mono, got {info.samplerate} Hz x {info.channels}")
        wav_scp[u.utt] = str(path)
        utt2spk[u.utt] = u.spk
        utt2dur[u.utt] = info.frames / RATE
    write_table(audio_dir / "speakers", {s.spk: describe_speaker(s) for s in plan.speakers.values()})
    write_table(audio_dir / "text", {u.utt: u.text for u in plan.utterances})
    for d, spks in ((train_dir, set(plan.train)), (test_dir, set(plan.test))):
        utts = [u for u in utt2spk if utt2spk[u] in spks]
        write_data_dir(d, {u: wav_scp[u] for u in utts}, {u: utt2spk[u] for u in utts},
                       {u: utt2dur[u] for u in utts})
    test_utt2spk = {u: s for u, s in utt2spk.items() if s in set(plan.test)}
    write_trials(test_dir / "trials", make_trials(test_utt2spk))
    mark_done(stamp, outputs, opts)
    durs = np.array(list(utt2dur.values()))
    log.info(f"make_demo_corpus: wrote {train_dir} ({len(plan.train)} speakers) and {test_dir} "
        f"({len(plan.test)} speakers, trials); {len(durs)} utterances, {durs.sum() / 60:.1f} min, "
        f"{durs.min():.2f}-{durs.max():.2f} s, in {time.time() - t0:.1f} s")
    return True
