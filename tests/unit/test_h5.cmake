set(TEST_LIBS modlab_h5)
