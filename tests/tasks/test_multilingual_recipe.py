"""The multilingual recipes (examples/configs/small_asr_{pretrain,st}.yaml) run as written, on data
prepared the way examples/multilingual_small/README.md documents: ``xattn prep ... --specaugment lb --splits
train_en,train_it,dev_en,dev_it`` (English and Italian audio, ASR + ST, <lang:xx> tags).  Only the
model size and the machine settings (CPU, one process, 2 updates) are overridden, so the recipes'
subsets, criterion and task options are the real ones."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "examples" / "configs"
BIN = Path(sys.executable).parent

# the corpus' English-audio manifests are <split>.tsv, its Italian-audio ones <split>_it.tsv; the
# recipes read the split names of examples/multilingual_small/README.md
SPLITS = {"train_en": "train", "train_it": "train_it", "dev_en": "dev", "dev_it": "dev_it"}
TINY_MODEL = ["model.encoder_layers=1", "model.decoder_layers=1", "model.ctc_src_layer=1",
              "model.encoder_embed_dim=32", "model.decoder_embed_dim=32", "model.encoder_ffn_embed_dim=64",
              "model.decoder_ffn_embed_dim=64", "model.encoder_attention_heads=2", "model.decoder_attention_heads=2",
              "model.conv_channels=32", "model.depthwise_conv_kernel_size=3"]
MACHINE = ["common.cpu=true", "common.fp16=false", "common.log_interval=1",
           "distributed_training.distributed_world_size=1", "dataset.num_workers=0", "optimization.max_update=2"]


@pytest.fixture(scope="module")
def multilingual_data(tmp_path_factory):
    """en+it data: train_en/train_it 5 utterances, dev_en/dev_it 2 each."""
    from fairseq_xattn.data.corpus.build import build_corpus
    from fairseq_xattn.data.prep import prepare

    root = tmp_path_factory.mktemp("multilingual")
    corpus, raw = root / "corpus", root / "raw"
    build_corpus(corpus, size=9, seed=2, workers=2, eval_size=2)
    raw.mkdir()
    os.symlink(corpus / "audio", raw / "audio")  # audio paths are relative to the manifest's folder
    for name, source in SPLITS.items():
        shutil.copyfile(corpus / f"{source}.tsv", raw / f"{name}.tsv")
    summary = prepare(raw, root / "data", splits=list(SPLITS), vocab_size=120, specaugment="lb")
    assert summary["lang_tags"] == ["<lang:en>", "<lang:it>"]
    assert summary["splits"] == {"train_en": 5, "train_it": 5, "dev_en": 2, "dev_it": 2}
    return root / "data"


def _hydra_train(config: str, data: Path, save_dir: Path, *overrides) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [str(BIN / "fairseq-hydra-train"), "--config-dir", str(CONFIGS), "--config-name", config,
           f"task.data={data}", f"common.user_dir={REPO / 'fairseq_xattn'}", f"checkpoint.save_dir={save_dir}",
           *MACHINE, *TINY_MODEL, *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=save_dir.parent)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{config} failed:\n{log[-4000:]}"
    assert (save_dir / "checkpoint_last.pt").is_file(), log[-2000:]
    return log


def test_small_recipes_stage_one_then_stage_two(multilingual_data, tmp_path):
    stage1 = _hydra_train("small_asr_pretrain", multilingual_data, tmp_path / "stage1")
    # both training splits are read and trained on as one (an epoch is one update of all 10
    # utterances); fairseq-train validates each split of valid_subset on its own
    for split, n in (("train_en", 5), ("train_it", 5), ("dev_en", 2), ("dev_it", 2)):
        assert re.search(rf'split="{split}", n_samples={n}\b', stage1), split
    epochs = re.findall(r"\[train\]\[INFO\] - epoch 00\d \|.*\| bsz (\d+) \| num_updates", stage1)
    assert epochs == ["10", "10"], stage1[-3000:]
    for split in ("dev_en", "dev_it"):
        assert re.findall(rf"valid on '{split}' subset .*\| bsz (\d+) \|", stage1) == ["2", "2"], split
    # stage 2 from the stage-1 model, as examples/multilingual_small/README.md does it (ASR+ST, p 0.5)
    stage2 = _hydra_train("small_asr_st", multilingual_data, tmp_path / "stage2",
                          f"checkpoint.finetune_from_model={tmp_path / 'stage1' / 'checkpoint_last.pt'}")
    assert re.search(r"loading pretrained model from .*stage1/checkpoint_last.pt", stage2), stage2[-3000:]
    assert re.search(r"Loaded checkpoint .*stage1/checkpoint_last.pt .*@ 0 updates", stage2), stage2[-3000:]
    assert re.search(r"valid on 'dev_it' subset", stage2)
