#include "corpus.hpp"

#include <modlab/errors.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace modlab::dm_math {

Corpus::~Corpus() = default;

const Range* Corpus::split(const std::string& name) const {
  for (const auto& r : splits)
    if (r.name == name) return &r;
  return nullptr;
}

std::pair<std::int64_t, std::int64_t> Corpus::longest() const {
  std::int64_t q = 0, a = 0;
  const Entry* e = entries();
  for (std::int64_t i = 0; i < size(); ++i) {
    q = std::max<std::int64_t>(q, e[i].question);
    a = std::max<std::int64_t>(a, static_cast<std::int64_t>(e[i].length) - e[i].question);
  }
  return {q, a};
}

namespace {

constexpr char kMagic[8] = {'M', 'L', 'D', 'M', 'A', 'T', 'H', '3'};

// File layout (little-endian): magic; u64 header bytes; header text (vocabulary, modules and
// splits, one per line, padded with newlines so that what follows is 8-byte aligned); u64
// examples; index [examples] × Entry; u64 stream bytes; stream.
std::string header_text(const Corpus& c) {
  std::string h = c.vocabulary + "\n" + std::to_string(c.modules.size()) + "\n";
  for (const auto& m : c.modules) h += m + "\n";
  h += std::to_string(c.splits.size()) + "\n";
  for (const auto& r : c.splits) h += r.name + " " + std::to_string(r.first) + " " + std::to_string(r.count) + "\n";
  h.append((8 - h.size() % 8) % 8, '\n');  // the index after it is read in place as Entry structs
  return h;
}

template <class T>
void put(std::ofstream& out, const T& v) {
  out.write(reinterpret_cast<const char*>(&v), sizeof v);
}

class MappedCorpus : public Corpus {
 public:
  MappedCorpus(const std::string& path) : path_(path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw DataError(path + ": cannot open the cache file");
    struct stat st {};
    ::fstat(fd, &st);
    bytes_ = static_cast<std::size_t>(st.st_size);
    base_ = bytes_ ? ::mmap(nullptr, bytes_, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    ::close(fd);
    if (base_ == MAP_FAILED) throw DataError(path + ": cannot map the cache file");
    try {
      parse();
    } catch (...) {
      ::munmap(base_, bytes_);  // no destructor runs for a constructor that throws
      throw;
    }
  }
  ~MappedCorpus() override { ::munmap(base_, bytes_); }
  const std::uint8_t* tokens() const override { return tokens_; }
  const Entry* entries() const override { return entries_; }
  std::int64_t size() const override { return examples_; }

 private:
  [[noreturn]] void damaged(const std::string& what) const {
    throw DataError(path_ + ": damaged dm_math cache (" + what + "); delete it to rebuild it");
  }
  const char* at(std::size_t offset, std::size_t n) const {
    if (offset > bytes_ || n > bytes_ - offset) damaged("truncated");
    return static_cast<const char*>(base_) + offset;
  }
  std::uint64_t u64(std::size_t offset) const {
    std::uint64_t v;
    std::memcpy(&v, at(offset, 8), 8);
    return v;
  }
  void parse() {
    if (std::memcmp(at(0, 8), kMagic, 8) != 0) throw DataError(path_ + ": not a modlab dm_math cache (format 3)");
    const auto hb = u64(8);
    std::size_t pos = parse_header(std::string(at(16, hb), hb));
    const std::uint64_t examples = u64(pos);
    if (examples > (bytes_ - pos) / sizeof(Entry)) damaged("more examples than bytes");
    examples_ = static_cast<std::int64_t>(examples);
    entries_ = reinterpret_cast<const Entry*>(at(pos + 8, examples * sizeof(Entry)));
    pos += 8 + examples * sizeof(Entry);
    const auto nt = u64(pos);
    tokens_ = reinterpret_cast<const std::uint8_t*>(at(pos + 8, nt));
    if (pos + 8 + nt != bytes_) damaged("trailing bytes");
    check_index(nt);
  }
  // Vocabulary, modules and splits; returns where the index starts.
  std::size_t parse_header(const std::string& text) {
    std::istringstream h(text);
    std::getline(h, vocabulary);
    std::size_t n = 0;
    if (!(h >> n) || n > text.size()) damaged("module count");
    modules.resize(n);
    for (auto& m : modules)
      if (!(h >> m)) damaged("module names");
    if (!(h >> n) || n > text.size()) damaged("split count");
    splits.resize(n);
    for (auto& r : splits)
      if (!(h >> r.name >> r.first >> r.count)) damaged("split table");
    const std::size_t pos = 16 + text.size();
    if (pos % alignof(Entry) != 0) damaged("misaligned index");
    return pos;
  }
  // Every example inside the stream with a known module, every split inside the examples: what
  // gather() relies on. One pass over the index (as Corpus::longest).
  void check_index(std::uint64_t stream_bytes) const {
    for (std::int64_t i = 0; i < examples_; ++i) {
      const Entry& e = entries_[i];
      if (e.offset > stream_bytes || e.length > stream_bytes - e.offset || e.question > e.length ||
          e.module >= modules.size())
        damaged("index entry " + std::to_string(i));
    }
    for (const auto& r : splits)
      if (r.first < 0 || r.count < 0 || r.first > examples_ || r.count > examples_ - r.first)
        damaged("split " + r.name + " outside the examples");
  }
  std::string path_;
  void* base_ = MAP_FAILED;
  std::size_t bytes_ = 0;
  std::int64_t examples_ = 0;
  const Entry* entries_ = nullptr;
  const std::uint8_t* tokens_ = nullptr;
};

}  // namespace

void write_cache(const std::string& path, const Corpus& c) {
  fs::create_directories(fs::path(path).parent_path());
  const std::string tmp = path + ".partial." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw OutputError("cannot write the dm_math cache " + tmp);
    const std::string h = header_text(c);
    out.write(kMagic, 8);
    put(out, static_cast<std::uint64_t>(h.size()));
    out.write(h.data(), static_cast<std::streamsize>(h.size()));
    put(out, static_cast<std::uint64_t>(c.size()));
    out.write(reinterpret_cast<const char*>(c.entries()), static_cast<std::streamsize>(c.size() * sizeof(Entry)));
    const std::uint64_t nt =
        c.size() ? static_cast<std::uint64_t>(c.entries()[c.size() - 1].offset) + c.entries()[c.size() - 1].length : 0;
    put(out, nt);
    out.write(reinterpret_cast<const char*>(c.tokens()), static_cast<std::streamsize>(nt));
    if (!out) throw OutputError("cannot write the dm_math cache " + tmp + " (disk full?)");
  }
  fs::rename(tmp, path);
}

