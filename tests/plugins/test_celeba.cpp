#define BOOST_TEST_MODULE celeba
#include <boost/test/unit_test.hpp>

#include <modlab/config.hpp>
#include <modlab/dataset.hpp>
#include <modlab/errors.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/remove_tree.hpp>

#include "../temp_dir.hpp"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <jpeglib.h>

#include "config_builders.hpp"

namespace fs = std::filesystem;
namespace utf = boost::unit_test;
namespace tt = boost::test_tools;
using modlab::Value;
using namespace test_config;

namespace {

// ------------------------------------------------------------------ helpers

struct Loaded {
  std::shared_ptr<modlab::Dataset> dataset;
  std::vector<std::string> log;
  bool logged(const std::string& part) const {
    for (const auto& l : log)
      if (l.find(part) != std::string::npos) return true;
    return false;
  }
};

Loaded load(Value::Table t, int threads = 1) {
  Loaded out;
  modlab::runner::HostOptions opts;
  opts.threads = threads;
  auto* log = &out.log;
  opts.logger = [log](const std::string& m) { log->push_back(m); };
  modlab::runner::RunHost host(modlab::runner::default_registry(), opts);
  out.dataset = host.create_dataset("celeba", make_config(std::move(t)));
  return out;
}

template <class E = modlab::Error>
std::string load_error(Value::Table t) {
  try {
    load(std::move(t));
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

using modlab_test::TempDir;

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary).write(s.data(), static_cast<std::streamsize>(s.size()));
}
std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_jpeg(const fs::path& p, int w, int h, const std::vector<std::uint8_t>& rgb) {
  jpeg_compress_struct c;
  jpeg_error_mgr e;
  c.err = jpeg_std_error(&e);
  jpeg_create_compress(&c);
  std::FILE* f = std::fopen(p.c_str(), "wb");
  BOOST_REQUIRE(f != nullptr);
  jpeg_stdio_dest(&c, f);
  c.image_width = static_cast<JDIMENSION>(w);
  c.image_height = static_cast<JDIMENSION>(h);
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 95, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    auto* row = const_cast<JSAMPLE*>(rgb.data() + static_cast<std::size_t>(c.next_scanline) * static_cast<std::size_t>(w) * 3);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::fclose(f);
  jpeg_destroy_compress(&c);
}

std::string image_name(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%06d.jpg", i + 1);
  return buf;
}

// A generated CelebA layout. Image i is a flat colour whose red channel encodes i; its attributes:
// Black_Hair = bit 0, Arched_Eyebrows = bit 1, Oval_Face = bit 2 of i (so group = i % 8), except
// that group 7 occurs only for i = 7; Male = (i / 3) % 2; every tenth image (i % 10 == 9) is in
// the valid partition. Rows use CRLF and the file's uneven spacing.
const std::vector<std::string> kNames = {"Arched_Eyebrows", "Black_Hair", "Male", "Oval_Face", "Smiling"};
struct Attr {
  int black, arched, oval, male, smiling, partition;
  int group() const { return black + 2 * arched + 4 * oval; }
};
Attr attr_of(int i) {
  Attr a{i & 1, (i >> 1) & 1, (i >> 2) & 1, (i / 3) % 2, i % 5 == 0, i % 10 == 9 ? 1 : 0};
  if (i % 8 == 7 && i >= 8) a.oval = 0;
  return a;
}
constexpr int kRedStep = 6;

void make_celeba(const fs::path& root, int n, int w = 20, int h = 24) {
  fs::create_directories(root / "img_align_celeba");
  std::ostringstream attrs, parts;
  attrs << n << "\r\n";
  for (const auto& name : kNames) attrs << name << " ";
  attrs << "\r\n";
  for (int i = 0; i < n; ++i) {
    std::vector<std::uint8_t> rgb(static_cast<std::size_t>(w * h * 3));
    for (int p = 0; p < w * h; ++p) {
      rgb[static_cast<std::size_t>(p) * 3] = static_cast<std::uint8_t>((i * kRedStep) % 240);
      rgb[static_cast<std::size_t>(p) * 3 + 1] = 128;
      rgb[static_cast<std::size_t>(p) * 3 + 2] = static_cast<std::uint8_t>(200 - (i * kRedStep) / 240 * 40);
    }
    write_jpeg(root / "img_align_celeba" / image_name(i), w, h, rgb);
    Attr a = attr_of(i);
    auto v = [](int bit) { return bit ? std::string("  1") : std::string(" -1"); };
    attrs << image_name(i) << v(a.arched) << v(a.black) << v(a.male) << v(a.oval) << v(a.smiling) << "\r\n";
    parts << image_name(i) << " " << a.partition << "\r\n";
  }
  write_text(root / "list_attr_celeba.txt", attrs.str());
  write_text(root / "list_eval_partition.txt", parts.str());
}

// The image index encoded in an example's pixels.
int image_index(const torch::Tensor& x) {
  const double r = x[0].mean().item<double>() * 255.0;
  const double b = x[2].mean().item<double>() * 255.0;
  return static_cast<int>(std::lround(r / kRedStep)) + static_cast<int>(std::lround((200.0 - b) / 40.0)) * (240 / kRedStep);
}

std::size_t count_files(const fs::path& dir, const std::string& ext) {
  std::size_t n = 0;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().extension() == ext) ++n;
  return n;
}

