set(TEST_LIBS modlab_sweep)
