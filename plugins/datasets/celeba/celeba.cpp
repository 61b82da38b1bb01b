// celeba: CelebA aligned face images with their 40 binary attributes, prepared as in the
// graph-of-experts experiments (goe §2.4): a target attribute, a group id built from other
// attributes, a per-group fill, and a seeded 70/20/10 split.
//
// Images are decoded once on a thread pool, resized like torchvision's Resize on PIL images, and
// cached as uint8 in a file keyed by the decode options and the exact image files, so later runs
// only read one file.

#include "annotations.hpp"
#include "celeba_image.hpp"

#include <modlab/errors.hpp>
#include <modlab/plugin.hpp>

#include <ATen/CPUGeneratorImpl.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace fs = std::filesystem;

namespace modlab::celeba {
namespace {

constexpr char kCacheMagic[8] = {'M', 'L', 'C', 'E', 'L', 'E', 'B', '1'};

std::string with_commas(std::int64_t v) {
  std::string s = std::to_string(v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<std::size_t>(i), ",");
  return s;
}

// " (file:line:column)" where a key was written, or "" for values that did not come from a file.
std::string written_at(const Config& c, const std::string& key) {
  const Value* v = c.find(key);
  return v == nullptr || v->where().file.empty() ? std::string() : " (" + v->where().str() + ")";
}

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

// ------------------------------------------------------------------ options

struct Options {
  std::string root;
  std::string image_dir, attr_file, partition_file;  // absolute
  int partition = 0;                                 // 0 train, 1 valid, 2 test, -1 all
  std::string partition_name;
  std::string target;
  std::vector<std::string> group_attributes;
  std::int64_t samples = 48000;
  std::vector<double> split_fractions;
  std::uint64_t split_seed = 40;
  std::int64_t height = 32, width = 32;
  std::vector<double> mean, stdev;
  bool flatten = false;
  bool cache = true;
  std::string cache_dir;  // "" = beside the data, else the fallback
  int threads = 1;
};

bool has_attr_file(const fs::path& dir, const std::string& attr_file) {
  std::error_code ec;
  return fs::is_regular_file(dir / attr_file, ec);
}

std::string find_root(const Config& c, const std::string& attr_file, Host& host) {
  if (c.has("root") && !c.get<std::string>("root").empty()) {
    fs::path root = host.resolve_path(c.get<std::string>("root"));
    std::error_code ec;
    if (fs::is_directory(root / "celeba", ec) && has_attr_file(root / "celeba", attr_file) && !has_attr_file(root, attr_file))
      return (root / "celeba").string();  // a torchvision root
    if (!has_attr_file(root, attr_file))
      throw DataError(std::string(kName) + ": " + c.dotted("root") + " = '" + root.string() + "'" +
                      written_at(c, "root") + " holds no " + attr_file + " (nor celeba/" + attr_file + ")");
    return root.string();
  }
  std::vector<fs::path> bases;
  if (auto d = env_or_empty("MODLAB_DATA_DIR"); !d.empty()) bases.emplace_back(d);
  std::error_code ec;
  fs::path cwd = fs::current_path(ec);
  if (!ec) {
    bases.push_back(cwd / "data");
    bases.push_back(cwd / ".." / "shared" / "data");
  }
  bases.emplace_back(host.resolve_path("data"));
  bases.emplace_back(host.resolve_path("../data"));
  bases.emplace_back(host.resolve_path("../../shared/data"));
  if (auto x = env_or_empty("XDG_CACHE_HOME"); !x.empty()) bases.push_back(fs::path(x) / "modlab");
  else if (auto h = env_or_empty("HOME"); !h.empty()) bases.push_back(fs::path(h) / ".cache" / "modlab");
  std::vector<fs::path> looked;
  for (const auto& b : bases) {
    fs::path p = fs::absolute(b / "celeba", ec).lexically_normal();
    if (std::find(looked.begin(), looked.end(), p) != looked.end()) continue;
    looked.push_back(p);
    if (has_attr_file(p, attr_file)) return p.string();
    if (has_attr_file(p / "celeba", attr_file)) return (p / "celeba").string();
  }
  std::string list;
  for (const auto& p : looked) list += (list.empty() ? "" : ", ") + p.string();
  throw DataError(std::string(kName) + ": CelebA not found; looked for " + attr_file + " in: " + list +
                  " (and a celeba/ folder in each). Get img_align_celeba (unzipped), list_attr_celeba.txt and "
                  "list_eval_partition.txt from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (or a torchvision "
                  "download: <root>/celeba) and set [dataset] root or MODLAB_DATA_DIR.");
}

std::string under_root(const std::string& root, const std::string& p) {
  fs::path path(p);
  return path.is_absolute() ? path.string() : (fs::path(root) / path).string();
}

/// The `[dataset]` table as written; read_options() resolves paths and defaults into Options.
struct Keys {
  std::string root;
  std::string image_dir = "img_align_celeba";
  std::string attr_file = "list_attr_celeba.txt";
  std::string partition_file = "list_eval_partition.txt";
  std::string partition = "train";
  std::string target = "Male";
  std::vector<std::string> group_attributes = {"Black_Hair", "Arched_Eyebrows", "Oval_Face"};
  std::int64_t samples = 48000;
  std::vector<double> split_fractions = {0.7, 0.2, 0.1};
  std::int64_t split_seed = 40;
  std::vector<std::int64_t> image_size = {32, 32};
  std::vector<double> mean, stdev;
  bool flatten = false;
  bool cache = true;
  std::string cache_dir;
  std::int64_t decode_threads = 0;
};

const modlab::Options<Keys>& celeba_options() {
  using K = Keys;
  static const auto o =
      modlab::Options<K>()
          .key("root", &K::root,
               "CelebA folder (img_align_celeba/, list_attr_celeba.txt, ...) or a torchvision root holding celeba/; \"\" = "
               "search the default places (README)")
          .key("image_dir", &K::image_dir, "image folder, relative to root")
          .key("attr_file", &K::attr_file, "attribute file, relative to root")
          .key("partition_file", &K::partition_file, "partition file, relative to root")
          .key("partition", &K::partition, "which official partition the images are drawn from")
          .choices({"train", "valid", "test", "all"})
          .key("target", &K::target, "attribute predicted (class 1 = attribute present)")
          .key("group_attributes", &K::group_attributes,
               "at most 8; group id = sum of attribute k times 2^k; [] = no groups")
          .key("samples", &K::samples,
               "n: images taken in file order, at most n / 2^groups per group (0 = every image of the partition)")
          .at_least(0)
          .key("split_fractions", &K::split_fractions, "train/val/test fractions (adding up to 1), as torch random_split")
          .in_range(0, 1)
          .key("split_seed", &K::split_seed, "seed of the split permutation (torch.Generator)").at_least(0)
          .key("image_size", &K::image_size, "[height, width] after resizing (aspect ratio not kept)").in_range(1, 4096)
          .key("mean", &K::mean, "per-channel mean subtracted after scaling to [0,1] (1 or 3 values); [] = none").finite()
          .key("std", &K::stdev, "per-channel divisor after subtracting mean (1 or 3 values); [] = none")
          .greater_than(0).finite()
          .key("flatten", &K::flatten, "inputs [3*H*W] instead of [3, H, W]")
          .key("cache", &K::cache, "keep the decoded images in a cache file and reuse it")
          .key("cache_dir", &K::cache_dir,
               "cache folder; \"\" = <root>/.modlab_cache when writable, else $MODLAB_CACHE_DIR/celeba or "
               "~/.cache/modlab/celeba")
          .key("decode_threads", &K::decode_threads, "JPEG decoding threads; 0 = the run's thread count").at_least(0);
  return o;
}

Options read_options(const Config& c, Host& host) {
  const Keys k = celeba_options().parse(c);
  Options o;
  o.root = find_root(c, k.attr_file, host);
  o.attr_file = under_root(o.root, k.attr_file);
  o.partition_file = under_root(o.root, k.partition_file);
  o.image_dir = under_root(o.root, k.image_dir);
  o.partition_name = k.partition;
  o.partition = k.partition == "train" ? 0 : k.partition == "valid" ? 1 : k.partition == "test" ? 2 : -1;
  o.target = k.target;
  o.group_attributes = k.group_attributes;
  if (o.group_attributes.size() > 8) c.fail("group_attributes", "at most 8 attributes (256 groups)");
  o.samples = k.samples;

  o.split_fractions = k.split_fractions;
  if (o.split_fractions.size() != 3) c.fail("split_fractions", "expected 3 fractions (train, val, test)");
  double sum = 0.0;
  for (double f : o.split_fractions) sum += f;
  if (std::abs(sum - 1.0) > 1e-9) c.fail("split_fractions", "fractions must add up to 1");
  o.split_seed = static_cast<std::uint64_t>(k.split_seed);

  if (k.image_size.size() != 2) c.fail("image_size", "expected [height, width] with both in 1..4096");
  o.height = k.image_size[0];
  o.width = k.image_size[1];

  o.mean = k.mean;
  o.stdev = k.stdev;
  if (o.mean.empty() != o.stdev.empty()) c.fail(o.mean.empty() ? "std" : "mean", "mean and std go together");
  for (auto* v : {&o.mean, &o.stdev})
    if (!v->empty() && v->size() != 3 && v->size() != 1)
      c.fail(v == &o.mean ? "mean" : "std", "expected 1 or 3 values (one per channel)");
  if (o.mean.size() == 1) o.mean.assign(3, o.mean[0]);
  if (o.stdev.size() == 1) o.stdev.assign(3, o.stdev[0]);

  o.flatten = k.flatten;
  o.cache = k.cache;
  if (!k.cache_dir.empty()) o.cache_dir = host.resolve_path(k.cache_dir);
  std::int64_t threads = k.decode_threads;
  if (threads == 0) threads = host.num_threads();
  if (threads <= 0) threads = std::max<unsigned>(1, std::thread::hardware_concurrency());
  o.threads = static_cast<int>(threads);
  return o;
}

std::size_t attribute_index(const Config& c, const std::string& key, const std::string& name, const AttrTable& t) {
  auto it = std::find(t.names.begin(), t.names.end(), name);
  if (it != t.names.end()) return static_cast<std::size_t>(it - t.names.begin());
  c.fail_unknown(key, "attribute", name, t.names,
                 "; " + t.path + ":2 names the " + std::to_string(t.names.size()) + " attributes");
}

// ------------------------------------------------------------------ selection (goe §2.4)

struct Selection {
  std::vector<std::size_t> rows;     // attribute-table rows, in file order
  std::vector<std::int64_t> groups;  // group id of each
  std::vector<std::int64_t> targets;
  std::vector<std::int64_t> group_counts;
};

Selection select_rows(const Config& c, const Options& o, const AttrTable& attrs, const PartitionTable& parts, Host& host) {
  const std::size_t target = attribute_index(c, "target", o.target, attrs);
  std::vector<std::size_t> group_idx;
  for (const auto& g : o.group_attributes) group_idx.push_back(attribute_index(c, "group_attributes", g, attrs));
  const std::size_t num_groups = std::size_t{1} << group_idx.size();
  const std::int64_t cap = o.samples > 0 ? o.samples / static_cast<std::int64_t>(num_groups) : 0;
  if (o.samples > 0 && cap == 0)
    c.fail("samples", "is smaller than the number of groups (" + std::to_string(num_groups) + ")");

  Selection s;
  s.group_counts.assign(num_groups, 0);
  std::size_t full = 0, no_partition = 0;
  bool stopped_early = false;
  const std::size_t width = attrs.names.size();
  for (std::size_t r = 0; r < attrs.rows(); ++r) {
    auto it = parts.of.find(attrs.files[r]);
    if (it == parts.of.end()) {
      ++no_partition;
      continue;
    }
    if (o.partition >= 0 && it->second != o.partition) continue;
    const std::uint8_t* v = &attrs.values[r * width];
    std::int64_t g = 0;
    for (std::size_t k = 0; k < group_idx.size(); ++k) g |= std::int64_t{v[group_idx[k]]} << k;
    auto& count = s.group_counts[static_cast<std::size_t>(g)];
    if (cap > 0 && count >= cap) continue;
    s.rows.push_back(r);
    s.groups.push_back(g);
    s.targets.push_back(v[target]);
    if (++count == cap && ++full == num_groups) {
      stopped_early = true;  // every group is full: the rest of the file is not needed
      break;
    }
  }
  if (no_partition > 0)
    host.log(std::string(kName) + ": warning: " + with_commas(static_cast<std::int64_t>(no_partition)) + " rows of " +
             attrs.path + " have no line in " + parts.path + " and were skipped");
  if (!stopped_early) {
    // Images of the partition the attribute file does not describe (e.g. a truncated attribute file).
    std::unordered_set<std::string> described(attrs.files.begin(), attrs.files.end());
    std::int64_t undescribed = 0, in_partition = 0;
    for (const auto& [file, p] : parts.of) {
      if (o.partition >= 0 && p != o.partition) continue;
      ++in_partition;
      if (!described.count(file)) ++undescribed;
    }
    if (undescribed > 0)
      host.log(std::string(kName) + ": warning: " + with_commas(undescribed) + " of the " + with_commas(in_partition) +
               " images of partition '" + o.partition_name + "' in " + parts.path + " have no row in " + attrs.path +
               " (it has " + with_commas(static_cast<std::int64_t>(attrs.rows())) + " rows; its header says " +
               with_commas(attrs.header_count) + ") and were skipped");
  } else if (attrs.header_count != static_cast<std::int64_t>(attrs.rows())) {
    host.log(std::string(kName) + ": note: " + attrs.path + " holds " + with_commas(static_cast<std::int64_t>(attrs.rows())) +
             " rows but its header says " + with_commas(attrs.header_count));
  }
  if (s.rows.empty())
    throw DataError(std::string(kName) + ": no images selected: " + attrs.path + " has no row in partition '" +
                    o.partition_name + "' of " + parts.path);
  return s;
}

// ------------------------------------------------------------------ cache

struct ImageFile {
  std::string path;
  std::int64_t size = 0;
  std::int64_t mtime_ns = 0;
};

// FNV-1a, 64 bit: stable across builds and platforms, unlike std::hash.
std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char ch : s) {
    h ^= ch;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string hex64(std::uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// A folder is writable only when its permission bits allow it: a process running as root would
// otherwise write into folders that are deliberately read-only (a shared data folder).
bool writable_folder(const fs::path& dir) {
  fs::path p = dir;
  std::error_code ec;
  while (!p.empty() && !fs::exists(p, ec)) {
    if (p == p.parent_path()) return false;
    p = p.parent_path();
  }
  struct stat st {};
  if (p.empty() || ::stat(p.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return false;
  if ((st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) == 0) return false;
  return ::access(p.c_str(), W_OK) == 0;
}

fs::path fallback_cache_dir() {
  if (auto d = env_or_empty("MODLAB_CACHE_DIR"); !d.empty()) return fs::path(d) / "celeba";
  if (auto x = env_or_empty("XDG_CACHE_HOME"); !x.empty()) return fs::path(x) / "modlab" / "celeba";
  if (auto h = env_or_empty("HOME"); !h.empty()) return fs::path(h) / ".cache" / "modlab" / "celeba";
  return fs::temp_directory_path() / "modlab-cache" / "celeba";
}

// Cache folders in lookup order; the first writable one receives new cache files.
std::vector<fs::path> cache_folders(const Options& o) {
  if (!o.cache_dir.empty()) return {fs::path(o.cache_dir)};
  return {fs::path(o.root) / ".modlab_cache", fallback_cache_dir()};
}

struct CacheHeader {
  char magic[8];
  std::uint64_t key;
  std::uint64_t count;
  std::uint32_t channels, height, width, reserved;
};
static_assert(sizeof(CacheHeader) == 40, "cache header layout");

// Reads `path` into `out` (uint8 [N,3,H,W]) when it is a complete cache file for `key`.
bool read_cache(const fs::path& path, std::uint64_t key, torch::Tensor& out, std::string& why) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  CacheHeader h{};
  bool ok = std::fread(&h, sizeof h, 1, f) == 1 && std::memcmp(h.magic, kCacheMagic, 8) == 0 && h.key == key &&
            static_cast<std::int64_t>(h.count) == out.size(0) && h.channels == 3 &&
            static_cast<std::int64_t>(h.height) == out.size(2) && static_cast<std::int64_t>(h.width) == out.size(3);
  if (ok) {
    const auto bytes = static_cast<std::size_t>(out.numel());
    ok = std::fread(out.data_ptr<std::uint8_t>(), 1, bytes, f) == bytes && std::fgetc(f) == EOF;
    if (!ok) why = "it is truncated or too long";
  } else {
    why = "its header does not match";
  }
  std::fclose(f);
  return ok;
}

// Writes to a temporary name beside the target, then renames, so readers never see half a file.
bool write_cache(const fs::path& path, std::uint64_t key, const torch::Tensor& data, std::string& error) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) {
    error = ec.message();
    return false;
  }
  std::random_device rd;
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid()) + "." + hex64((std::uint64_t{rd()} << 32) | rd());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    error = std::strerror(errno);
    return false;
  }
  CacheHeader h{};
  std::memcpy(h.magic, kCacheMagic, 8);
  h.key = key;
  h.count = static_cast<std::uint64_t>(data.size(0));
  h.channels = 3;
  h.height = static_cast<std::uint32_t>(data.size(2));
  h.width = static_cast<std::uint32_t>(data.size(3));
  const auto bytes = static_cast<std::size_t>(data.numel());
  bool ok = std::fwrite(&h, sizeof h, 1, f) == 1 && std::fwrite(data.data_ptr<std::uint8_t>(), 1, bytes, f) == bytes;
  ok = (std::fflush(f) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (ok) fs::rename(tmp, path, ec);
  if (!ok || ec) {
    error = ok ? ec.message() : std::strerror(errno);
    fs::remove(tmp, ec);
    return false;
  }
  return true;
}

// ------------------------------------------------------------------ decoding

// Decodes and resizes `files` into `out` (uint8 [N,3,H,W]) on `threads` threads (the calling
// thread is one of them). The first failure stops every worker and is rethrown. For long decodes
// the worker that completes each tenth reports it; the mutex keeps those log calls one at a time.
void decode_images(const std::vector<ImageFile>& files, torch::Tensor& out, int threads, Host& host) {
  const std::size_t n = files.size();
  const int h = static_cast<int>(out.size(2)), w = static_cast<int>(out.size(3));
  const std::size_t per_image = static_cast<std::size_t>(3 * h * w);
  std::uint8_t* dst = out.data_ptr<std::uint8_t>();
  std::atomic<std::size_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::string error;
  const bool report = n >= 2000;  // progress lines only for decodes long enough to wait for
  const auto t0 = std::chrono::steady_clock::now();

  auto worker = [&] {
    std::vector<std::uint8_t> bytes, scratch;
    RgbImage img;
    std::unique_ptr<BilinearResizer> resizer;
    std::string err;
    while (!failed.load(std::memory_order_relaxed)) {
      const std::size_t i = next.fetch_add(1);
      if (i >= n) break;
      const std::string& path = files[i].path;
      if (!read_file(path, bytes, err)) {
        err = path + ": cannot read (" + err + ")";
      } else if (!decode_jpeg(bytes.data(), bytes.size(), img, err)) {
        err = path + ": not a decodable JPEG (" + err + ")";
      } else {
        err.clear();
        if (!resizer || resizer->in_width() != img.width || resizer->in_height() != img.height)
          resizer = std::make_unique<BilinearResizer>(img.width, img.height, w, h);
        resizer->resize(img, dst + i * per_image, scratch);
      }
      if (!err.empty()) {
        std::lock_guard<std::mutex> lock(mu);
        if (!failed.exchange(true)) error = err;
        break;
      }
      const std::size_t d = done.fetch_add(1) + 1;
      if (report && d < n && d * 10 / n != (d - 1) * 10 / n) {
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::ostringstream line;
        line << kName << ": decoding " << d * 10 / n * 10 << "% (" << with_commas(static_cast<std::int64_t>(d)) << "/"
             << with_commas(static_cast<std::int64_t>(n)) << " images, " << std::fixed << std::setprecision(0)
             << (secs > 0 ? static_cast<double>(d) / secs : 0.0) << " images/s)";
        std::lock_guard<std::mutex> lock(mu);
        if (!failed.load()) host.log(line.str());
      }
    }
  };

  const auto pool_size = std::min<std::size_t>(static_cast<std::size_t>(std::max(threads, 1)), n);
  std::vector<std::thread> pool;
  pool.reserve(pool_size);
  for (std::size_t t = 1; t < pool_size; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (failed.load()) throw DataError(std::string(kName) + ": " + error);
}

// ------------------------------------------------------------------ assembling the dataset

std::vector<std::int64_t> split_lengths(std::int64_t n, const std::vector<double>& fractions) {
  std::vector<std::int64_t> len;
  std::int64_t sum = 0;
  for (double f : fractions) {
    len.push_back(static_cast<std::int64_t>(std::floor(static_cast<double>(n) * f)));
    sum += len.back();
  }
  for (std::int64_t i = 0; i < n - sum; ++i) len[static_cast<std::size_t>(i) % len.size()] += 1;
  return len;
}

std::string group_name(std::size_t g, const std::vector<std::string>& attrs) {
  std::string s;
  for (std::size_t k = 0; k < attrs.size(); ++k)
    if (g & (std::size_t{1} << k)) s += (s.empty() ? "" : "+") + attrs[k];
  return s.empty() ? "none" : s;
}

// The selected images' files; every one must exist (DataError naming the first missing ones and
// their annotation lines). Their sizes and times also key the cache.
std::vector<ImageFile> selected_image_files(const Options& o, const AttrTable& attrs, const Selection& sel) {
  std::vector<ImageFile> files(sel.rows.size());
  std::vector<std::size_t> missing;
  for (std::size_t i = 0; i < sel.rows.size(); ++i) {
    files[i].path = (fs::path(o.image_dir) / attrs.files[sel.rows[i]]).string();
    struct stat st {};
    if (::stat(files[i].path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      missing.push_back(i);
      continue;
    }
    files[i].size = static_cast<std::int64_t>(st.st_size);
    files[i].mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  }
  if (!missing.empty()) {
    std::string first;
    for (std::size_t k = 0; k < std::min<std::size_t>(3, missing.size()); ++k) {
      std::size_t r = sel.rows[missing[k]];
      first += (k ? ", " : "") + attrs.files[r] + " (" + attrs.path + ":" + std::to_string(attrs.lines[r]) + ")";
    }
    throw DataError(std::string(kName) + ": " + with_commas(static_cast<std::int64_t>(missing.size())) + " of the " +
                    with_commas(static_cast<std::int64_t>(sel.rows.size())) + " images this configuration selects are missing from " + o.image_dir +
                    "; first: " + first +
                    ". The annotation files describe images that are not there: supply the full img_align_celeba "
                    "folder, or lower [dataset] samples / use annotation files that match the images");
  }
  return files;
}

// The selected images as uint8 [m, 3, height, width]: from a cache file keyed by the options and
// the files' sizes and times, or decoded (and then cached). `source` says which.
torch::Tensor load_images(const Options& o, const std::vector<ImageFile>& files, Host& host, std::string& cache_file,
                          std::string& source) {
  const auto m = static_cast<std::int64_t>(files.size());
  std::ostringstream key_text;
  key_text << "modlab celeba cache v1\nsize " << o.height << "x" << o.width << "\nresize pillow-bilinear-8bit\nrgb\n"
           << o.image_dir << "\n";
  for (const auto& f : files) key_text << f.path << ' ' << f.size << ' ' << f.mtime_ns << '\n';
  const std::uint64_t key = fnv1a(key_text.str());
  const std::string cache_name =
      "celeba_" + std::to_string(o.height) + "x" + std::to_string(o.width) + "_" + std::to_string(m) + "_" + hex64(key) + ".u8";

  torch::Tensor images = torch::empty({m, 3, o.height, o.width}, torch::kUInt8);
  if (o.cache) {
    for (const auto& dir : cache_folders(o)) {
      std::string why;
      fs::path p = dir / cache_name;
      std::error_code ec;
      if (!fs::exists(p, ec)) continue;
      if (read_cache(p, key, images, why)) {
        cache_file = p.string();
        source = "cache";
        break;
      }
      host.log(std::string(kName) + ": ignoring cache file " + p.string() + ": " + why);
    }
  }
  if (source.empty()) {
    const auto td = std::chrono::steady_clock::now();
    decode_images(files, images, o.threads, host);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - td).count();
    std::ostringstream line;
    line << kName << ": decoded " << with_commas(m) << " images in " << std::fixed << std::setprecision(2) << secs
         << " s (" << std::setprecision(0) << (secs > 0 ? static_cast<double>(m) / secs : 0.0) << " images/s, "
         << std::min<std::int64_t>(o.threads, m) << " threads)";
    host.log(line.str());
    source = "decoded";
    if (o.cache) {
      std::string error = "no writable cache folder";
      bool written = false;
      for (const auto& dir : cache_folders(o)) {
        if (!writable_folder(dir)) continue;
        fs::path p = dir / cache_name;
        if (write_cache(p, key, images, error)) {
          cache_file = p.string();
          written = true;
          host.log(std::string(kName) + ": wrote cache " + cache_file);
        }
        break;
      }
      if (!written) host.log(std::string(kName) + ": warning: could not write a cache file (" + error + ")");
    }
  } else {
    host.log(std::string(kName) + ": loaded " + with_commas(m) + " images from cache " + cache_file);
  }
  return images;
}

std::shared_ptr<Dataset> make_celeba(const Config& c, Host& host) {
  const auto t0 = std::chrono::steady_clock::now();
  Options o = read_options(c, host);
  const PartitionTable parts = read_partition(o.partition_file);
  const AttrTable attrs = read_attributes(o.attr_file);
  const Selection sel = select_rows(c, o, attrs, parts, host);
  const auto m = static_cast<std::int64_t>(sel.rows.size());

  const std::vector<ImageFile> files = selected_image_files(o, attrs, sel);

  std::string cache_file, source;
  torch::Tensor images = load_images(o, files, host, cache_file, source);

  // Split order (torch random_split with a seeded generator); each split becomes one slice.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.split_seed);
  torch::Tensor order = torch::randperm(m, gen, torch::kLong);
  const auto len = split_lengths(m, o.split_fractions);

  torch::Tensor inputs = torch::empty({m, 3, o.height, o.width}, torch::kFloat);
  constexpr std::int64_t kChunk = 1024;  // bounds the uint8 gather buffer next to the float tensor
  torch::Tensor mean, stdv;
  if (!o.mean.empty()) {
    mean = torch::tensor(o.mean, torch::kFloat).view({1, 3, 1, 1});
    stdv = torch::tensor(o.stdev, torch::kFloat).view({1, 3, 1, 1});
  }
  for (std::int64_t s = 0; s < m; s += kChunk) {
    const std::int64_t n = std::min(kChunk, m - s);
    torch::Tensor x = inputs.narrow(0, s, n);
    x.copy_(images.index_select(0, order.narrow(0, s, n)));
    x.div_(255);  // as ToTensor
    if (mean.defined()) x.sub_(mean).div_(stdv);
  }
  images = torch::Tensor();  // the uint8 copy is no longer needed
  torch::Tensor targets = torch::tensor(sel.targets, torch::kLong).index_select(0, order);
  torch::Tensor groups = torch::tensor(sel.groups, torch::kLong).index_select(0, order);
  if (o.flatten) inputs = inputs.view({m, 3 * o.height * o.width});

  const bool has_groups = !o.group_attributes.empty();
  const std::vector<std::string> names = {"train", "val", "test"};
  std::map<std::string, std::shared_ptr<const Split>> splits;
  std::int64_t start = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    Batch b;
    b.inputs = inputs.narrow(0, start, len[i]);
    b.targets = targets.narrow(0, start, len[i]);
    if (has_groups) b.groups = groups.narrow(0, start, len[i]);
    splits[names[i]] = std::make_shared<TensorSplit>(std::move(b));
    start += len[i];
  }

  DatasetSpec spec;
  spec.name = kName;
  spec.input_shape = o.flatten ? std::vector<std::int64_t>{3 * o.height * o.width}
                               : std::vector<std::int64_t>{3, o.height, o.width};
  spec.task = TaskKind::Classification;
  spec.num_classes = 2;
  spec.class_names = {"not " + o.target, o.target};
  if (has_groups) {
    spec.group_kind = "attribute_group";
    for (std::size_t g = 0; g < sel.group_counts.size(); ++g) spec.group_names.push_back(group_name(g, o.group_attributes));
  }
  spec.splits = names;
  std::string counts, gattrs;
  for (std::size_t g = 0; g < sel.group_counts.size(); ++g) counts += (g ? "," : "") + std::to_string(sel.group_counts[g]);
  for (const auto& a : o.group_attributes) gattrs += (gattrs.empty() ? "" : ",") + a;
  spec.info = {{"root", o.root},
               {"image_dir", o.image_dir},
               {"attr_file", o.attr_file},
               {"partition_file", o.partition_file},
               {"partition", o.partition_name},
               {"target", o.target},
               {"group_attributes", gattrs},
               {"group_counts", counts},
               {"images", std::to_string(m)},
               {"image_source", source},
               {"cache_file", cache_file},
               {"resize", "pillow bilinear (torchvision Resize on PIL images), " + std::to_string(o.height) + "x" +
                              std::to_string(o.width)},
               {"train_size", std::to_string(len[0])},
               {"val_size", std::to_string(len[1])},
               {"test_size", std::to_string(len[2])}};

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::ostringstream line;
  line << kName << ": " << len[0] << "/" << len[1] << "/" << len[2] << " examples (train/val/test), target " << o.target
       << ", groups per " << (gattrs.empty() ? "(none)" : gattrs) << " " << counts << ", ready in " << std::fixed
       << std::setprecision(2) << secs << " s";
  host.log(line.str());
  return std::make_shared<TensorDataset>(std::move(spec), std::move(splits));
}

void register_celeba(Registrar& r) {
  DatasetEntry e;
  e.name = kName;
  e.description = "CelebA faces (JPEG, resized like torchvision) with a target attribute and attribute groups";
  e.keys = celeba_options().specs();
  e.factory = &make_celeba;
  r.add_dataset(std::move(e));
}

}  // namespace
}  // namespace modlab::celeba

MODLAB_PLUGIN("celeba", modlab::kDatasetPlugin, "1.0.0", "CelebA aligned faces with attribute targets and groups",
              modlab::celeba::register_celeba)
