# The test writes gzipped IDX fixtures itself.
find_package(ZLIB REQUIRED)
set(TEST_LIBS modlab_runner ZLIB::ZLIB)
