#define BOOST_TEST_MODULE dm_math
// dm_math: the parser on the real files and on malformed ones (odd line count, empty answer,
// non-ASCII, CRLF), a .tar.gz read like the folder and a truncated one named, duplicates dropped,
// the held-out items numpy's RandomState(1234) picks, the cache round trip and its rebuild when a
// source changes, padded sequence batches, and the errors of bad options.
#include <boost/test/unit_test.hpp>

#include "../temp_dir.hpp"
#include "build.hpp"
#include "corpus.hpp"
#include "release.hpp"

#include "config_builders.hpp"
#include "model_builders.hpp"

#include <modlab/errors.hpp>

#include <torch/torch.h>

#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace modlab;
using namespace modlab::dm_math;
using namespace test_config;
namespace fs = std::filesystem;

namespace {

fs::path data_dir() {
  const char* d = std::getenv("MODLAB_DATA_DIR");
  return fs::path(d ? d : "../shared/data") / "dm_math";
}

struct Temp {
  modlab_test::TempDir dir{"dm_math"};
  fs::path path = dir.path;
  void write(const std::string& rel, const std::string& text) const {
    fs::create_directories((path / rel).parent_path());
    std::ofstream(path / rel, std::ios::binary) << text;
  }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

/// A small release: module "m" (10 train-easy pairs, 2 interpolate), "m_big" extrapolate, module "n".
void small_release(const Temp& t, const std::string& root = "rel") {
  std::string easy;
  for (int i = 0; i < 10; ++i) easy += "What is " + std::to_string(i) + " + 1?\n" + std::to_string(i + 1) + "\n";
  easy += "What is 0 + 1?\n1\n";  // a duplicate within the file
  t.write(root + "/train-easy/m.txt", easy);
  t.write(root + "/interpolate/m.txt", "What is 3 + 1?\n4\nWhat is 20 + 1?\n21\n");  // 3 + 1 also trains: dropped there
  t.write(root + "/extrapolate/m_big.txt", "What is 900 + 1?\n901\n");
  t.write(root + "/train-easy/n.txt", "Sort 2, 1.\n1, 2\n");
}

Config dataset(Value::Table t) {
  t["plugin"] = str("dm_math");
  return make_config(std::move(t));
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_real_files_parse) {
  const auto real = data_dir() / "mathematics_dataset-v1.0/train-easy/arithmetic__add_or_sub.txt";
  const auto gen = data_dir() / "generated/train-easy/arithmetic__add_or_sub.txt";
  if (!fs::exists(real) || !fs::exists(gen)) {
    BOOST_TEST_MESSAGE("skipped: " << data_dir() << " lacks the dm_math files (see ../shared/data/README.md)");
    return;
  }
  auto read = [](const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return parse_pairs(TextFile{"train-easy", "arithmetic__add_or_sub", p.string()}, s.str());
  };
  const auto r = read(real), g = read(gen);
  BOOST_TEST(r.questions.size() == 5u);
  BOOST_TEST(r.questions[0] == "What is -5 - 110911?");
  BOOST_TEST(r.answers[0] == "-110916");
  BOOST_TEST(g.questions.size() == 5000u);
  BOOST_TEST(g.questions[0] == "What is -3 take away 158813?");
  BOOST_TEST(g.answers[0] == "-158816");
}

BOOST_AUTO_TEST_CASE(malformed_files_are_named_with_their_line) {
  const TextFile f{"train-easy", "m", "x.txt"};
  BOOST_TEST(error_of([&] { parse_pairs(f, "Q1\nA1\nQ2\n"); }) ==
             "x.txt: odd number of lines (3): the question on line 3 has no answer");
  BOOST_TEST(error_of([&] { parse_pairs(f, "Q1\n\nQ2\nA2\n"); }) == "x.txt:2: empty answer");
  BOOST_TEST(error_of([&] { parse_pairs(f, "Q1\nA1\nWhat \xc3\xa9?\nA\n"); }) ==
             "x.txt:3: byte 0xc3 at column 6 is not printable ASCII");
  const auto crlf = parse_pairs(f, "Q1\r\nA1\r\nQ2\r\nA2\r\n"), lf = parse_pairs(f, "Q1\nA1\nQ2\nA2");
  BOOST_TEST(crlf.questions == lf.questions);
  BOOST_TEST(crlf.answers == lf.answers);
  BOOST_TEST((lf.answers == std::vector<std::string>{"A1", "A2"}));
}

BOOST_AUTO_TEST_CASE(duplicates_are_dropped_from_training_and_test_items_held_out) {
  Temp t;
  small_release(t);
  auto release = Release::open((t.path / "rel").string());
  BuildReport report;
  const auto c = build_corpus(*release, Selection{{"m"}, {"train-easy"}, 3, 1234, 0}, report);
  BOOST_TEST_REQUIRE((c != nullptr));
  BOOST_TEST(report.duplicates == 2);  // "0 + 1" twice in the file, "3 + 1" in interpolate
  BOOST_TEST((c->modules == std::vector<std::string>{"m"}));  // m_big extrapolates m
  BOOST_TEST_REQUIRE(c->split("train_easy"));
  BOOST_TEST(c->split("train_easy")->count == 6);
  BOOST_TEST(c->split("test_easy")->count == 3);
  BOOST_TEST(c->split("interpolate")->count == 2);
  BOOST_TEST(c->split("extrapolate")->count == 1);
  // After the duplicates, train-easy holds 0,1,2,4,…,9 + 1 (9 items); numpy's
  // RandomState(1234).permutation(9)[:3] picks the test items.
  std::vector<std::string> test;
  const auto b = gather(*c, {c->split("test_easy")->first, c->split("test_easy")->first + 1, c->split("test_easy")->first + 2});
  for (std::int64_t r = 0; r < 3; ++r) {
    std::string q;
    for (std::int64_t i = 0; i < b.question_lengths[r].item<std::int64_t>(); ++i)
      q += c->vocabulary[static_cast<std::size_t>(b.questions[r][i].item<std::int64_t>() - kFirstChar)];
    test.push_back(q);
  }
  BOOST_TEST((test == std::vector<std::string>{"What is 1 + 1?", "What is 2 + 1?", "What is 9 + 1?"}));
  BuildReport unknown;
  BOOST_TEST((build_corpus(*release, Selection{{"mm", "n*"}, {"train-easy"}, 0, 1234, 0}, unknown) == nullptr));
  BOOST_TEST((unknown.unknown == std::vector<std::string>{"mm"}));
  BOOST_TEST((unknown.known == std::vector<std::string>{"m", "n"}));
}

BOOST_AUTO_TEST_CASE(an_archive_reads_like_the_folder_and_a_truncated_one_is_named) {
  Temp t;
  small_release(t, "mathematics_dataset-v1.0");
  const auto archive = t.path / "release.tar.gz";
  BOOST_TEST_REQUIRE(std::system(("tar czf " + archive.string() + " -C " + t.path.string() + " mathematics_dataset-v1.0").c_str()) == 0);
  BuildReport r1, r2;
  const Selection sel{{"*"}, {"train-easy"}, 2, 1234, 0};
  const auto folder = build_corpus(*Release::open(t.path.string()), sel, r1);
  const auto packed = build_corpus(*Release::open(archive.string()), sel, r2);
  BOOST_TEST_REQUIRE(folder->stream.size() == packed->stream.size());
  BOOST_TEST(folder->stream == packed->stream);
  BOOST_TEST(folder->vocabulary == packed->vocabulary);
  BOOST_TEST(folder->size() == packed->size());
  // Cut the archive in half.
  const auto bytes = fs::file_size(archive);
  fs::resize_file(archive, bytes / 2);
  BuildReport r3;
  const auto e = error_of([&] { build_corpus(*Release::open(archive.string()), sel, r3); });
  BOOST_TEST(e.find("release.tar.gz: truncated or corrupt archive, it ends inside") != std::string::npos, e);
  BOOST_TEST(error_of([&] { Release::open((t.path / "nothing").string()); }).find("no such folder or file") != std::string::npos);
  t.write("empty/readme.txt", "x");
  BOOST_TEST(error_of([&] { Release::open((t.path / "empty").string()); })
                 .find("no train-easy/, train-medium/, train-hard/, interpolate/ or extrapolate/ folder") != std::string::npos);
}

namespace {

/// A .tar.gz of one member header (size field `octal_size`, checksum right or off by one) and
/// `data`, as a damaged archive might hold.
void write_one_member_archive(const fs::path& path, const std::string& octal_size, bool good_checksum,
                              const std::string& data) {
  std::string h(512, '\0');
  const std::string name = "mathematics_dataset-v1.0/train-easy/m.txt";
  h.replace(0, name.size(), name);
  h.replace(100, 7, "0000644");
  h.replace(124, octal_size.size(), octal_size);
  h[156] = '0';
  h.replace(257, 5, "ustar");
  h.replace(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  char field[8];
  std::snprintf(field, sizeof field, "%06o", sum + (good_checksum ? 0 : 1));
  h.replace(148, 7, std::string(field, 6) + '\0');
  const std::string bytes = h + data + std::string(1024, '\0');
  gzFile f = gzopen(path.c_str(), "wb");
  BOOST_REQUIRE(f != nullptr);
  BOOST_REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == static_cast<int>(bytes.size()));
  gzclose(f);
}

}  // namespace

// Found by fuzz/fuzz_dm_math_archive (fuzz/regressions/dm_math_archive): a member size field of
// gigabytes was allocated before reading; a damaged header was read as a member.
BOOST_AUTO_TEST_CASE(damaged_tar_headers_are_named_and_sizes_are_not_trusted) {
  Temp t;
  const auto archive = t.path / "release.tar.gz";
  write_one_member_archive(archive, "77777777777", true, "What is 1 + 1?\n2\n");  // announces 8 GiB
  BuildReport r;
  const Selection sel{{"*"}, {"train-easy"}, 0, 1234, 0};
  std::string e = error_of([&] { build_corpus(*Release::open(archive.string()), sel, r); });
  BOOST_TEST(e.find("release.tar.gz: truncated or corrupt archive, it ends inside member") != std::string::npos, e);
  write_one_member_archive(archive, "00000000021", false, "What is 1 + 1?\n2\n");
  e = error_of([&] { build_corpus(*Release::open(archive.string()), sel, r); });
  BOOST_TEST(e.find("corrupt archive: the tar header of 'mathematics_dataset-v1.0/train-easy/m.txt' fails its checksum") !=
                 std::string::npos, e);
  write_one_member_archive(archive, "00000000021", true, "What is 1 + 1?\n2\n");
  BOOST_TEST(build_corpus(*Release::open(archive.string()), sel, r)->size() == 1);
}

// Found by fuzz/fuzz_dm_math_cache: the index was read in place at an unaligned offset, and a
// damaged index pointed outside the token stream.
BOOST_AUTO_TEST_CASE(the_cache_index_is_aligned_and_a_damaged_one_is_refused) {
  Temp t;
  small_release(t);
  BuildReport report;
  const auto built = build_corpus(*Release::open((t.path / "rel").string()), Selection{{"m"}, {"train-easy"}, 2, 1234, 0}, report);
  const std::string file = (t.path / "c.cache").string();
  write_cache(file, *built);
  const auto mapped = map_cache(file);
  BOOST_TEST(reinterpret_cast<std::uintptr_t>(mapped->entries()) % alignof(Entry) == 0u);
  // Point the first example past the end of the stream.
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), {});
  const std::size_t first = bytes.size() - built->stream.size() - 8 - built->index.size() * sizeof(Entry);
  const std::uint64_t far = 1ull << 40;
  bytes.replace(first, 8, reinterpret_cast<const char*>(&far), 8);
  std::ofstream(file + ".bad", std::ios::binary) << bytes;
  const std::string e = error_of([&] { map_cache(file + ".bad"); });
  BOOST_TEST(e.find("c.cache.bad: damaged dm_math cache (index entry 0); delete it to rebuild it") != std::string::npos, e);
  // A refused cache is unmapped again (the fuzzer ran out of address space when it was not).
  auto mappings = [] {
    std::ifstream maps("/proc/self/maps");
    return std::count(std::istreambuf_iterator<char>(maps), {}, '\n');
  };
  const auto before = mappings();
  for (int i = 0; i < 50; ++i) error_of([&] { map_cache(file + ".bad"); });
  BOOST_TEST(mappings() == before);
}

