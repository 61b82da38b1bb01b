# bench_moe_epoch times the expert banks of the mixture library directly as well as whole runs.
set(BENCH_LIBS modlab_runner modlab_mixture)
