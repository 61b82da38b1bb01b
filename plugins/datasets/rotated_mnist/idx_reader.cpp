#include "idx_reader.hpp"

#include <modlab/errors.hpp>

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace modlab::mnist {
namespace {

// Headers claiming more than this are corrupt rather than big: full MNIST is 47 MB.
constexpr std::int64_t kMaxDataBytes = std::int64_t{1} << 36;
constexpr std::int64_t kChunkBytes = std::int64_t{1} << 20;

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

// zlib's gz* functions read gzip and plain files alike, so one code path covers both.
class GzInput {
 public:
  explicit GzInput(std::string path) : path_(std::move(path)) {
    errno = 0;
    file_ = gzopen(path_.c_str(), "rb");
    if (file_ == nullptr)
      throw DataError(path_ + ": cannot open (" + (errno ? std::strerror(errno) : "out of memory") + ")");
    gzbuffer(file_, 1 << 15);  // 32 KiB: as fast for these files, and small allocations
  }
  ~GzInput() { gzclose_r(file_); }
  GzInput(const GzInput&) = delete;
  GzInput& operator=(const GzInput&) = delete;

  const std::string& path() const { return path_; }

  // Up to n bytes; fewer only where the data ends. Corrupt compressed data throws.
  std::int64_t read(void* buf, std::int64_t n) {
    auto* p = static_cast<unsigned char*>(buf);
    std::int64_t got = 0;
    while (got < n) {
      auto chunk = static_cast<unsigned>(std::min<std::int64_t>(n - got, std::int64_t{1} << 30));
      int r = gzread(file_, p + got, chunk);
      if (r < 0) {
        int code = Z_OK;
        const char* msg = gzerror(file_, &code);
        throw DataError(path_ + ": corrupt gzip data (" + (msg ? msg : "unknown zlib error") + ")");
      }
      if (r == 0) break;
      got += r;
    }
    return got;
  }

  // After a short read: true when a gzip stream ended in the middle (rather than a plain file
  // or a complete stream simply holding too little).
  bool stream_cut_short() {
    int code = Z_OK;
    gzerror(file_, &code);
    return code == Z_BUF_ERROR;
  }

 private:
  std::string path_;
  gzFile file_ = nullptr;
};

std::string with_commas(std::int64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > (s[0] == '-' ? 1 : 0); i -= 3) s.insert(static_cast<std::size_t>(i), ",");
  return s;
}

IdxHeader parse_header(GzInput& in, int expected_rank) {
  unsigned char magic[4];
  std::int64_t got = in.read(magic, 4);
  if (got < 4)
    throw DataError(in.path() + ": truncated: " + std::to_string(got) + " bytes, too short for an IDX header");
  std::uint32_t value = (std::uint32_t{magic[0]} << 24) | (std::uint32_t{magic[1]} << 16) |
                        (std::uint32_t{magic[2]} << 8) | std::uint32_t{magic[3]};
  std::uint32_t expected = 0x00000800u | static_cast<std::uint32_t>(expected_rank);
  if (value != expected) {
    std::string msg = in.path() + ": wrong magic number " + hex32(value) + " (expected " + hex32(expected) +
                      ": IDX unsigned-byte data with " + std::to_string(expected_rank) + " dimension" +
                      (expected_rank == 1 ? ")" : "s)");
    if (magic[0] == 0 && magic[1] == 0 && magic[2] == 0x08)
      msg += "; this is an IDX file with " + std::to_string(magic[3]) + " dimension" + (magic[3] == 1 ? "" : "s") +
             (magic[3] == 1 ? " (a label file?)" : magic[3] == 3 ? " (an image file?)" : "");
    else if (magic[0] == 0 && magic[1] == 0)
      msg += "; element type code " + hex32(magic[2]) + " is not unsigned byte (0x08)";
    else
      msg += "; not an IDX file";
    throw DataError(msg);
  }
  IdxHeader h;
  h.path = in.path();
  for (int d = 0; d < expected_rank; ++d) {
    unsigned char b[4];
    if (in.read(b, 4) < 4)
      throw DataError(in.path() + ": truncated: the header ends before dimension " + std::to_string(d + 1) + " of " +
                      std::to_string(expected_rank));
    std::uint32_t v = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
                      std::uint32_t{b[3]};
    h.dims.push_back(static_cast<std::int64_t>(v));
  }
  for (int d = 1; d < expected_rank; ++d)
    if (h.dims[static_cast<std::size_t>(d)] == 0)
      throw DataError(in.path() + ": implausible header: dimension " + std::to_string(d + 1) + " is 0");
  // Guard the multiplication against overflow before allocating anything. A count of 0 records
  // counts as 1, so that the size of one record is bounded too.
  std::int64_t total = 1;
  for (auto d : h.dims) {
    d = std::max<std::int64_t>(d, 1);
    if (total > kMaxDataBytes / d) {
      total = kMaxDataBytes + 1;
      break;
    }
    total *= d;
  }
  if (total > kMaxDataBytes) {
    std::string dims;
    for (auto d : h.dims) dims += (dims.empty() ? "" : " x ") + std::to_string(d);
    throw DataError(in.path() + ": implausible header: dimensions " + dims + " announce more than " +
                    with_commas(kMaxDataBytes) + " bytes");
  }
  return h;
}

[[noreturn]] void throw_truncated(GzInput& in, const IdxHeader& h, std::int64_t data_bytes_read) {
  std::int64_t total = h.dims[0] * h.record_bytes();
  std::string msg = in.path() + ": truncated: the header announces " + with_commas(h.dims[0]) + " records of " +
                    std::to_string(h.record_bytes()) + " bytes (" + with_commas(total) + " data bytes) but the data ends after " +
                    with_commas(data_bytes_read) + " bytes (" + with_commas(data_bytes_read / h.record_bytes()) +
                    " whole records)";
  if (in.stream_cut_short()) msg += "; the gzip stream is cut short";
  throw DataError(msg);
}

void expect_end(GzInput& in, const IdxHeader& h) {
  unsigned char extra[4096];
  std::int64_t n = in.read(extra, sizeof extra);
  if (n > 0) {
    std::int64_t more = n;
    while ((n = in.read(extra, sizeof extra)) > 0) more += n;
    throw DataError(in.path() + ": " + with_commas(more) + " unexpected bytes after the " + with_commas(h.dims[0]) +
                    " records the header announces (wrong record count in the header?)");
  }
}

// Reads up to `want` bytes into `buf` and returns how many arrived. The header's sizes are claims
// until the data is there (a few damaged bytes can announce gigabytes), so `buf` grows with the
// data, to at most twice what has been read.
std::int64_t read_growing(GzInput& in, std::vector<unsigned char>& buf, std::int64_t want) {
  std::int64_t have = 0;
  while (have < want) {
    if (static_cast<std::int64_t>(buf.size()) <= have)
      buf.resize(static_cast<std::size_t>(std::min(want, std::max<std::int64_t>(1 << 16, 2 * have))));
    const std::int64_t limit = std::min(want, static_cast<std::int64_t>(buf.size()));
    have += in.read(buf.data() + have, limit - have);
    if (have < limit) break;
  }
  return have;
}

// Streams the data records in chunks, handing each chunk (first record index, count, bytes) to
// `visit`. Checks the data is exactly as long as the header says.
void stream_records(GzInput& in, const IdxHeader& h,
                    const std::function<void(std::int64_t, std::int64_t, const unsigned char*)>& visit) {
  const std::int64_t rb = h.record_bytes();
  const std::int64_t per_chunk = std::max<std::int64_t>(1, kChunkBytes / rb);
  std::vector<unsigned char> buf;
  for (std::int64_t first = 0; first < h.dims[0]; first += per_chunk) {
    std::int64_t count = std::min(per_chunk, h.dims[0] - first);
    std::int64_t got = read_growing(in, buf, count * rb);
    if (got < count * rb) throw_truncated(in, h, first * rb + got);
    visit(first, count, buf.data());
  }
  expect_end(in, h);
}

}  // namespace