std::string real_dir() {
  const char* d = std::getenv("MODLAB_DATA_DIR");
  return d ? (fs::path(d) / "celeba").string() : std::string();
}
struct RealCeleba {
  tt::assertion_result operator()(utf::test_unit_id) const {
    tt::assertion_result r(!real_dir().empty() && fs::exists(fs::path(real_dir()) / "list_attr_celeba.txt"));
    r.message() << "CelebA not found at $MODLAB_DATA_DIR/celeba; skipped";
    return r;
  }
};

}  // namespace

// ------------------------------------------------------------------ generated files

BOOST_AUTO_TEST_CASE(fill_groups_split_and_labels) {
  TempDir dir;
  const int n = 60;
  make_celeba(dir.path, n);
  // samples 24 over 8 groups: at most 3 per group, taken in file order from the train partition
  Loaded l = load({{"root", str(dir.str())}, {"samples", Value::integer(24)}, {"cache", Value::boolean(false)}});
  auto spec = l.dataset->spec();
  BOOST_TEST(spec.group_kind == "attribute_group");
  BOOST_TEST(spec.group_names.size() == 8u);
  BOOST_TEST(spec.group_names[0] == "none");
  BOOST_TEST(spec.group_names[5] == "Black_Hair+Oval_Face");
  BOOST_TEST(spec.class_names[1] == "Male");
  BOOST_TEST(spec.input_shape == (std::vector<std::int64_t>{3, 32, 32}), tt::per_element());

  std::set<int> expected;
  std::vector<int> per_group(8, 0);
  for (int i = 0; i < n; ++i) {
    Attr a = attr_of(i);
    if (a.partition != 0 || per_group[static_cast<std::size_t>(a.group())] >= 3) continue;
    per_group[static_cast<std::size_t>(a.group())]++;
    expected.insert(i);
  }
  BOOST_TEST(per_group[7] == 1);  // the rare group stays short
  BOOST_TEST(spec.info.at("group_counts") == "3,3,3,3,3,3,3,1");
  const auto m = static_cast<std::int64_t>(expected.size());
  // torch random_split lengths for 22 items and [0.7, 0.2, 0.1]: 15, 4, 2 + remainder 1 to train
  BOOST_TEST(m == 22);
  BOOST_TEST(l.dataset->split("train")->size() == 16);
  BOOST_TEST(l.dataset->split("val")->size() == 4);
  BOOST_TEST(l.dataset->split("test")->size() == 2);

  std::set<int> got;
  for (const auto& name : spec.splits) {
    auto b = l.dataset->split(name)->all();
    for (std::int64_t k = 0; k < b.size(); ++k) {
      const int i = image_index(b.inputs[k]);
      BOOST_REQUIRE(got.insert(i).second);
      BOOST_TEST(b.targets[k].item<std::int64_t>() == attr_of(i).male);
      BOOST_TEST(b.groups[k].item<std::int64_t>() == attr_of(i).group());
    }
  }
  BOOST_TEST(got == expected, tt::per_element());

  // samples = 0 takes the whole partition; other target and groups by name; no groups
  auto all = load({{"root", str(dir.str())},
                   {"samples", Value::integer(0)},
                   {"target", str("Smiling")},
                   {"group_attributes", strs({})},
                   {"partition", str("valid")},
                   {"cache", Value::boolean(false)}})
                 .dataset;
  BOOST_TEST(all->spec().group_kind.empty());
  std::int64_t total = 0;
  for (const auto& name : all->spec().splits) {
    auto b = all->split(name)->all();
    BOOST_TEST(!b.groups.defined());
    for (std::int64_t k = 0; k < b.size(); ++k) {
      const int i = image_index(b.inputs[k]);
      BOOST_TEST(attr_of(i).partition == 1);
      BOOST_TEST(b.targets[k].item<std::int64_t>() == attr_of(i).smiling);
    }
    total += b.size();
  }
  BOOST_TEST(total == n / 10);
}

