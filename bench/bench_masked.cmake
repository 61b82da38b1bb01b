# The mask sampler is masked_analyzer's own (its static library).
set(BENCH_LIBS modlab_runner masked_parts)
