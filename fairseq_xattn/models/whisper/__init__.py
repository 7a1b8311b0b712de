"""Whisper as a fairseq model (``whisper``, archs ``whisper_tiny`` ... ``whisper_large``; registered
on import), its checkpoint importers (OpenAI ``.pt``, Hugging Face folder, CTranslate2 folder ->
OpenAI's canonical format -> fairseq checkpoint), its vocabulary as a fairseq Dictionary, and the
decoder prompt."""
from .model import (  # noqa: F401
    ARCHS,
    WHISPER_SUBSAMPLING,
    WhisperAudioEncoder,
    WhisperConfig,
    WhisperModel,
    WhisperModelError,
    WhisperTextDecoder,
)
from .prompt import generator_prompt, whisper_prompt  # noqa: F401