BOOST_AUTO_TEST_CASE(the_cache_round_trips_and_is_rebuilt_when_a_source_changes) {
  Temp t;
  small_release(t);
  BuildReport report;
  const auto built = build_corpus(*Release::open((t.path / "rel").string()), Selection{{"m", "n"}, {"train-easy"}, 2, 1234, 0}, report);
  write_cache((t.path / "c.cache").string(), *built);
  const auto mapped = map_cache((t.path / "c.cache").string());
  BOOST_TEST(mapped->size() == built->size());
  BOOST_TEST(mapped->vocabulary == built->vocabulary);
  BOOST_TEST(mapped->modules == built->modules);
  BOOST_TEST(std::memcmp(mapped->entries(), built->entries(), sizeof(Entry) * built->index.size()) == 0);
  BOOST_TEST(std::memcmp(mapped->tokens(), built->tokens(), built->stream.size()) == 0);
  for (std::size_t i = 0; i < built->splits.size(); ++i) {
    BOOST_TEST(mapped->splits[i].name == built->splits[i].name);
    BOOST_TEST(mapped->splits[i].first == built->splits[i].first);
    BOOST_TEST(mapped->splits[i].count == built->splits[i].count);
  }
  fs::resize_file(t.path / "c.cache", fs::file_size(t.path / "c.cache") - 1);
  BOOST_TEST(error_of([&] { map_cache((t.path / "c.cache").string()); }).find("truncated") != std::string::npos);

  // Through the plugin: built, then mapped, then built again after a source changed.
  const Value::Table opts{{"root", str((t.path / "rel").string())}, {"modules", strs({"m"})},
                          {"difficulties", strs({"train-easy"})}, {"cache_dir", str((t.path / "cache").string())}};
  auto open = [&] {
    Value::Table o = opts;
    o["test_size"] = Value::integer(2);
    return test_model::host().create_dataset("dm_math", dataset(o));
  };
  auto first = open();
  BOOST_TEST(first->spec().info.at("source").find("built from") == 0u);
  BOOST_TEST(open()->spec().info.at("source").find("mapped") == 0u);
  t.write("rel/train-easy/m.txt", "What is 5 + 5?\n10\nWhat is 6 + 6?\n12\nWhat is 7 + 7?\n14\n");
  auto changed = open();
  BOOST_TEST(changed->spec().info.at("source").find("built from") == 0u);
  BOOST_TEST(changed->split("train")->size() == 1);
}

