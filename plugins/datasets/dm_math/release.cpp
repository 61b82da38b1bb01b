#include "release.hpp"

#include <modlab/errors.hpp>

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

namespace fs = std::filesystem;

namespace modlab::dm_math {

const std::vector<std::string>& release_folders() {
  static const std::vector<std::string> f = {"interpolate", "extrapolate", "train-easy", "train-medium", "train-hard"};
  return f;
}

Release::~Release() = default;

namespace {

std::string layout_help() {
  return "expected the mathematics_dataset-v1.0 layout: <root>/{train-easy,train-medium,train-hard,interpolate,"
         "extrapolate}/<module>.txt, or the release's .tar.gz";
}

/// (folder, module) of a path ending in `<folder>/<module>.txt` with a release folder; nullopt-like
/// empty folder otherwise.
TextFile classify(const std::string& path, const std::string& where) {
  const fs::path p(path);
  TextFile t;
  if (p.extension() != ".txt") return t;
  const std::string folder = p.parent_path().filename().string();
  const auto& known = release_folders();
  if (std::find(known.begin(), known.end(), folder) == known.end()) return t;
  t.folder = folder;
  t.module = p.stem().string();
  t.where = where;
  return t;
}

std::string mtime_of(const fs::path& p) {
  return std::to_string(fs::last_write_time(p).time_since_epoch().count());
}

/// Calls `fn` in the canonical order: folders as release_folders(), modules sorted.
void in_order(std::vector<std::pair<TextFile, std::string>>& files,
              const std::function<void(const TextFile&, const std::string&)>& fn) {
  const auto& order = release_folders();
  auto rank = [&](const TextFile& t) { return std::find(order.begin(), order.end(), t.folder) - order.begin(); };
  std::sort(files.begin(), files.end(), [&](const auto& a, const auto& b) {
    return std::make_pair(rank(a.first), a.first.module) < std::make_pair(rank(b.first), b.first.module);
  });
  for (const auto& [t, text] : files) fn(t, text);
}

class FolderRelease : public Release {
 public:
  explicit FolderRelease(fs::path root) : root_(std::move(root)) {
    for (const auto& folder : release_folders()) {
      std::error_code ec;
      if (!fs::is_directory(root_ / folder, ec)) continue;
      for (const auto& e : fs::directory_iterator(root_ / folder)) {
        TextFile t = classify(e.path().string(), e.path().string());
        if (!t.folder.empty()) files_.push_back(t);
      }
    }
    if (files_.empty()) throw DataError(root_.string() + ": no question files found; " + layout_help());
  }
  std::string path() const override { return root_.string(); }
  std::string identity() const override {
    std::ostringstream o;
    for (const auto& t : files_) o << t.where << " " << fs::file_size(t.where) << " " << mtime_of(t.where) << "\n";
    return o.str();
  }
  void read(const std::function<bool(const TextFile&)>& wanted,
            const std::function<void(const TextFile&, const std::string&)>& fn) const override {
    std::vector<std::pair<TextFile, std::string>> chosen;
    for (const auto& t : files_) {
      if (!wanted(t)) continue;
      std::ifstream in(t.where, std::ios::binary);
      std::ostringstream s;
      s << in.rdbuf();
      if (!in && !in.eof()) throw DataError(t.where + ": cannot be read");
      chosen.emplace_back(t, s.str());
    }
    in_order(chosen, fn);
  }

 private:
  fs::path root_;
  std::vector<TextFile> files_;
};

/// A .tar.gz read through zlib, member by member.
class ArchiveRelease : public Release {
 public:
  explicit ArchiveRelease(fs::path file) : file_(std::move(file)) {}
  std::string path() const override { return file_.string(); }
  std::string identity() const override {
    return file_.string() + " " + std::to_string(fs::file_size(file_)) + " " + mtime_of(file_) + "\n";
  }
  void read(const std::function<bool(const TextFile&)>& wanted,
            const std::function<void(const TextFile&, const std::string&)>& fn) const override {
    gzFile gz = gzopen(file_.string().c_str(), "rb");
    if (!gz) throw DataError(file_.string() + ": cannot be opened");
    std::vector<std::pair<TextFile, std::string>> chosen;
    try {
      scan(gz, wanted, chosen);
    } catch (...) {
      gzclose(gz);
      throw;
    }
    gzclose(gz);
    in_order(chosen, fn);
  }

 private:
  /// Reads exactly n bytes (into `out` when given); DataError naming the member on a short read.
  void take(gzFile gz, std::size_t n, char* out, const std::string& member) const {
    std::array<char, 1 << 16> sink{};
    while (n > 0) {
      const auto chunk = static_cast<unsigned>(std::min<std::size_t>(n, out ? std::size_t{1} << 30 : sink.size()));
      const int got = gzread(gz, out ? out : sink.data(), chunk);
      if (got <= 0) {
        int err = 0;
        const char* msg = gzerror(gz, &err);
        throw DataError(file_.string() + ": truncated or corrupt archive, it ends inside " +
                        (member.empty() ? std::string("a tar header") : "member " + member) +
                        (err != Z_OK && err != Z_STREAM_END && msg ? std::string(" (") + msg + ")" : std::string()));
      }
      if (out) out += got;
      n -= static_cast<std::size_t>(got);
    }
  }

