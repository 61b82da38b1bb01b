// IDX files (MNIST / Fashion-MNIST), raw or gzip: header checks, dimensions against the data,
// streaming of selected rows. The input is the file's bytes.
#include "fuzz_util.hpp"

#include "idx_reader.hpp"

#include <cstdint>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static modlab::fuzz::ScratchFile scratch(".idx");
  const std::string& path = scratch.write(data, size);
  for (int rank : {1, 3}) {
    modlab::fuzz::expect_only_modlab_errors([&] {
      const torch::Tensor t = modlab::mnist::read_idx(path, rank);
      if (t.dim() != rank || t.scalar_type() != torch::kUInt8) std::abort();
      const std::int64_t rows = t.size(0);
      std::vector<std::int64_t> wanted;
      for (std::int64_t r = 0; r < rows && wanted.size() < 3; r += 1 + rows / 3) wanted.push_back(r);
      std::int64_t seen = 0;
      modlab::mnist::for_each_idx_row(path, rank, wanted, [&](std::int64_t row, const std::uint8_t* bytes) {
        if (row != wanted.at(static_cast<std::size_t>(seen++)) || bytes == nullptr) std::abort();
      });
      if (seen != static_cast<std::int64_t>(wanted.size())) std::abort();
    });
  }
  return 0;
}