BOOST_AUTO_TEST_CASE(batches_are_padded_sequences_with_lengths_and_groups) {
  Temp t;
  small_release(t);
  auto d = test_model::host().create_dataset(
      "dm_math", dataset({{"root", str((t.path / "rel").string())}, {"modules", strs({"m", "n"})},
                          {"difficulties", strs({"train-easy"})}, {"test_size", Value::integer(2)},
                          {"cache", Value::boolean(false)}}));
  const auto spec = d->spec();
  BOOST_TEST(task_kind_name(spec.task) == std::string("sequence"));
  BOOST_TEST((spec.splits == std::vector<std::string>{"train", "test_easy", "interpolate", "extrapolate", "train_easy"}));
  BOOST_TEST(spec.vocabulary[0] == "<pad>");
  BOOST_TEST(spec.vocabulary[2] == "<end>");
  BOOST_TEST_REQUIRE(spec.subtasks.size() == 1u);
  BOOST_TEST(spec.subtasks[0].train_split == "train_easy");
  const auto b = d->split("interpolate")->all();
  BOOST_TEST((b.inputs.sizes().vec() == std::vector<std::int64_t>{2, 15}));  // "What is 20 + 1?" = 15
  BOOST_TEST(b.lengths[0].item<std::int64_t>() == 14);                       // "What is 3 + 1?" was dropped from train, not here
  BOOST_TEST(b.inputs[0][14].item<std::int64_t>() == kPad);
  BOOST_TEST(b.target_lengths[1].item<std::int64_t>() == 3);                 // "21" + end
  BOOST_TEST(b.targets[1][2].item<std::int64_t>() == kEnd);
  BOOST_TEST(spec.vocabulary[static_cast<std::size_t>(b.targets[1][0].item<std::int64_t>())] == "2");
  BOOST_TEST(b.groups[0].item<std::int64_t>() == 1);  // group names: easy, interpolate, extrapolate
  // Lengths for bucketing come from the index alone: question + answer, without the end token.
  const auto idx = torch::tensor({1, 0}, torch::kLong);
  const auto len = d->split("interpolate")->lengths(idx);
  BOOST_TEST(torch::equal(len, (b.lengths + b.target_lengths - 1).index_select(0, idx)));
  const auto train = d->split("train");
  BOOST_TEST(train->lengths(torch::arange(train->size(), torch::kLong)).size(0) == train->size());
  const auto e = error_of([&] {
    test_model::host().create_dataset("dm_math", dataset({{"root", str((t.path / "rel").string())}, {"modules", strs({"q"})},
                                                          {"cache", Value::boolean(false)}}));
  });
  BOOST_TEST(e.find("dataset.modules: 'q' matches no module of") != std::string::npos, e);
  BOOST_TEST(e.find("(it has: m, n)") != std::string::npos, e);
}
