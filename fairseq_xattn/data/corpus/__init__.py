"""The synthetic bilingual espeak-ng corpus: grammar, synthesis binding, word timings, builder, CLI."""