BOOST_AUTO_TEST_CASE(resize_options_and_thread_count_agree) {
  TempDir dir;
  make_celeba(dir.path, 30, 40, 30);
  auto one = load({{"root", str(dir.str())}, {"cache", Value::boolean(false)}, {"decode_threads", Value::integer(1)}});
  auto three = load({{"root", str(dir.str())}, {"cache", Value::boolean(false)}, {"decode_threads", Value::integer(3)}});
  BOOST_TEST(three.logged("3 threads"));
  for (const auto& name : {"train", "val", "test"})
    BOOST_TEST(torch::equal(one.dataset->split(name)->all().inputs, three.dataset->split(name)->all().inputs));

  auto sized = load({{"root", str(dir.str())},
                     {"cache", Value::boolean(false)},
                     {"image_size", ints({16, 8})},
                     {"flatten", Value::boolean(true)},
                     {"mean", Value::array({Value::floating(0.5)})},
                     {"std", Value::array({Value::floating(0.25)})}})
                   .dataset;
  BOOST_TEST(sized->spec().input_shape == (std::vector<std::int64_t>{3 * 16 * 8}), tt::per_element());
  auto b = sized->split("train")->all();
  BOOST_TEST(b.inputs.size(1) == 3 * 16 * 8);
  // green is 128 everywhere: (128/255 - 0.5) / 0.25, up to JPEG rounding
  auto green = b.inputs.view({b.size(), 3, 16, 8}).select(1, 1);
  BOOST_TEST((green - (128.0f / 255.0f - 0.5f) / 0.25f).abs().max().item<float>() < 3.0f / 255.0f / 0.25f);
}

BOOST_AUTO_TEST_CASE(cache_reused_and_invalidated) {
  TempDir dir, cache;
  make_celeba(dir.path, 30);
  Value::Table cfg = {{"root", str(dir.str())}, {"cache_dir", str(cache.str())}};

  Loaded first = load(cfg);
  BOOST_TEST(first.logged("decoded 27 images"));
  BOOST_TEST(first.logged("wrote cache"));
  BOOST_TEST(count_files(cache.path, ".u8") == 1u);
  const std::string file = first.dataset->spec().info.at("cache_file");
  BOOST_TEST(contains(file, cache.str()));
  BOOST_TEST(first.dataset->spec().info.at("image_source") == "decoded");

  Loaded second = load(cfg);
  BOOST_TEST(!second.logged("decoded"));
  BOOST_TEST(second.logged("from cache"));
  BOOST_TEST(second.dataset->spec().info.at("image_source") == "cache");
  for (const auto& name : {"train", "val", "test"})
    BOOST_TEST(torch::equal(first.dataset->split(name)->all().inputs, second.dataset->split(name)->all().inputs));

  // a different option is a different key
  Value::Table bigger = cfg;
  bigger["image_size"] = ints({48, 40});
  Loaded third = load(bigger);
  BOOST_TEST(third.logged("decoded 27 images"));
  BOOST_TEST(count_files(cache.path, ".u8") == 2u);

  // a changed image file (new mtime) invalidates
  fs::path img = dir.path / "img_align_celeba" / image_name(0);
  fs::last_write_time(img, fs::last_write_time(img) + std::chrono::seconds(5));
  Loaded fourth = load(cfg);
  BOOST_TEST(fourth.logged("decoded 27 images"));

  // a damaged cache file is ignored and replaced
  const std::string now = fourth.dataset->spec().info.at("cache_file");
  write_text(now, read_text(now).substr(0, 100));
  Loaded fifth = load(cfg);
  BOOST_TEST(fifth.logged("ignoring cache file"));
  BOOST_TEST(fifth.logged("decoded 27 images"));
  Loaded sixth = load(cfg);
  BOOST_TEST(sixth.logged("from cache"));
  // no temporary files are left behind
  for (const auto& e : fs::directory_iterator(fs::path(now).parent_path()))
    BOOST_TEST(!contains(e.path().filename().string(), ".tmp."));
}

