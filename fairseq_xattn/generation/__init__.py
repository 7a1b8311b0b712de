"""Cross-attention recording for fairseq-generate: beam search (every layer, every head, each
hypothesis' own history) and teacher forcing; see docs/generation.md."""
from .attention_store import AttentionStoreWriter  # noqa: F401
from .capture import CrossAttentionCapture  # noqa: F401
from .cross_attention_modules import cross_attention_modules  # noqa: F401
from .recorder import CrossAttentionRecorder, ForcedSequences  # noqa: F401
from .recording_ensemble import RecordingEnsembleModel  # noqa: F401
from .recording_generator import CrossAttentionRecordingGenerator, attach_alignment  # noqa: F401
from .task_mixin import RecordingConfig, RecordingTaskMixin  # noqa: F401
from .teacher_forced import TeacherForcedOutput, teacher_forced_pass  # noqa: F401
