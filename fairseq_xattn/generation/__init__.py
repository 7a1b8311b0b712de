"""Cross-attention recording for fairseq-generate: beam search (every layer, every head, each
hypothesis' own history) and teacher forcing; see docs/generation.md."""
from .attention_store import (  # noqa: F401
    ATTENTION_ARRAY,
    AttentionStoreWriter,
    infer_subsampling,
    open_attention_store,
    read_attention,
)
from .capture import CrossAttentionCapture  # noqa: F401
from .cross_attention_modules import cross_attention_modules  # noqa: F401
from .recording_ensemble import RecordingEnsembleModel, encoder_output_lengths  # noqa: F401
from .recording_generator import CrossAttentionRecordingGenerator, attach_alignment  # noqa: F401
from .task_mixin import RecordingConfig, RecordingTaskMixin  # noqa: F401
from .teacher_forced import TeacherForcedOutput, record_teacher_forced, teacher_forced_pass  # noqa: F401