BOOST_AUTO_TEST_CASE(cache_beside_data_or_fallback) {
  TempDir dir, fallback;
  make_celeba(dir.path, 12);
  ::setenv("MODLAB_CACHE_DIR", fallback.str().c_str(), 1);
  // a writable data folder gets the cache beside the data
  Loaded l = load({{"root", str(dir.str())}});
  BOOST_TEST(contains(l.dataset->spec().info.at("cache_file"), (dir.path / ".modlab_cache").string()));
  modlab::runner::remove_tree(dir.path / ".modlab_cache");

  // a read-only one (by its permission bits, even for root) sends it to $MODLAB_CACHE_DIR
  fs::permissions(dir.path, fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write,
                  fs::perm_options::remove);
  Loaded r = load({{"root", str(dir.str())}});
  BOOST_TEST(contains(r.dataset->spec().info.at("cache_file"), (fallback.path / "celeba").string()));
  BOOST_TEST(!fs::exists(dir.path / ".modlab_cache"));
  BOOST_TEST(load({{"root", str(dir.str())}}).logged("from cache"));
  ::unsetenv("MODLAB_CACHE_DIR");
}

BOOST_AUTO_TEST_CASE(progress_lines_for_long_decodes) {
  TempDir dir;
  make_celeba(dir.path, 2300, 8, 8);  // 2,070 in the train partition
  Loaded l = load({{"root", str(dir.str())}, {"samples", Value::integer(0)}, {"cache", Value::boolean(false)}}, 2);
  std::size_t lines = 0;
  for (const auto& s : l.log)
    if (contains(s, "celeba: decoding ")) ++lines;
  BOOST_TEST_MESSAGE("progress lines: " << lines);
  BOOST_TEST(lines == 9u);  // 10%, 20%, ..., 90%
  BOOST_TEST(l.logged("decoded 2,070 images"));
}

// ------------------------------------------------------------------ corrupt and missing files

BOOST_AUTO_TEST_CASE(corrupt_jpeg) {
  TempDir dir;
  make_celeba(dir.path, 12);
  fs::path img = dir.path / "img_align_celeba" / image_name(4);
  // a noisy image, so that most of the file is entropy-coded data, cut in the middle of it
  std::mt19937 rng(7);
  std::vector<std::uint8_t> noise(160 * 200 * 3);
  for (auto& v : noise) v = static_cast<std::uint8_t>(rng() & 0xff);
  write_jpeg(img, 160, 200, noise);
  std::string bytes = read_text(img);
  write_text(img, bytes.substr(0, bytes.size() / 2));
  auto msg = load_error<modlab::DataError>({{"root", str(dir.str())}, {"cache", Value::boolean(false)}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, img.string()));
  BOOST_TEST(contains(msg, "not a decodable JPEG"));
  BOOST_TEST(contains(msg, "truncated"));

  // cut inside the headers
  write_text(img, bytes.substr(0, 200));
  msg = load_error<modlab::DataError>({{"root", str(dir.str())}, {"cache", Value::boolean(false)}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, img.string()));
  BOOST_TEST(contains(msg, "not a decodable JPEG"));

  write_text(img, "this is not a JPEG file at all");
  msg = load_error<modlab::DataError>({{"root", str(dir.str())}, {"cache", Value::boolean(false)}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, img.string()));
  BOOST_TEST(contains(msg, "not a decodable JPEG"));
}

