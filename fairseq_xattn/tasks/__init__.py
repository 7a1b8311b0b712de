"""Tasks (registered on import): ``speech_to_text_ctc``."""
from .speech_to_text_ctc import (  # noqa: F401
    BatchingError,
    CtcSourceDictionary,
    SpeechToTextCtcConfig,
    SpeechToTextCtcTask,
    check_batches_cover_dataset,
)
from .speech_explain import SpeechExplainConfig, SpeechExplainTask  # noqa: F401,E402
