#pragma once
// Reader for IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed.
//
// Every problem with a file (cannot open, wrong magic number, implausible dimensions, truncated
// data, bytes after the last record, corrupt gzip stream) is a modlab::DataError whose message
// starts with the file's path and says what was wrong.

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace modlab::mnist {

/// Header of an IDX file holding unsigned bytes.
struct IdxHeader {
  std::string path;
  std::vector<std::int64_t> dims;  ///< dims[0] = number of records, e.g. {60000, 28, 28}
  /// Bytes of one record (product of dims[1..]).
  std::int64_t record_bytes() const;
};

/// Reads and validates the header of `path` (magic 0x0000_08_<rank>) without reading its data.
IdxHeader read_idx_header(const std::string& path, int expected_rank);

/// Reads a whole uint8 IDX file of `expected_rank` dimensions: a uint8 tensor of shape `dims`.
/// Gzip is detected by content, not by the file name.
torch::Tensor read_idx(const std::string& path, int expected_rank);

/// Streams the file and calls `visit(row, bytes)` for each record in `rows` (sorted ascending,
/// unique), in that order; `bytes` is valid during the call only. The whole file is read and
/// checked, as by read_idx.
void for_each_idx_row(const std::string& path, int expected_rank, const std::vector<std::int64_t>& rows,
                      const std::function<void(std::int64_t, const std::uint8_t*)>& visit);

}  // namespace modlab::mnist
