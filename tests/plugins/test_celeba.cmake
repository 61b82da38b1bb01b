# The test writes its JPEG fixtures with libjpeg.
find_package(JPEG REQUIRED)
set(TEST_LIBS modlab_runner JPEG::JPEG)