std::shared_ptr<const Corpus> map_cache(const std::string& path) { return std::make_shared<MappedCorpus>(path); }

SequenceBatch gather(const Corpus& c, const std::vector<std::int64_t>& indices) {
  const auto b = static_cast<std::int64_t>(indices.size());
  const Entry* e = c.entries();
  std::int64_t lq = 1, la = 1;
  for (auto i : indices) {
    lq = std::max<std::int64_t>(lq, e[i].question);
    la = std::max<std::int64_t>(la, static_cast<std::int64_t>(e[i].length) - e[i].question + 1);
  }
  SequenceBatch out;
  out.questions = torch::full({b, lq}, kPad, torch::kLong);
  out.answers = torch::full({b, la}, kPad, torch::kLong);
  out.question_lengths = torch::empty({b}, torch::kLong);
  out.answer_lengths = torch::empty({b}, torch::kLong);
  out.modules = torch::empty({b}, torch::kLong);
  auto* q = out.questions.data_ptr<std::int64_t>();
  auto* a = out.answers.data_ptr<std::int64_t>();
  auto* ql = out.question_lengths.data_ptr<std::int64_t>();
  auto* al = out.answer_lengths.data_ptr<std::int64_t>();
  auto* mo = out.modules.data_ptr<std::int64_t>();
  const std::uint8_t* t = c.tokens();
  for (std::int64_t r = 0; r < b; ++r) {
    const Entry& x = e[indices[static_cast<std::size_t>(r)]];
    const std::int64_t qn = x.question, an = static_cast<std::int64_t>(x.length) - x.question;
    for (std::uint32_t k = 0; k < x.length; ++k)
      if (static_cast<std::size_t>(t[x.offset + k]) >= static_cast<std::size_t>(kFirstChar) + c.vocabulary.size())
        throw DataError("dm_math: token " + std::to_string(t[x.offset + k]) + " of example " +
                        std::to_string(indices[static_cast<std::size_t>(r)]) + " is outside the vocabulary (damaged cache?)");
    std::copy(t + x.offset, t + x.offset + qn, q + r * lq);
    std::copy(t + x.offset + qn, t + x.offset + x.length, a + r * la);
    a[r * la + an] = kEnd;
    ql[r] = qn;
    al[r] = an + 1;
    mo[r] = x.module;
  }
  return out;
}

}  // namespace modlab::dm_math
