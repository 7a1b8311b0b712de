"""Task ``speech_explain``: SPES saliency of a model's own hypotheses, run by stock fairseq-generate.

    fairseq-generate DATA --user-dir $(xattn user-dir) --task speech_explain --path CKPT \\
        --gen-subset test --explain-hypotheses RECORD_STORE_OR_TSV --explain-store OUT \\
        --explain-target {input,encoder} [--explain-masks 20000 ...]

For every utterance of the batch, :meth:`SpeechExplainTask.inference_step` forces the decoder on the
hypothesis (from the attention store of a recording run, or a TSV), computes the reference
probabilities, runs the masks (:mod:`fairseq_xattn.explain`) and appends the map to the saliency
store; it returns the forced hypotheses (with their reference log-probabilities as scores) so that
fairseq-generate prints them as usual.  Utterances already in the store are skipped (resume: the
same command after an interruption finishes the job).  Sharded runs (``--num-shards N --shard-id K``)
write ``OUT.shardK-of-N``, merged with ``xattn store merge``; the processes of ``torchrun`` split the data
and leave one merged store (:mod:`fairseq_xattn.generation.sharding`).  See docs/explain.md.
"""

import atexit
import logging
from dataclasses import field, make_dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from omegaconf import II

from ..errors import InputDataError, OptionError
from ..explain.explainer import Explainer
from ..explain.forced_decoder import FairseqForcedDecoder
from ..explain.hypotheses import HypothesisSource
from ..explain.saliency_store import open_saliency_writer
from ..generation.sharding import ShardedStoreRun, finished_in_job_store
from ..generation.teacher_forced import decoder_first_input
from ..explain.settings import explain_config_fields, settings_from_config
from ..geometry import infer_subsampling
from ..maps.pooling import AGGREGATORS
from ..stores import KIND_SALIENCY, SALIENCY_ARRAY, SALIENCY_GRIDS, StoreReader, saliency_record_meta
from .speech_to_text_ctc import SpeechToTextCtcDataConfig, SpeechToTextCtcTaskBase

logger = logging.getLogger(__name__)

#: Options of the explain run that do not define the maps (where to read and write, how to show progress).
_RUN_FIELDS = [
    ("explain_hypotheses", Optional[str], field(default=None, metadata={
        "help": "token sequences to explain: the store of a recording run (--record-cross-attn; its rank-0 "
                "hypotheses) or a TSV with columns id and tokens (space-separated dictionary symbols)"})),
    ("explain_store", Optional[str], field(default=None, metadata={
        "help": "output saliency store directory (created, or resumed when it exists)"})),
    ("explain_float16", bool, field(default=False, metadata={"help": "store maps in float16"})),
    ("explain_no_progress", bool, field(default=False, metadata={"help": "no per-utterance mask progress bar"})),
    ("num_shards", int, field(default=II("dataset.num_shards"))),
    ("shard_id", int, field(default=II("dataset.shard_id"))),
]

#: The task's config: the data options, then one ``--explain-*`` flag per explanation setting and
#: perturbation option (generated from fairseq_xattn/explain/settings.py, their one definition).
SpeechExplainConfig = make_dataclass(
    "SpeechExplainConfig", _RUN_FIELDS[:4] + explain_config_fields(ChoiceEnum) + _RUN_FIELDS[4:],
    bases=(SpeechToTextCtcDataConfig,))
SpeechExplainConfig.__module__ = __name__


def reliability_meta(res, prefix_len: int, target: str, subsampling: Optional[int], n_encoder_frames: int,
                     n_frames: int) -> Dict[str, object]:
    """Split-half reliability (Spearman-Brown corrected) of the map's content rows, as the analysis sees
    them: ``reliability`` at the map's own resolution, ``reliability_pooled`` per aggregator for maps
    the analysis pools to the encoder grid (input saliency), ``reliability_per_token`` per content row."""
    rows = slice(prefix_len, -1)

    def r4(x) -> float:  # 4 decimals: batched and single forward passes differ in float rounding only
        return round(float(x), 4)

    meta: Dict[str, object] = {
        "reliability": r4(res.reliability_of_rows(rows.start, rows.stop)),
        "reliability_per_token": [r4(x) for x in res.reliability_per_token[rows]],
    }
    if SALIENCY_GRIDS[target].pooled:
        s = subsampling or infer_subsampling(n_frames, n_encoder_frames)
        meta["reliability_pooled"] = {name: r4(res.reliability_of_rows(rows.start, rows.stop, pool=name, subsampling=s))
                                      for name in sorted(AGGREGATORS)}
    return meta