BOOST_AUTO_TEST_CASE(attribute_file_errors) {
  TempDir dir;
  make_celeba(dir.path, 12);
  const fs::path attr = dir.path / "list_attr_celeba.txt";
  const std::string good = read_text(attr);

  // row 4 (line 6) loses a value
  std::string bad = good;
  auto pos = bad.find(image_name(3));
  auto eol = bad.find("\r\n", pos);
  bad.erase(bad.rfind(' ', eol - 1), eol - bad.rfind(' ', eol - 1));
  write_text(attr, bad);
  auto msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, attr.string() + ":6:"));
  BOOST_TEST(contains(msg, "'000004.jpg' has 4 attribute values, expected 5"));

  // a value that is not +-1
  bad = good;
  pos = bad.find(image_name(2));
  bad.replace(bad.find("-1", pos), 2, " 0");
  write_text(attr, bad);
  msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, attr.string() + ":5:"));
  BOOST_TEST(contains(msg, "is not 1 or -1"));

  // LF line endings are read like CRLF
  std::string lf = good;
  for (std::size_t p; (p = lf.find("\r\n")) != std::string::npos;) lf.erase(p, 1);
  write_text(attr, lf);
  BOOST_TEST(load({{"root", str(dir.str())}, {"cache", Value::boolean(false)}}).dataset->split("train")->size() > 0);
  write_text(attr, good);

  // unknown attribute names
  msg = load_error<modlab::ConfigError>({{"root", str(dir.str())}, {"target", str("Mael")}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "dataset.target"));
  BOOST_TEST(contains(msg, "unknown attribute 'Mael' (did you mean 'Male'?)"));
  BOOST_TEST(contains(msg, attr.string() + ":2"));
  msg = load_error<modlab::ConfigError>({{"root", str(dir.str())}, {"group_attributes", strs({"Black_Hair", "Wavy_Hair"})}});
  BOOST_TEST(contains(msg, "unknown attribute 'Wavy_Hair'"));

  // a bad partition line
  const fs::path part = dir.path / "list_eval_partition.txt";
  std::string p = read_text(part);
  p.replace(p.find(image_name(1)) + 11, 1, "7");
  write_text(part, p);
  msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, part.string() + ":2:"));
}

