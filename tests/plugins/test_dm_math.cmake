# The parser, the archive reader and the cache are tested directly from the plugin's static library.
set(TEST_LIBS modlab_runner dm_math_parts)