@register_task("speech_explain", dataclass=SpeechExplainConfig)
class SpeechExplainTask(ShardedStoreRun, SpeechToTextCtcTaskBase):
    """fairseq-generate explains instead of decoding (see the module docstring)."""

    def __init__(self, cfg, tgt_dict, src_dict=None):
        super().__init__(cfg, tgt_dict, src_dict)
        self.settings = settings_from_config(cfg)  # fail early on bad options
        self._explainer: Optional[Explainer] = None
        self._writer = None
        self._stored: Dict[str, dict] = {}
        self._hypotheses: Optional[HypothesisSource] = None
        self._subsampling: Optional[int] = None  # the encoder's, when it says (else inferred per record)

    # -- the store of a (sharded) run: see fairseq_xattn.generation.sharding ------------------------
    def writes_store(self) -> bool:
        return True

    def store_option(self) -> str:
        if not self.cfg.explain_store:
            raise OptionError("--task speech_explain needs --explain-store OUT_DIR (where to write the maps)")
        return self.cfg.explain_store

    def open_run_store(self, models, generator) -> None:
        self._hypothesis_source()
        self._store_writer(models)

    def close_run_store(self) -> None:
        self.close_explain_store()

    def build_generator(self, models, args, *more, **kwargs):
        self._hypothesis_source()  # missing options and an unreadable hypotheses file fail before any batch
        self.store_option()
        generator = super().build_generator(models, args, *more, **kwargs)
        self.remember_generation(models, generator)
        return generator

    # -- lazily opened resources ----------------------------------------------------------------
    def _hypothesis_source(self) -> HypothesisSource:
        if self._hypotheses is None:
            if not self.cfg.explain_hypotheses:
                raise OptionError("--task speech_explain needs --explain-hypotheses (a recording store or a TSV)")
            self._hypotheses = HypothesisSource(self.cfg.explain_hypotheses, self.target_dictionary,
                                                prompt=self.decoder_prompt_prefix())
        return self._hypotheses

    def store_path(self) -> Path:
        """Where this process writes (the store, a shard's or a torchrun process's part of it)."""
        return self.process_store_path()

    def _store_writer(self, models):
        if self._writer is None:
            path = self.store_path()
            # Absolute path: the same run resumed (or another shard) from another directory still matches.
            # The model and data identity make a rerun with another checkpoint or data refuse to resume.
            meta = {**self.settings.store_meta(), "hypotheses": str(Path(self.cfg.explain_hypotheses).resolve()),
                    **self.run_identity(models)}
            self._writer = open_saliency_writer(path, {**meta, **self.run_shard.part_meta()},
                                                float16=bool(self.cfg.explain_float16))
            done = self._writer.done_ids()
            if done:
                logger.info(f"{path}: {len(done)} utterances already explained, skipping them (resume)")
                with StoreReader(path, expect_kind=KIND_SALIENCY) as reader:
                    self._stored = {u: reader.row_meta(u) for u in done}
            merged = finished_in_job_store(self.run_shard, self.store_option(), self._writer.meta, KIND_SALIENCY)
            if merged:
                logger.info(f"{self.run_shard.job_store(self.store_option())}: {len(merged)} utterances explained by "
                            "an earlier run of this job, skipping them")
                self._stored.update({utt_id: row for (utt_id, _), row in merged.items()})
            shard = self.run_shard
            if shard.num_shards > 1:
                logger.info(f"shard {shard.shard_id} of {shard.num_shards} writes {shard.job_store(self.store_option())}; "
                            f"merge the shards with `xattn store merge {self.store_option()}.shard*-of-{shard.num_shards} "
                            f"--out {self.cfg.explain_store}`")
            atexit.register(self.close_explain_store)
        return self._writer

    def close_explain_store(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _explainer_for(self, models) -> Explainer:
        if len(models) != 1:
            raise OptionError(f"--task speech_explain explains one model, got an ensemble of {len(models)} (--path)")
        if self._explainer is None or self._explainer.adapter.model is not models[0]:
            adapter = FairseqForcedDecoder(models[0], kv_reuse=self.settings.kv_reuse)
            self._subsampling = getattr(models[0].encoder, "subsampling_factor", None)
            self._explainer = Explainer(adapter, self.settings, progress=not self.cfg.explain_no_progress)
        return self._explainer

    # -- fairseq-generate hook ----------------------------------------------------------------
    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        explainer = self._explainer_for(models)
        hypotheses = self._hypothesis_source()  # before the store: its meta records the hypotheses' path
        writer = self._store_writer(models)
        try:
            return self._explain_batch(explainer, hypotheses, writer, sample)
        except BaseException:
            # Interrupted (Ctrl-C, an error): release the store now, not at exit.  Its records stay (the same
            # command resumes them), and no process forked later (data-loader workers of a rerun in this
            # interpreter) inherits the store's lock.
            self.close_explain_store()
            raise

    def _explain_batch(self, explainer: Explainer, hypotheses: HypothesisSource, writer, sample) -> List[List[dict]]:
        d = self.target_dictionary
        src = sample["net_input"]["src_tokens"]
        lengths = sample["net_input"]["src_lengths"].tolist()
        out: List[List[dict]] = []
        for b, utt_id in enumerate(self.utterance_ids(sample)):
            hyp = hypotheses.get(utt_id)
            if utt_id in self._stored:
                meta = self._stored[utt_id]
                if meta["tokens"] != hyp.tokens:
                    raise InputDataError(f"{self.store_path()}: utterance {utt_id!r} was explained for tokens "
                                     f"{meta['token_strings']} but --explain-hypotheses now gives {hyp.token_strings}")
            else:
                features = src[b, :lengths[b]]  # T x F without the batch's padding: batch-independent
                tokens = torch.tensor(hyp.tokens, dtype=torch.long, device=src.device)
                res = explainer.explain(utt_id, features, tokens, decoder_first_input(d), vocab_size=len(d))
                meta = saliency_record_meta(hyp.tokens, hyp.token_strings, lengths[b], res.n_encoder_frames,
                                            hyp.prefix_len, res.n_masks, res.units_per_level, res.ref_logprobs.tolist(),
                                            subsampling=self._subsampling,
                                            **reliability_meta(res, hyp.prefix_len, self.settings.target,
                                                               self._subsampling, res.n_encoder_frames, lengths[b]))
                writer.write(utt_id, {SALIENCY_ARRAY: res.saliency}, meta)
                self._stored[utt_id] = meta
                logger.info(f"explained {utt_id}: {len(hyp.tokens)} tokens, {res.n_masks} masks in "
                            f"{res.seconds:.1f} s ({res.n_masks / max(res.seconds, 1e-9):.0f} masks/s)")
            positional = torch.tensor(meta["positional_scores"])
            out.append([{
                "tokens": torch.tensor(meta["tokens"], dtype=torch.long),
                "score": positional.mean(),
                "positional_scores": positional,
                "alignment": None,
                "attention": None,
            }])
        return out
