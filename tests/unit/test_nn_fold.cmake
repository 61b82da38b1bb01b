# The layers need nothing but the SDK (and so build and run in the sanitizer subset alone).
set(TEST_LIBS modlab::sdk)