BOOST_AUTO_TEST_CASE(missing_images_and_folders) {
  TempDir dir;
  make_celeba(dir.path, 12);
  fs::remove(dir.path / "img_align_celeba" / image_name(5));
  fs::remove(dir.path / "img_align_celeba" / image_name(6));
  auto msg = load_error<modlab::DataError>({{"root", str(dir.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "2 of the 11 images this configuration selects are missing"));
  BOOST_TEST(contains(msg, "000006.jpg (" + (dir.path / "list_attr_celeba.txt").string() + ":8)"));

  TempDir empty;
  msg = load_error<modlab::DataError>({{"root", str(empty.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "list_attr_celeba.txt"));
}

// ------------------------------------------------------------------ the real files

BOOST_AUTO_TEST_CASE(real_subset, *utf::precondition(RealCeleba())) {
  TempDir cache;
  // no keys at all: the data is found through MODLAB_DATA_DIR, and since the shared data folder is
  // read-only the cache goes to $MODLAB_CACHE_DIR
  ::setenv("MODLAB_CACHE_DIR", cache.str().c_str(), 1);
  Loaded l = load({});
  ::unsetenv("MODLAB_CACHE_DIR");
  auto ds = l.dataset;
  BOOST_TEST(fs::equivalent(ds->spec().info.at("root"), real_dir()));
  BOOST_TEST(ds->split("train")->size() == 7);
  BOOST_TEST(ds->split("val")->size() == 2);
  BOOST_TEST(ds->split("test")->size() == 1);

  // labels and groups against the attribute file itself
  std::ifstream in(fs::path(real_dir()) / "list_attr_celeba.txt");
  std::string line;
  std::getline(in, line);
  std::getline(in, line);
  std::istringstream names_in(line);
  std::vector<std::string> names;
  for (std::string w; names_in >> w;) names.push_back(w);
  auto col = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
  std::map<std::pair<std::int64_t, std::int64_t>, int> want, got;
  while (std::getline(in, line)) {
    std::istringstream row(line);
    std::string file;
    row >> file;
    std::vector<int> v;
    for (int x; row >> x;) v.push_back((x + 1) / 2);
    if (file.empty()) continue;
    want[{v[static_cast<std::size_t>(col("Male"))],
          v[static_cast<std::size_t>(col("Black_Hair"))] + 2 * v[static_cast<std::size_t>(col("Arched_Eyebrows"))] +
              4 * v[static_cast<std::size_t>(col("Oval_Face"))]}]++;
  }
  for (const auto& name : {"train", "val", "test"}) {
    auto b = ds->split(name)->all();
    BOOST_TEST(b.inputs.sizes() == (std::vector<std::int64_t>{b.size(), 3, 32, 32}), tt::per_element());
    for (std::int64_t k = 0; k < b.size(); ++k) got[{b.targets[k].item<std::int64_t>(), b.groups[k].item<std::int64_t>()}]++;
  }
  BOOST_TEST((got == want));
  const auto perms = fs::status(real_dir()).permissions();
  const auto write_bits = fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write;
  if ((perms & write_bits) == fs::perms::none) {
    // nothing was written into the read-only data folder, even when running as root
    BOOST_TEST(!fs::exists(fs::path(real_dir()) / ".modlab_cache"));
    BOOST_TEST(count_files(cache.path, ".u8") == 1u);
  } else {
    BOOST_TEST_MESSAGE(real_dir() << " is writable: the cache went beside the data");
  }
}

// Pixels against Pillow: Image.open(f).resize((32, 32), Image.BILINEAR), as torchvision's Resize.
BOOST_AUTO_TEST_CASE(real_images_match_pillow, *utf::precondition(RealCeleba())) {
  TempDir tmp;
  const fs::path out = tmp.path / "pil.bin";
  const fs::path script = tmp.path / "pil.py";
  write_text(script,
             "import sys, numpy as np\n"
             "from PIL import Image\n"
             "root, out = sys.argv[1], sys.argv[2]\n"
             "with open(out, 'wb') as f:\n"
             "    for i in range(1, 11):\n"
             "        im = Image.open(f'{root}/img_align_celeba/{i:06d}.jpg').resize((32, 32), Image.BILINEAR)\n"
             "        f.write(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).tobytes())\n");
  const std::string cmd = "/usr/bin/python3 " + script.string() + " " + real_dir() + " " + out.string() + " 2>&1";
  if (std::system(cmd.c_str()) != 0 || !fs::exists(out)) {
    BOOST_TEST_MESSAGE("/usr/bin/python3 with numpy and PIL (python3-pil) not available; Pillow comparison skipped");
    return;
  }
  const std::string pil = read_text(out);
  BOOST_REQUIRE_EQUAL(pil.size(), 10u * 3 * 32 * 32);

  // every image, in file order: one split holding all of them
  TempDir cache;
  auto ds = load({{"cache_dir", str(cache.str())},
                  {"split_fractions", Value::array({Value::floating(1.0), Value::floating(0.0), Value::floating(0.0)})}})
                .dataset;
  auto b = ds->split("train")->all();
  BOOST_REQUIRE_EQUAL(b.size(), 10);
  // the split is a permutation; match each example to its Pillow image by exact equality
  auto ours = (b.inputs * 255.0f).round().to(torch::kUInt8).contiguous();
  auto ref = torch::from_blob(const_cast<char*>(pil.data()), {10, 3, 32, 32}, torch::kUInt8).clone();
  int matched = 0;
  std::int64_t worst = 0;
  for (std::int64_t k = 0; k < 10; ++k) {
    std::int64_t best = 255;
    for (std::int64_t j = 0; j < 10; ++j)
      best = std::min(best, (ours[k].to(torch::kInt) - ref[j].to(torch::kInt)).abs().max().item<std::int64_t>());
    worst = std::max(worst, best);
    matched += best == 0;
  }
  BOOST_TEST_MESSAGE("largest difference to Pillow: " << worst << " grey levels");
  BOOST_TEST(matched == 10);
}

BOOST_AUTO_TEST_CASE(real_full_annotations_need_missing_images, *utf::precondition(RealCeleba())) {
  TempDir cache;
  auto msg = load_error<modlab::DataError>({{"root", str(real_dir())},
                                            {"attr_file", str("annotations_full/list_attr_celeba_first20000.txt")},
                                            {"partition_file", str("annotations_full/list_eval_partition.txt")},
                                            {"cache_dir", str(cache.str())}});
  BOOST_TEST_MESSAGE(msg);
  BOOST_TEST(contains(msg, "images this configuration selects are missing from"));
  BOOST_TEST(contains(msg, "000011.jpg"));
  BOOST_TEST(contains(msg, "list_attr_celeba_first20000.txt:13"));
}
