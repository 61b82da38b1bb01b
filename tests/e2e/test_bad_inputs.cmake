# Includes no LibTorch header.
set(TEST_NO_PCH ON)