std::int64_t IdxHeader::record_bytes() const {
  std::int64_t n = 1;
  for (std::size_t i = 1; i < dims.size(); ++i) n *= dims[i];
  return n;
}

IdxHeader read_idx_header(const std::string& path, int expected_rank) {
  GzInput in(path);
  return parse_header(in, expected_rank);
}

torch::Tensor read_idx(const std::string& path, int expected_rank) {
  GzInput in(path);
  IdxHeader h = parse_header(in, expected_rank);
  const std::int64_t total = h.dims[0] * h.record_bytes();
  std::vector<unsigned char> data;
  const std::int64_t got = read_growing(in, data, total);
  if (got < total) throw_truncated(in, h, got);
  expect_end(in, h);
  return torch::from_blob(data.data(), h.dims, torch::kUInt8).clone();
}

void for_each_idx_row(const std::string& path, int expected_rank, const std::vector<std::int64_t>& rows,
                      const std::function<void(std::int64_t, const std::uint8_t*)>& visit) {
  GzInput in(path);
  IdxHeader h = parse_header(in, expected_rank);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= h.dims[0])
      throw DataError(path + ": record " + std::to_string(rows[i]) + " requested but the file has " +
                      std::to_string(h.dims[0]));
    if (i > 0 && rows[i] <= rows[i - 1]) throw ArgumentError("for_each_idx_row: rows must be sorted and unique");
  }
  const std::int64_t rb = h.record_bytes();
  std::size_t next = 0;
  stream_records(in, h, [&](std::int64_t first, std::int64_t count, const unsigned char* data) {
    for (; next < rows.size() && rows[next] < first + count; ++next) visit(rows[next], data + (rows[next] - first) * rb);
  });
}

}  // namespace modlab::mnist
