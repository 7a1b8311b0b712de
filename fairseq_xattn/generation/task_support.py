"""What inference steps of our tasks need from their fairseq task: utterance ids, text, the forced
decoder prompt (Whisper), and the identity of the run (model and data) that stores record.  A mixin for any fairseq speech-to-text
task, argparse (``args``) or dataclass (``cfg``) configured."""
from pathlib import Path
from typing import Any, Dict, List

from .run_settings import files_fingerprint, model_fingerprint


class GenerationTaskSupport:
    """Mixin: remembers the split being generated and provides ids, text decoding and run identity."""

    def load_dataset(self, split, *args, **kwargs):
        self.generated_split = split  # the split fairseq-generate decodes (the last one loaded)
        return super().load_dataset(split, *args, **kwargs)

    def utterance_ids(self, sample) -> List[str]:
        """Manifest ids of a batch (dataset indices as strings when the batch has none)."""
        if sample.get("utt_id") is not None:
            return [str(u) for u in sample["utt_id"]]
        dataset = self.datasets.get(getattr(self, "generated_split", None))
        ids = getattr(dataset, "ids", None)
        if ids is None:
            return [str(i) for i in sample["id"].tolist()]
        return [str(ids[i]) for i in sample["id"].tolist()]

    def _text_codecs(self):
        if getattr(self, "_text_codecs_cache", None) is None:
            cfg = getattr(self, "args", None) or self.cfg
            self._text_codecs_cache = (self.build_tokenizer(cfg), self.build_bpe(cfg))
        return self._text_codecs_cache

    def decode_tokens(self, tokens: List[int], strip, escape_unk: bool = False) -> str:
        """Text as fairseq-generate prints it: symbols, then BPE and tokenizer decoding.

        fairseq escapes unknown words only in references (T- lines, ``<<unk>>``), not in hypotheses
        (D- lines, ``<unk>``): ``escape_unk=True`` for references only.
        """
        # a list, not a tensor: Dictionary.string is several times slower on tensor elements
        text = self.target_dictionary.string(tokens, escape_unk=escape_unk, extra_symbols_to_ignore=strip)
        tokenizer, bpe = self._text_codecs()
        if bpe is not None:
            text = bpe.decode(text)
        if tokenizer is not None:
            text = tokenizer.decode(text)
        return text

    def decoder_prompt_prefix(self) -> List[int]:
        """Tokens forced after the decoder's first input (:func:`.teacher_forced.decoder_first_input`)
        before anything is generated: Whisper's task prompt after ``<|startoftranscript|>``; none for
        our models (their language tag is fairseq's ``--prefix-size`` prefix).  Tasks override it."""
        return []

    def with_prompt(self, tokens):
        """``tokens`` (a LongTensor ``I``) with :meth:`decoder_prompt_prefix` in front, unless they
        already start with it (hypotheses of a recording run do; references never do)."""
        import torch

        prompt = self.decoder_prompt_prefix()
        if not prompt or tokens[: len(prompt)].tolist() == prompt:
            return tokens
        return torch.cat([tokens.new_tensor(prompt), tokens])

    def encode_text(self, text: str) -> str:
        """Raw text -> the space-separated symbols the target dictionary reads (as the dataset does)."""
        tokenizer, bpe = self._text_codecs()
        if tokenizer is not None:
            text = tokenizer.encode(text)
        if bpe is not None:
            text = bpe.encode(text)
        return text

    def run_identity(self, models) -> Dict[str, Any]:
        """What a store's records depend on besides the task's own options: the model (a hash of its
        weights), the data (folder, config, split, a hash of the manifests) and ``--infer-tgt-lang``.
        Shared by the attention store and the saliency store."""
        cfg = getattr(self, "cfg", None) or self.args
        data = str(Path(cfg.data).resolve()) if getattr(cfg, "data", None) else None
        config_yaml = getattr(cfg, "config_yaml", "config.yaml")
        split = getattr(self, "generated_split", None)
        data_files = [Path(data) / config_yaml] + [Path(data) / f"{s}.tsv" for s in (split or "").split(",") if s] \
            if data else []
        identity = {
            "model_sha256": model_fingerprint(models),
            "data": data, "config_yaml": config_yaml, "gen_subset": split,
            "data_sha256": files_fingerprint(data_files),
            "infer_tgt_lang": getattr(cfg, "infer_tgt_lang", None),
        }
        # Whisper's alignment heads (0-based [layer, head]): `xattn timestamps --heads whisper` reads them
        heads = getattr(models[0], "alignment_heads", None) if len(models) == 1 else None
        if isinstance(heads, (list, tuple)) and heads:
            identity["alignment_heads"] = [[int(layer), int(head)] for layer, head in heads]
        prompt = self.decoder_prompt_prefix()
        if prompt:
            identity["decoder_prompt"] = [int(t) for t in prompt]
        return identity

