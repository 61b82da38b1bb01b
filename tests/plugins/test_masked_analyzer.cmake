# The mask math (sampling, restriction, tables) is tested directly from the plugin's static library.
set(TEST_LIBS modlab_runner masked_parts)
