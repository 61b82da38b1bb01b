# The metric and network functions are tested directly from the moe plugin's static library.
set(TEST_LIBS modlab_runner moe_parts)
