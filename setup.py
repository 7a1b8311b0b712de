"""fairseq-xattn: explain speech-to-text models, cross-attention against perturbation saliency.

Installation order matters and is scripted in ``scripts/install.sh`` (``make venv`` runs it):

1. ``torch`` first: the user's own build (>= 2.1; CPU or CUDA).  Installing it ourselves as a
   dependency of something else would let pip pick the newest CUDA build (several GB).
2. ``fairseq-fixed==0.12.3.1`` with ``--no-deps --no-build-isolation``: it provides the ``fairseq``
   module for Python 3.11+ (PyPI's fairseq 0.12.2 fails at import there).  Its metadata asks for
   torchaudio, whose wheels pin another torch build, and its build requirements ask for torch, which
   an isolated build would download again: so no dependencies and no isolation.  We list its real
   runtime requirements below instead (FAIRSEQ_RUNTIME).
3. This package: ``pip install -e .[test]``.
"""
from setuptools import find_packages, setup

# What fairseq 0.12 imports at run time on the paths we use (fairseq-fixed's own list minus
# torchaudio, cython and cffi, which are build-time or unused).  hydra/omegaconf are pinned by
# fairseq-fixed itself: fairseq's dataclass configs rely on omegaconf 2.3 behaviour.
FAIRSEQ_RUNTIME = [
    "hydra-core==1.3.2",
    "omegaconf==2.3.0",
    "numpy>=1.24",
    "regex",
    "sacrebleu>=2.0",
    "tqdm",
    "bitarray",
    "packaging",
    "pyyaml",  # S2T data config (config.yaml)
    "scikit-learn",  # imported by fairseq's data utilities
    "editdistance",  # fairseq-generate --scoring wer
]

OURS = [
    "torch>=2.1",  # never installed by us: satisfied by the torch installed in step 1
    "scipy>=1.10",
    "scikit-image>=0.22",  # SLIC segmentation for SPES
    "sentencepiece>=0.1.99",
    "jiwer>=3.0",
    "whisper-normalizer>=0.0.10",  # Whisper English text normaliser for WER
    "kaldi-native-fbank>=1.18",  # Kaldi filterbanks without torchaudio
    "soundfile>=0.12",  # reading wav/flac
    "soxr>=0.3",  # resampling to 16 kHz without torchaudio
    "espeakng-loader>=0.2",  # bundles libespeak-ng and its data for the synthetic corpus
    "matplotlib>=3.7",
    # Whisper (fairseq_xattn/models/whisper): Hugging Face folders store weights as safetensors, and
    # Whisper's byte-level BPE encodes references with the tokenizers library (both small wheels)
    "safetensors>=0.4",
    "tokenizers>=0.15",
]

setup(
    name="fairseq-xattn",
    version="0.1.0",
    description="Cross-attention vs. perturbation saliency for fairseq speech-to-text models",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["fairseq_xattn", "fairseq_xattn.*"]),
    # the explorer's page template, inlined into every `xattn view` output
    package_data={"fairseq_xattn.analysis.viewer": ["template.html", "viewer.js", "viewer.css"]},
    install_requires=FAIRSEQ_RUNTIME + OURS,
    extras_require={
        # transformers and ctranslate2: the Whisper equivalence tests build random models and convert them
        # with both libraries' own code (neither pulls torch: ours is installed first); selenium drives the
        # Debian chromium of scripts/install_browser.sh in the viewer's browser test.
        "test": ["pytest>=7", "pytest-timeout", "transformers>=4.40", "ctranslate2>=4.0", "huggingface_hub>=0.20",
                 "selenium==4.51.0"],
        # `xattn whisper-import openai/whisper-tiny.en` downloads from the Hugging Face hub (needs network)
        "hub": ["huggingface_hub>=0.20"],
        # COMET is optional: it pulls pytorch-lightning and transformers, and needs a local model.
        "comet": ["unbabel-comet>=2.2"],
    },
    entry_points={"console_scripts": ["xattn = fairseq_xattn.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
