set(BENCH_LIBS modlab_runner goe_parts)
