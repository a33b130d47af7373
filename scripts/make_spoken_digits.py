"""Synthesise the embedded spoken-digit set (``builtin:spoken-digits``) with espeak-ng.

Every "speaker" is one espeak-ng configuration (English accent + voice variant + speed + pitch)
and says the ten digits "zero".."nine". Clips are resampled to 8 kHz with maskkit's own
resampler, trimmed of leading/trailing silence and stored as int16 in one compressed npz:

    audio      int16 (S,)    all clips concatenated
    offsets    int64 (N+1,)  clip i is audio[offsets[i]:offsets[i+1]]
    labels     int64 (N,)    digit 0..9
    speaker    int64 (N,)    configuration index (use it for speaker-disjoint splits)
    voice, speed, pitch   per-speaker espeak-ng settings (indexed by ``speaker``)
    class_names, sample_rate, meta     ("meta" is a JSON string: how, when, tool versions)

Needs espeak-ng (Debian/Ubuntu: ``apt-get install -y espeak-ng``). The output is deterministic:
the same espeak-ng version, seed and arguments give byte-identical clips.

    python scripts/make_spoken_digits.py            # 100 speakers x 10 digits -> modalities/audio/data/
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc"]
# voice variants that sound like a person speaking (robots and effects left out)
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "croak", "klatt",
            "klatt2", "klatt3", "klatt4", "whisper", "whisperf", "Alex", "Alicia", "Andy", "Annie", "adam",
            "anika", "aunty", "belinda", "benjamin", "david", "ed", "edward", "grandma", "grandpa", "john",
            "linda", "max", "michel", "paul", "quincy", "rob", "robert", "steph", "travis", "victor", "zac"]
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "modalities" / "audio" / "data" / "spoken_digits.npz"


def espeak_info() -> tuple[str, Path]:
    """(version line, data directory) of the installed espeak-ng, or exit with a clear message."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        sys.exit("espeak-ng not found: install it first (apt-get install -y espeak-ng)")
    line = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    match = re.search(r"Data at:\s*(\S+)", line)
    if match is None:
        sys.exit(f"cannot find the espeak-ng data directory in {line!r}")
    return line, Path(match.group(1))


def validate(data_dir: Path, accents: list[str], variants: list[str]) -> tuple[list[str], list[str]]:
    """Keep only names espeak-ng knows: an unknown variant silently falls back to the default voice."""
    known_variants = {p.name for p in (data_dir / "voices" / "!v").iterdir()}
    listing = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True, check=True).stdout
    known_accents = {row.split()[1] for row in listing.splitlines()[1:] if len(row.split()) > 1}
    good_v = [v for v in variants if v in known_variants]
    good_a = [a for a in accents if a in known_accents]
    for name in sorted(set(variants) - set(good_v)):
        print(f"skipping unknown variant {name!r}", file=sys.stderr)
    for name in sorted(set(accents) - set(good_a)):
        print(f"skipping unknown accent {name!r}", file=sys.stderr)
    if not good_v or not good_a:
        sys.exit("no usable espeak-ng voices")
    return good_a, good_v


def speak(word: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.wav"
        done = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path),
                               word], capture_output=True, text=True)
        if done.returncode != 0 or not path.is_file():  # espeak-ng exits 0 on some argument errors
            raise RuntimeError(f"espeak-ng failed for {voice!r} {word!r}: {done.stderr.strip()}")
        with wave.open(io.BytesIO(path.read_bytes())) as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise RuntimeError(f"unexpected espeak-ng output format {w.getparams()}")
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            return pcm.astype(np.float32) / 32768.0, w.getframerate()


def trim(x: np.ndarray, sample_rate: int, threshold: float = 0.01, margin_ms: float = 40.0) -> np.ndarray:
    """Cut leading and trailing silence, keeping a short margin."""
    loud = np.flatnonzero(np.abs(x) > threshold * max(1e-9, float(np.abs(x).max())))
    if loud.size == 0:
        return x
    margin = int(sample_rate * margin_ms / 1000)
    return x[max(0, loud[0] - margin): loud[-1] + margin + 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speakers", type=int, default=100, help="espeak-ng configurations (x10 digits)")
    parser.add_argument("--sample-rate", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from maskkit.modalities.audio.features import resample

    version, data_dir = espeak_info()
    accents, variants = validate(data_dir, ACCENTS, VARIANTS)
    rng = np.random.default_rng(args.seed)
    voices = [f"{accents[rng.integers(len(accents))]}+{variants[rng.integers(len(variants))]}"
              for _ in range(args.speakers)]
    speeds = rng.integers(110, 231, size=args.speakers)  # words per minute
    pitches = rng.integers(15, 86, size=args.speakers)  # 0..99
    jobs = [(s, d) for s in range(args.speakers) for d in range(len(DIGITS))]

    def render(job: tuple[int, int]) -> np.ndarray:
        s, d = job
        x, sr = speak(DIGITS[d], voices[s], int(speeds[s]), int(pitches[s]))
        y = resample(x, sr, args.sample_rate).numpy()
        y = trim(y, args.sample_rate)
        return np.clip(np.round(y * 32767.0), -32768, 32767).astype(np.int16)

    with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        clips = list(pool.map(render, jobs))
    lengths = np.array([len(c) for c in clips], dtype=np.int64)
    meta = {
        "generator": "scripts/make_spoken_digits.py",
        "espeak_ng": version.split("Data at")[0].strip(),
        "seed": args.seed,
        "speakers": args.speakers,
        "sample_rate": args.sample_rate,
        "command": "espeak-ng -v ACCENT+VARIANT -s SPEED -p PITCH -w out.wav WORD",
        "resampling": "maskkit.modalities.audio.features.resample (windowed sinc), then silence trim",
        "licence": "espeak-ng is GPL-3.0-or-later; these clips are program output (see data/README.md)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        audio=np.concatenate(clips),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        labels=np.array([d for _, d in jobs], dtype=np.int64),
        speaker=np.array([s for s, _ in jobs], dtype=np.int64),
        voice=np.array(voices), speed=speeds.astype(np.int64), pitch=pitches.astype(np.int64),
        class_names=np.array(DIGITS), sample_rate=np.int64(args.sample_rate),
        meta=np.array(json.dumps(meta)),
    )
    secs = lengths / args.sample_rate
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): {len(clips)} clips, "
          f"{secs.min():.2f}-{secs.max():.2f} s (median {np.median(secs):.2f} s)")


if __name__ == "__main__":
    main()
