"""ctypes binding to libespeak-ng (bundled by the ``espeakng_loader`` wheel): synthesise one text
and get its audio together with the sample position of every word.

Only the C API calls we need are bound.  Synthesis runs in synchronous mode: the library calls our
callback with chunks of 16-bit audio and the events (WORD, PHONEME, END, ...) that belong to them;
each event's ``sample`` field is the absolute sample index (from the start of this synthesis) at
which it happens.

Reproducibility: espeak-ng keeps synthesiser state across calls in one process, so only the first
synthesis after loading is bit-reproducible; and breathy voice variants draw noise from a random
source seeded from the clock unless :meth:`Espeak.seed` is called.  :func:`synthesize_in_fresh_process` therefore forks a
child of a process that has initialised the library but never synthesised, and lets the child do
exactly one synthesis.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

SAMPLE_RATE = 22050  # espeak-ng's fixed output rate

# espeak_AUDIO_OUTPUT / flags / event types, from speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_END = 5
_EVENT_MSG_TERMINATED = 6
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position of the word in the text
        ("length", ctypes.c_int),  # characters in the word
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # samples since the start of this synthesis
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class WordEvent:
    """One espeak WORD event: characters [text_position, text_position + length) (0-based) start
    being spoken at ``sample``."""

    text_position: int
    length: int
    sample: int


@dataclass
class PhonemeEvent:
    phoneme: str
    sample: int


@dataclass
class Synthesis:
    """Audio (int16, 22050 Hz) and the events of one synthesis."""

    audio: np.ndarray
    words: List[WordEvent] = field(default_factory=list)
    phonemes: List[PhonemeEvent] = field(default_factory=list)
    end_sample: Optional[int] = None


class Espeak:
    """The loaded library, initialised once per process (synchronous output, phoneme events)."""

    _instance: Optional["Espeak"] = None

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover
            raise ImportError("the synthetic corpus needs the 'espeakng-loader' package (pip install espeakng-loader)") from e
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data = espeakng_loader.get_data_path().encode()
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, _INITIALIZE_PHONEME_EVENTS)
        if rate != SAMPLE_RATE:
            raise RuntimeError(f"espeak_Initialize failed or returned an unexpected sample rate ({rate}) with data {data!r}")
        self._chunks: List[np.ndarray] = []
        self._current: Optional[Synthesis] = None
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: the library holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> "Espeak":
        if cls._instance is None:
            cls._instance = Espeak()
        return cls._instance

    def _on_audio(self, wav, n_samples, events) -> int:
        if n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_WORD:
                self._current.words.append(WordEvent(e.text_position - 1, e.length, e.sample))
            elif e.type == _EVENT_PHONEME:
                self._current.phonemes.append(PhonemeEvent(e.id.string.decode("utf-8", "replace"), e.sample))
            elif e.type in (_EVENT_END, _EVENT_MSG_TERMINATED) and self._current.end_sample is None:
                self._current.end_sample = e.sample
            i += 1
        return 0  # continue synthesis

    def seed(self, seed: int) -> None:
        """Seed espeak's random source (breathy voices add noise) and libc's rand(), which
        espeak also uses; otherwise it seeds from the clock at initialisation."""
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        ctypes.CDLL(None).srand(ctypes.c_uint(seed & 0xFFFFFFFF))

    def check_voice(self, voice: str) -> None:
        """Raise ValueError unless ``voice`` ("language[+variant]") is known.  espeak itself
        silently ignores an unknown variant, so variants are checked against its voices/!v folder."""
        import espeakng_loader

        _, _, variant = voice.partition("+")
        variants = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
        if variant and not (variants / variant).is_file():
            raise ValueError(f"espeak-ng does not know the voice {voice!r} (no variant {variant!r} in {variants})")
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng does not know the voice {voice!r}")

    def synthesize(self, text: str, voice: str, rate: int = 175, pitch: int = 50, seed: int = 0) -> Synthesis:
        """Speak ``text`` with ``voice`` (e.g. "en-us+f3") at ``rate`` words per minute."""
        self.seed(seed)
        self.check_voice(voice)
        self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        self._chunks = []
        self._current = Synthesis(audio=np.zeros(0, np.int16))
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        err = self.lib.espeak_Synth(buf, len(buf), 0, 0, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed (error {err}) for text {text!r} with voice {voice!r}")
        self.lib.espeak_Synchronize()
        out = self._current
        out.audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        self._current, self._chunks = None, []
        return out


def _read_exact(fd: int, n: int) -> bytes:
    parts = []
    while n > 0:
        b = os.read(fd, n)
        if not b:
            raise EOFError("espeak worker exited without sending its result")
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def synthesize_in_fresh_process(text: str, voice: str, rate: int = 175, pitch: int = 50, seed: int = 0) -> Synthesis:
    """Synthesise in a forked child of this (never-synthesising) process: bit-reproducible.

    The library is loaded and initialised here first so that each child starts from the same
    pristine state and does not pay the initialisation again.
    """
    Espeak.get()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: one synthesis, send it back, exit without running Python cleanup
        code = 0
        try:
            os.close(r)
            try:
                payload = pickle.dumps(("ok", Espeak.get().synthesize(text, voice, rate, pitch, seed)))
            except BaseException as e:  # report the error to the parent
                payload = pickle.dumps(("error", f"{type(e).__name__}: {e}"))
            os.write(w, struct.pack("<Q", len(payload)))
            view = memoryview(payload)
            while view:
                view = view[os.write(w, view):]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    try:
        (size,) = struct.unpack("<Q", _read_exact(r, 8))
        status, value = pickle.loads(_read_exact(r, size))
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    if status != "ok":
        raise RuntimeError(f"espeak-ng synthesis of {text!r} with voice {voice!r} failed: {value}")
    return value