  /// A member's data: `size` bytes then padding to 512. The buffer grows as the data arrives, so a
  /// damaged size field cannot make it allocate more than twice what the archive holds.
  std::string take_member(gzFile gz, std::size_t size, const std::string& member) const {
    std::string data;
    while (data.size() < size) {
      const std::size_t n = std::min(size - data.size(), std::max<std::size_t>(data.size(), 1 << 20));
      data.resize(data.size() + n);
      take(gz, n, data.data() + data.size() - n, member);
    }
    take(gz, (512 - size % 512) % 512, nullptr, member);
    return data;
  }

  /// The checksum of a ustar/GNU header: the byte sum with the checksum field read as spaces.
  bool header_checksum_ok(const std::array<char, 512>& h) const {
    unsigned sum = 0;
    for (std::size_t i = 0; i < h.size(); ++i) sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
    char* end = nullptr;
    const std::string field(h.data() + 148, 8);
    return std::strtoul(field.c_str(), &end, 8) == sum;
  }

  void scan(gzFile gz, const std::function<bool(const TextFile&)>& wanted,
            std::vector<std::pair<TextFile, std::string>>& chosen) const {
    std::string long_name;
    for (;;) {
      std::array<char, 512> h{};
      take(gz, h.size(), h.data(), "");
      if (std::all_of(h.begin(), h.end(), [](char c) { return c == 0; })) return;  // end of archive
      const bool gnu_long = !long_name.empty();
      std::string name = gnu_long ? long_name : std::string(h.data(), strnlen(h.data(), 100));
      long_name.clear();
      if (!gnu_long && std::memcmp(h.data() + 257, "ustar", 5) == 0 && h[345] != 0)
        name = std::string(h.data() + 345, strnlen(h.data() + 345, 155)) + "/" + name;
      if (!header_checksum_ok(h))
        throw DataError(file_.string() + ": corrupt archive: the tar header of '" + name.substr(0, 100) +
                        "' fails its checksum");
      const std::size_t size = std::strtoull(std::string(h.data() + 124, 12).c_str(), nullptr, 8);
      const std::size_t padded = (size + 511) / 512 * 512;
      const char type = h[156];
      if (type == 'L') {  // GNU long name: the next member's name is this member's data
        const std::string data = take_member(gz, size, name);
        long_name = data.substr(0, strnlen(data.data(), size));
        continue;
      }
      TextFile t = (type == '0' || type == '\0') ? classify(name, file_.string() + ":" + name) : TextFile{};
      if (t.folder.empty() || !wanted(t)) {
        take(gz, padded, nullptr, name);
        continue;
      }
      chosen.emplace_back(t, take_member(gz, size, name));
    }
  }

  fs::path file_;
};

}  // namespace

std::unique_ptr<Release> Release::open(const std::string& path) {
  const fs::path p(path);
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) {
    const std::string n = p.filename().string();
    if (n.size() > 7 && (n.substr(n.size() - 7) == ".tar.gz" || n.substr(n.size() - 4) == ".tgz"))
      return std::make_unique<ArchiveRelease>(p);
    throw DataError(path + ": not a .tar.gz; " + layout_help());
  }
  if (!fs::is_directory(p, ec)) throw DataError(path + ": no such folder or file; " + layout_help());
  if (fs::is_directory(p / "mathematics_dataset-v1.0", ec)) return std::make_unique<FolderRelease>(p / "mathematics_dataset-v1.0");
  for (const auto& folder : release_folders())
    if (fs::is_directory(p / folder, ec)) return std::make_unique<FolderRelease>(p);
  throw DataError(path + ": no train-easy/, train-medium/, train-hard/, interpolate/ or extrapolate/ folder; " +
                  layout_help());
}

Pairs parse_pairs(const TextFile& file, const std::string& text) {
  Pairs out;
  std::size_t line = 0, start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line;
    std::size_t stop = end;
    if (stop > start && text[stop - 1] == '\r') --stop;
    for (std::size_t i = start; i < stop; ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      if (c < 0x20 || c > 0x7e) {
        std::ostringstream m;
        m << file.where << ":" << line << ": byte 0x" << std::hex << static_cast<int>(c) << std::dec << " at column "
          << (i - start + 1) << " is not printable ASCII";
        throw DataError(m.str());
      }
    }
    if (stop == start)
      throw DataError(file.where + ":" + std::to_string(line) + ": empty " + (line % 2 ? "question" : "answer"));
    (line % 2 ? out.questions : out.answers).emplace_back(text, start, stop - start);
    start = end + 1;
  }
  if (line % 2)
    throw DataError(file.where + ": odd number of lines (" + std::to_string(line) + "): the question on line " +
                    std::to_string(line) + " has no answer");
  return out;
}

}  // namespace modlab::dm_math
