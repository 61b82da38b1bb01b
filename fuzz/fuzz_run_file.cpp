// Run files as resume and `modlab show` / `verify` read them: the checksum block first, then HDF5
// (attributes, metrics, tables) for what the checksum vouches for. The input is the file's bytes.
#include "fuzz_util.hpp"

#include <modlab/runner/h5.hpp>
#include <modlab/runner/verify.hpp>

#include <hdf5.h>

#include <string>

namespace {

// HDF5 (1.10) itself crashes on some damaged files; modlab's promise is that it never hands HDF5 a
// sealed run file whose bytes changed, and that it reads what the seal vouches for without fault.
// Unsealed files (written before run files were sealed) go to HDF5 as they are, so the fuzzer
// skips them rather than fuzz HDF5.
void read_like_resume(const std::string& path) {
  modlab::fuzz::expect_only_modlab_errors([&] {
    if (modlab::runner::run_file_checksum_problem(path) == "no checksum") return;
    (void)modlab::runner::run_file_problem(path, "0123456789ab");
    if (auto s = modlab::runner::read_run_summary(path)) (void)modlab::runner::read_run_tables(path);
  });
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // HDF5 prints its error stack otherwise
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static modlab::fuzz::ScratchFile scratch(".h5");
  read_like_resume(scratch.write(data, size));
  return 0;
}
