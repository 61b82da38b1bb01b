set(TEST_LIBS modlab_sweep)
set(TEST_NO_PCH ON)  # includes no LibTorch header
