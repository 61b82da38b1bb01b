# bench_moe_epoch times the expert banks of the moe plugin directly as well as whole runs.
set(BENCH_LIBS modlab_runner moe_parts)
