#define BOOST_TEST_MODULE h5
#include <boost/test/unit_test.hpp>

#include <modlab/errors.hpp>
#include <modlab/runner/h5.hpp>

#include "../temp_dir.hpp"

#include <hdf5.h>
#include <hdf5_hl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>
#include <thread>

namespace fs = std::filesystem;
using modlab::OutputError;
using modlab::runner::kSchemaVersion;
using modlab::runner::read_run_summary;
using modlab::runner::RunHistory;
using modlab::runner::RunSummary;
using modlab::runner::run_file_checksum_problem;
using modlab::runner::RunWriter;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

using modlab_test::TempDir;

// --- independent readers over the raw C API (the code under test is not used to check itself) ---

struct File {
  hid_t id;
  explicit File(const std::string& p, unsigned flags = H5F_ACC_RDONLY) : id(H5Fopen(p.c_str(), flags, H5P_DEFAULT)) {
    BOOST_REQUIRE_MESSAGE(id >= 0, "cannot open " << p);
  }
  ~File() { H5Fclose(id); }
};

std::vector<hsize_t> shape(hid_t loc, const std::string& path, std::vector<hsize_t>* maxdims = nullptr) {
  hid_t ds = H5Dopen2(loc, path.c_str(), H5P_DEFAULT);
  BOOST_REQUIRE_MESSAGE(ds >= 0, "no dataset " << path);
  hid_t sp = H5Dget_space(ds);
  std::vector<hsize_t> d(static_cast<std::size_t>(H5Sget_simple_extent_ndims(sp))), m(d.size());
  H5Sget_simple_extent_dims(sp, d.data(), m.data());
  if (maxdims) *maxdims = m;
  H5Sclose(sp);
  H5Dclose(ds);
  return d;
}

template <typename T>
std::vector<T> read_all(hid_t loc, const std::string& path, hid_t mtype) {
  hid_t ds = H5Dopen2(loc, path.c_str(), H5P_DEFAULT);
  BOOST_REQUIRE_MESSAGE(ds >= 0, "no dataset " << path);
  hid_t sp = H5Dget_space(ds);
  std::vector<T> v(static_cast<std::size_t>(H5Sget_simple_extent_npoints(sp)));
  if (!v.empty()) BOOST_REQUIRE(H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) >= 0);
  H5Sclose(sp);
  H5Dclose(ds);
  return v;
}
std::vector<double> doubles(hid_t loc, const std::string& p) { return read_all<double>(loc, p, H5T_NATIVE_DOUBLE); }
std::vector<std::int64_t> ints(hid_t loc, const std::string& p) { return read_all<std::int64_t>(loc, p, H5T_NATIVE_INT64); }

// Stored type of a dataset as "<class><bits>", e.g. f32, i64, u8.
std::string stored_type(hid_t loc, const std::string& path) {
  hid_t ds = H5Dopen2(loc, path.c_str(), H5P_DEFAULT);
  hid_t t = H5Dget_type(ds);
  const auto cls = H5Tget_class(t);
  std::string s = cls == H5T_FLOAT ? "f" : cls == H5T_INTEGER ? (H5Tget_sign(t) == H5T_SGN_NONE ? "u" : "i") : "?";
  s += std::to_string(H5Tget_size(t) * 8);
  H5Tclose(t);
  H5Dclose(ds);
  return s;
}

// String attribute (scalar or array) read as variable-length UTF-8.
std::vector<std::string> str_attr(hid_t obj, const std::string& name) {
  hid_t a = H5Aopen(obj, name.c_str(), H5P_DEFAULT);
  BOOST_REQUIRE_MESSAGE(a >= 0, "no attribute " << name);
  hid_t ft = H5Aget_type(a);
  BOOST_REQUIRE(H5Tget_class(ft) == H5T_STRING);
  BOOST_CHECK(H5Tget_cset(ft) == H5T_CSET_UTF8);
  hid_t sp = H5Aget_space(a);
  std::vector<char*> buf(static_cast<std::size_t>(H5Sget_simple_extent_npoints(sp)));
  hid_t mt = H5Tcopy(H5T_C_S1);
  H5Tset_size(mt, H5T_VARIABLE);
  H5Tset_cset(mt, H5T_CSET_UTF8);
  BOOST_REQUIRE(H5Aread(a, mt, buf.data()) >= 0);
  std::vector<std::string> out(buf.begin(), buf.end());
  H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf.data());
  H5Tclose(mt);
  H5Sclose(sp);
  H5Tclose(ft);
  H5Aclose(a);
  return out;
}
std::string str_attr1(hid_t obj, const std::string& name) { return str_attr(obj, name).at(0); }
std::vector<std::string> ds_str_attr(hid_t f, const std::string& ds_path, const std::string& name) {
  hid_t ds = H5Oopen(f, ds_path.c_str(), H5P_DEFAULT);
  auto v = str_attr(ds, name);
  H5Oclose(ds);
  return v;
}
std::int64_t int_attr(hid_t obj, const std::string& name) {
  hid_t a = H5Aopen(obj, name.c_str(), H5P_DEFAULT);
  BOOST_REQUIRE_MESSAGE(a >= 0, "no attribute " << name);
  hid_t t = H5Aget_type(a);
  BOOST_CHECK(H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 8);
  std::int64_t v = 0;
  H5Aread(a, H5T_NATIVE_INT64, &v);
  H5Tclose(t);
  H5Aclose(a);
  return v;
}

// NaN-aware equality, reporting the first mismatch.
void check_values(const std::vector<double>& got, const std::vector<double>& want, const std::string& what) {
  BOOST_REQUIRE_MESSAGE(got.size() == want.size(), what << ": " << got.size() << " values, expected " << want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    BOOST_CHECK_MESSAGE((std::isnan(got[i]) && std::isnan(want[i])) || got[i] == want[i],
                        what << "[" << i << "] = " << got[i] << ", expected " << want[i]);
}

std::vector<double> as_doubles(const torch::Tensor& t) {
  auto c = t.detach().to(torch::kCPU, torch::kDouble).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

template <typename F>
void check_output_error(F&& f, const std::string& must_contain) {
  try {
    f();
    BOOST_ERROR("expected OutputError mentioning '" << must_contain << "'");
  } catch (const OutputError& e) {
    BOOST_CHECK_MESSAGE(std::string(e.what()).find(must_contain) != std::string::npos,
                        "message '" << e.what() << "' does not mention '" << must_contain << "'");
  }
}

bool python_has(const std::string& module) {
  const std::string cmd = "/usr/bin/python3 -c 'import " + module + "' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

// The run most tests look at. Two phases per epoch; `val.acc` first appears in row 1, so row 0
// must read back as NaN.
struct Written {
  std::vector<std::int64_t> epoch, step;
  std::vector<std::string> phase;
  std::map<std::string, std::vector<double>> metrics;
  torch::Tensor weights, mask, counts;
  std::vector<torch::Tensor> gates;
};

Written write_sample(RunWriter& w, int epochs = 3) {
  Written x;
  torch::manual_seed(0);
  for (int e = 0; e < epochs; ++e) {
    for (const std::string phase : {"train", "val"}) {
      const std::int64_t step = 100 * (e + 1);
      w.begin_row(e, step, phase);
      x.epoch.push_back(e);
      x.step.push_back(step);
      x.phase.push_back(phase);
      const std::size_t row = x.epoch.size() - 1;
      for (auto& [k, v] : x.metrics) v.push_back(kNaN);
      auto log = [&](const std::string& name, double value) {
        w.scalar(name, value);
        auto& v = x.metrics.try_emplace(name, std::vector<double>(row + 1, kNaN)).first->second;
        v[row] = value;
      };
      if (phase == "train") {
        log("loss", 1.0 / (e + 1));
      } else {
        log("val.acc", 0.5 + 0.1 * e);
        log("val.loss", 2.0 / (e + 2));
      }
      // A gate matrix per epoch, passed non-contiguous (transposed).
      if (phase == "val") {
        auto g = torch::rand({3, 2}).t();
        w.append("gates", g, {"expert", "slot"});
        x.gates.push_back(g.clone());
      }
      w.flush();
    }
  }
  w.tensor("weights", torch::zeros({2, 2}));  // replaced below: only the last write counts
  x.weights = torch::randn({3, 4}, torch::kDouble);
  w.tensor("weights", x.weights, {"out", "in"});
  x.mask = (torch::rand({4, 3}) > 0.5).t();  // bool, non-contiguous
  w.tensor("mask", x.mask);
  x.counts = torch::arange(6, torch::kInt).reshape({2, 3});
  w.tensor("counts", x.counts, {"a", "b"});
  w.note("classes", "cat,dog");
  return x;
}

std::map<std::string, std::string> sample_attrs() { return {{"run_id", "ab12cd34ef56"}, {"config", "[model]\nhidden = 8\n"}}; }
std::map<std::string, std::int64_t> sample_ints() { return {{"seed", 7}, {"index", 3}}; }

}  // namespace

BOOST_AUTO_TEST_CASE(run_file_layout_and_values) {
  TempDir dir;
  const std::string final_path = dir / "run.h5";
  Written x;
  {
    RunWriter w(final_path, sample_attrs(), sample_ints());
    BOOST_TEST(w.partial_path() == final_path + ".partial");
    BOOST_TEST(fs::exists(w.partial_path()));
    x = write_sample(w);
    w.tensor("routing/layer0", torch::eye(2));  // nested name: groups are created
    w.finish("completed");
    BOOST_TEST(!fs::exists(w.partial_path()));
  }
  BOOST_REQUIRE(fs::exists(final_path));
  File f(final_path);

  BOOST_TEST(int_attr(f.id, "schema_version") == kSchemaVersion);
  BOOST_TEST(str_attr1(f.id, "run_id") == "ab12cd34ef56");
  BOOST_TEST(str_attr1(f.id, "config") == "[model]\nhidden = 8\n");
  BOOST_TEST(int_attr(f.id, "seed") == 7);
  BOOST_TEST(int_attr(f.id, "index") == 3);
  BOOST_TEST(str_attr1(f.id, "status") == "completed");
  BOOST_TEST(str_attr1(f.id, "error") == "");
  BOOST_TEST(std::regex_match(str_attr1(f.id, "end_time"), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));
  BOOST_TEST(std::regex_match(str_attr1(f.id, "start_time"), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));
  BOOST_TEST(str_attr1(f.id, "note.classes") == "cat,dog");

  // Row columns.
  BOOST_TEST(ints(f.id, "metrics/epoch") == x.epoch);
  BOOST_TEST(ints(f.id, "metrics/step") == x.step);
  const auto names = ds_str_attr(f.id, "metrics/phase", "phase_names");
  const auto codes = ints(f.id, "metrics/phase");
  BOOST_REQUIRE(codes.size() == x.phase.size());
  for (std::size_t i = 0; i < codes.size(); ++i) BOOST_TEST(names.at(static_cast<std::size_t>(codes[i])) == x.phase[i]);

  // Metrics: values with NaN where not logged, extendible, chunked, gzip, epoch scale attached.
  hid_t epoch = H5Dopen2(f.id, "metrics/epoch", H5P_DEFAULT);
  BOOST_TEST(H5DSis_scale(epoch) > 0);
  char scale_name[16] = {};
  H5DSget_scale_name(epoch, scale_name, sizeof scale_name);
  BOOST_TEST(std::string(scale_name) == "epoch");
  BOOST_TEST(x.metrics.size() == 3u);
  for (const auto& [name, want] : x.metrics) {
    const std::string p = "metrics/" + name;
    check_values(doubles(f.id, p), want, p);
    BOOST_TEST(stored_type(f.id, p) == "f64");
    std::vector<hsize_t> maxdims;
    shape(f.id, p, &maxdims);
    BOOST_TEST(maxdims.at(0) == H5S_UNLIMITED);
    hid_t ds = H5Dopen2(f.id, p.c_str(), H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(ds);
    BOOST_TEST(H5Pget_layout(dcpl) == H5D_CHUNKED);
    bool has_gzip = false;
    for (int i = 0; i < H5Pget_nfilters(dcpl); ++i) {
      unsigned flags = 0, level = 0;
      std::size_t n = 1;
      if (H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &n, &level, 0, nullptr, nullptr) == H5Z_FILTER_DEFLATE)
        has_gzip = level == 4;
    }
    BOOST_TEST(has_gzip, p << " is gzip level 4");
    BOOST_TEST(H5DSis_attached(ds, epoch, 0) > 0, p << " has the epoch scale attached");
    H5Pclose(dcpl);
    H5Dclose(ds);
  }
  BOOST_TEST(std::isnan(doubles(f.id, "metrics/val.acc").at(0)));  // backfilled before its first row
  H5Dclose(epoch);

  // Tensors: replaced value, dtypes, dims.
  BOOST_TEST(shape(f.id, "tensors/weights") == (std::vector<hsize_t>{3, 4}));
  BOOST_TEST(stored_type(f.id, "tensors/weights") == "f64");
  check_values(doubles(f.id, "tensors/weights"), as_doubles(x.weights), "weights");
  BOOST_TEST(ds_str_attr(f.id, "tensors/weights", "dims") == (std::vector<std::string>{"out", "in"}));
  BOOST_TEST(shape(f.id, "tensors/mask") == (std::vector<hsize_t>{3, 4}));
  BOOST_TEST(stored_type(f.id, "tensors/mask") == "u8");
  check_values(doubles(f.id, "tensors/mask"), as_doubles(x.mask), "mask");
  BOOST_TEST(H5Aexists_by_name(f.id, "tensors/mask", "dims", H5P_DEFAULT) == 0);
  BOOST_TEST(stored_type(f.id, "tensors/counts") == "i64");
  check_values(doubles(f.id, "tensors/counts"), as_doubles(x.counts), "counts");
  check_values(doubles(f.id, "tensors/routing/layer0"), {1, 0, 0, 1}, "routing/layer0");

  // Appended: [n, 2, 3] float32, growing along epoch.
  std::vector<hsize_t> maxdims;
  BOOST_TEST(shape(f.id, "tensors/gates", &maxdims) == (std::vector<hsize_t>{3, 2, 3}));
  BOOST_TEST(maxdims.at(0) == H5S_UNLIMITED);
  BOOST_TEST(stored_type(f.id, "tensors/gates") == "f32");
  check_values(doubles(f.id, "tensors/gates"), as_doubles(torch::stack(x.gates).to(torch::kFloat)), "gates");
  BOOST_TEST(ds_str_attr(f.id, "tensors/gates", "dims") == (std::vector<std::string>{"epoch", "expert", "slot"}));

  // What `modlab show` and the scheduler read back.
  const auto s = read_run_summary(final_path);
  BOOST_REQUIRE(s.has_value());
  BOOST_TEST(s->run_id == "ab12cd34ef56");
  BOOST_TEST(s->seed == 7);
  BOOST_TEST(s->index == 3);
  BOOST_TEST(s->status == "completed");
  BOOST_TEST(s->config == sample_attrs().at("config"));
  BOOST_TEST(s->file == final_path);
  BOOST_TEST(s->final_metrics.size() == 3u);
  for (const auto& [name, v] : x.metrics) {
    auto last = std::find_if(v.rbegin(), v.rend(), [](double d) { return !std::isnan(d); });
    BOOST_TEST(s->final_metrics.at(name) == *last, name);
  }
  BOOST_TEST(std::isnan(x.metrics.at("loss").back()));  // so the above really skipped a NaN tail
}

BOOST_AUTO_TEST_CASE(history_mirrors_what_was_written) {
  TempDir dir;
  RunWriter w(dir / "run.h5", sample_attrs(), sample_ints());
  const Written x = write_sample(w);
  const RunHistory& h = w.history();
  BOOST_TEST(h.epoch == x.epoch);
  BOOST_TEST(h.step == x.step);
  BOOST_TEST(h.phase == x.phase);
  BOOST_REQUIRE(h.metrics.size() == x.metrics.size());
  for (const auto& [name, v] : x.metrics) check_values(h.metrics.at(name), v, "history " + name);
  const auto& gates = h.appended.at("gates");
  BOOST_TEST(gates.first == (std::vector<std::string>{"expert", "slot"}));
  BOOST_REQUIRE(gates.second.size() == x.gates.size());
  for (std::size_t i = 0; i < x.gates.size(); ++i) BOOST_TEST(torch::equal(gates.second[i], x.gates[i]));
  BOOST_TEST(h.notes.at("classes") == "cat,dog");
}

BOOST_AUTO_TEST_CASE(finished_files_carry_a_checksum_that_catches_any_changed_byte) {
  TempDir dir;
  const std::string p = dir / "run.h5";
  {
    RunWriter w(p, sample_attrs(), sample_ints());
    write_sample(w);
    w.finish("completed");
  }
  BOOST_TEST(run_file_checksum_problem(p) == "");
  { File f(p); }  // HDF5 skips the 512-byte user block the checksum lives in
  std::ifstream in(p, std::ios::binary);
  std::string block(512, '\0');
  in.read(block.data(), 512);
  BOOST_TEST(block.rfind("modlab run file checksum 1\ncrc32 ", 0) == 0u, block);
  const auto size = fs::file_size(p);
  auto poke = [&](std::uintmax_t at, const std::string& bytes) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(at));
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  };
  fs::copy_file(p, dir / "good.h5");
  BOOST_TEST(read_run_summary(p).has_value());
  poke(size / 2, std::string(64, '\x5a'));  // 64 bytes anywhere after the block
  BOOST_TEST(run_file_checksum_problem(p).find("its contents changed after it was written") == 0u,
             run_file_checksum_problem(p));
  // Changed bytes never reach HDF5, whose reader can crash on them (fuzz/regressions/run_file).
  BOOST_TEST(!read_run_summary(p).has_value());
  fs::copy_file(dir / "good.h5", p, fs::copy_options::overwrite_existing);
  fs::resize_file(p, size - 100);
  BOOST_TEST(run_file_checksum_problem(p).find("(truncated or appended to)") != std::string::npos,
             run_file_checksum_problem(p));
  fs::copy_file(dir / "good.h5", p, fs::copy_options::overwrite_existing);
  poke(0, std::string(16, '\0'));  // no seal: a file from before run files were sealed
  BOOST_TEST(run_file_checksum_problem(p) == "no checksum");
}

BOOST_AUTO_TEST_CASE(partial_and_rename_semantics) {
  TempDir dir;
  const std::string p = dir / "a.h5";
  {  // destroyed without finish: .partial stays, status running, rows that were flushed are there
    RunWriter w(p, sample_attrs(), sample_ints());
    w.begin_row(0, 1, "train");
    w.scalar("loss", 0.25);
  }
  BOOST_TEST(!fs::exists(p));
  BOOST_REQUIRE(fs::exists(p + ".partial"));
  {
    File f(p + ".partial");
    BOOST_TEST(str_attr1(f.id, "status") == "running");
    check_values(doubles(f.id, "metrics/loss"), {0.25}, "loss");
  }
  auto s = read_run_summary(p + ".partial");
  BOOST_REQUIRE(s.has_value());
  BOOST_TEST(s->status == "running");

  {  // a stale .partial is replaced; "interrupted" keeps the .partial name
    RunWriter w(p, sample_attrs(), sample_ints());
    w.begin_row(0, 1, "train");
    w.scalar("acc", 0.5);
    w.finish("interrupted");
    BOOST_CHECK_THROW(w.scalar("acc", 1.0), OutputError);
    BOOST_CHECK_THROW(w.finish("completed"), OutputError);
  }
  BOOST_TEST(!fs::exists(p));
  {
    File f(p + ".partial");
    BOOST_TEST(str_attr1(f.id, "status") == "interrupted");
    BOOST_TEST(H5Lexists(f.id, "metrics/loss", H5P_DEFAULT) == 0);  // the stale file is gone
    check_values(doubles(f.id, "metrics/acc"), {0.5}, "acc");
  }

  // "failed" renames, replacing an existing final file.
  { std::ofstream(p) << "old contents"; }
  {
    RunWriter w(p, sample_attrs(), sample_ints());
    w.begin_row(0, 1, "train");
    w.scalar("loss", 3.0);
    w.finish("failed", "diverged: loss is NaN");
  }
  BOOST_TEST(!fs::exists(p + ".partial"));
  File f(p);
  BOOST_TEST(str_attr1(f.id, "status") == "failed");
  BOOST_TEST(str_attr1(f.id, "error") == "diverged: loss is NaN");
  s = read_run_summary(p);
  BOOST_REQUIRE(s.has_value());
  BOOST_TEST(s->status == "failed");
  BOOST_TEST(s->error == "diverged: loss is NaN");
  BOOST_TEST(s->final_metrics.at("loss") == 3.0);

  // Missing and corrupt files give nullopt.
  BOOST_TEST(!read_run_summary(dir / "missing.h5").has_value());
  { std::ofstream(dir / "corrupt.h5") << std::string(4096, 'x'); }
  BOOST_TEST(!read_run_summary(dir / "corrupt.h5").has_value());
}

namespace {
// Everything a history rebuilds: every metrics/tensors dataset (type, shape, values) and the root
// note attributes, as comparable text.
std::map<std::string, std::string> content(const std::string& path) {
  File f(path);
  std::map<std::string, std::string> out;
  for (const std::string group : {"metrics", "tensors"}) {
    hid_t g = H5Gopen2(f.id, group.c_str(), H5P_DEFAULT);
    H5G_info_t info;
    H5Gget_info(g, &info);
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      char name[256] = {};
      H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
      const std::string p = group + "/" + name;
      std::ostringstream os;
      os << stored_type(f.id, p) << " [";
      for (auto d : shape(f.id, p)) os << d << ",";
      os << "]";
      for (double v : doubles(f.id, p)) os << " " << v;
      out[p] = os.str();
    }
    H5Gclose(g);
  }
  out["phase_names"] = "";
  for (const auto& n : ds_str_attr(f.id, "metrics/phase", "phase_names")) out["phase_names"] += n + ";";
  out["note.classes"] = str_attr1(f.id, "note.classes");
  return out;
}
}  // namespace

BOOST_AUTO_TEST_CASE(resume_from_history_rebuilds_identical_content) {
  TempDir dir;
  const std::string a = dir / "a.h5", b = dir / "b.h5";
  RunHistory h;
  {
    RunWriter w(a, sample_attrs(), sample_ints());
    write_sample(w, 2);
    h = w.history();
  }  // crashed run: a.h5.partial stays
  {
    RunWriter w(b, sample_attrs(), sample_ints(), &h);
    BOOST_TEST(w.history().epoch == h.epoch);
  }
  const auto want = content(a + ".partial");
  const auto got = content(b + ".partial");
  for (const auto& [k, v] : want) {
    if (k == "tensors/weights" || k == "tensors/mask" || k == "tensors/counts") continue;  // tensor() is not history
    BOOST_TEST(got.count(k) == 1u, k << " rebuilt");
    if (got.count(k)) BOOST_TEST(got.at(k) == v, k);
  }

  // Resuming in place (same path) then continuing: the new rows follow the old ones.
  {
    RunWriter w(a, sample_attrs(), sample_ints(), &h);
    w.begin_row(2, 300, "train");
    w.scalar("loss", 1.0 / 3);
    w.append("gates", torch::ones({2, 3}));
    w.finish("completed");
  }
  File f(a);
  auto loss = doubles(f.id, "metrics/loss");
  auto want_loss = h.metrics.at("loss");
  want_loss.push_back(1.0 / 3);
  check_values(loss, want_loss, "resumed loss");
  auto want_acc = h.metrics.at("val.acc");
  want_acc.push_back(kNaN);
  check_values(doubles(f.id, "metrics/val.acc"), want_acc, "resumed val.acc");
  BOOST_TEST(shape(f.id, "tensors/gates") == (std::vector<hsize_t>{3, 2, 3}));
}

BOOST_AUTO_TEST_CASE(swmr_reader_sees_flushed_rows) {
  TempDir dir;
  const std::string p = dir / "live.h5";
  RunWriter w(p, sample_attrs(), sample_ints());
  for (int e = 0; e < 3; ++e) {
    w.begin_row(e, e, "train");
    w.scalar("loss", 10.0 - e);
  }
  w.flush();

  // Another process is how it is used (a notebook watching a run): h5py in SWMR-read mode, kept
  // open while the writer adds rows and a new metric (which reopens the file outside SWMR).
  if (!python_has("h5py")) {
    BOOST_TEST_MESSAGE("skipping the SWMR reader check: /usr/bin/python3 cannot import h5py");
    return;
  }
  const std::string reader = "/usr/bin/python3 " MODLAB_TEST_SOURCE_DIR "/unit/check_h5_layout.py --live " +
                             w.partial_path() + " " + dir.path.string() + " &";
  BOOST_REQUIRE(std::system(reader.c_str()) == 0);
  auto wait_for = [&](const std::string& name) {
    for (int i = 0; i < 1200 && !fs::exists(dir / name); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream in(dir / name);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  BOOST_TEST(wait_for("first.json") == "[10.0, 9.0, 8.0]");

  w.begin_row(3, 3, "train");
  w.scalar("loss", 7.0);
  w.scalar("acc", 0.5);
  w.tensor("final", torch::ones({2}));
  w.flush();
  { std::ofstream(dir / "go") << ""; }
  BOOST_TEST(wait_for("second.json") == "[10.0, 9.0, 8.0, 7.0]");
  w.finish("completed");
}

// A SWMR writer never reuses freed file space, so a rewritten compressed chunk would leave its old
// copy behind at every flush. Flushing after every row must keep the file near its data size.
BOOST_AUTO_TEST_CASE(flushing_every_row_leaves_no_dead_space) {
  TempDir dir;
  const std::string p = dir / "long.h5";
  constexpr int kRows = 400, kMetrics = 10;
  RunWriter w(p, sample_attrs(), sample_ints());
  for (int r = 0; r < kRows; ++r) {
    w.begin_row(r, r, "train");
    for (int m = 0; m < kMetrics; ++m) w.scalar("m" + std::to_string(m), std::sin(0.1 * r + m));
    w.append("usage", torch::tensor(static_cast<double>(r), torch::kHalf));  // 0-d, half: stored as f32 [n]
    w.flush();
  }
  // Raw data is 400 rows x 13 columns x 8 bytes ~ 41 KB; rewriting gzip chunks made it ~2 MB.
  const auto partial_size = fs::file_size(w.partial_path());
  BOOST_TEST(partial_size < 256u * 1024u, "live file is " << partial_size << " bytes");
  w.finish("completed");
  BOOST_TEST(fs::file_size(p) < 256u * 1024u);
  File f(p);
  BOOST_TEST(shape(f.id, "tensors/usage") == (std::vector<hsize_t>{kRows}));
  BOOST_TEST(stored_type(f.id, "tensors/usage") == "f32");
  BOOST_TEST(doubles(f.id, "tensors/usage").at(kRows - 1) == static_cast<double>(static_cast<at::Half>(kRows - 1)));
  BOOST_TEST(doubles(f.id, "metrics/m3").at(7) == std::sin(0.1 * 7 + 3));
}

BOOST_AUTO_TEST_CASE(sweep_index_round_trip_and_external_links) {
  TempDir dir;
  fs::create_directories(dir.path / "runs");
  std::vector<RunSummary> runs;
  for (int i = 0; i < 3; ++i) {
    RunSummary r;
    r.run_id = "run" + std::to_string(i);
    r.index = i;
    r.seed = 100 + i;
    r.params = {{"model.hidden", std::to_string(8 << i)}, {"train.optimizer", "\"adam\""}};
    if (i < 2) {  // two finished runs, one that never started
      r.file = "runs/" + r.run_id + ".h5";
      RunWriter w(dir / r.file, {{"run_id", r.run_id}}, {{"seed", r.seed}});
      w.begin_row(0, 1, "val");
      w.scalar("val.acc", 0.5 + i);
      if (i == 1) w.scalar("val.loss", 0.25);
      w.finish(i == 0 ? "completed" : "failed", i == 0 ? "" : "out of memory");
      auto s = read_run_summary(dir / r.file);
      BOOST_REQUIRE(s.has_value());
      r.status = s->status;
      r.error = s->error;
      r.final_metrics = s->final_metrics;
    } else {
      r.status = "pending";
    }
    runs.push_back(r);
  }
  const std::vector<std::string> varied = {"model.hidden", "train.optimizer"};
  modlab::runner::write_sweep_index(dir.path.string(), "demo", "sweeps/demo.toml", "[run]\nname = \"demo\"\n", varied, runs);
  modlab::runner::write_sweep_index(dir.path.string(), "demo", "sweeps/demo.toml", "[run]\nname = \"demo\"\n", varied,
                                    runs);  // rewriting replaces it
  BOOST_TEST(!fs::exists(dir / "sweep.h5.tmp." + std::to_string(::getpid())));

  std::vector<std::string> keys;
  const auto back = modlab::runner::read_sweep_index(dir.path.string(), &keys);
  BOOST_TEST(keys == varied);
  BOOST_REQUIRE(back.size() == runs.size());
  for (std::size_t i = 0; i < runs.size(); ++i) {
    BOOST_TEST(back[i].run_id == runs[i].run_id);
    BOOST_TEST(back[i].index == runs[i].index);
    BOOST_TEST(back[i].seed == runs[i].seed);
    BOOST_TEST(back[i].status == runs[i].status);
    BOOST_TEST(back[i].error == runs[i].error);
    BOOST_TEST(back[i].file == runs[i].file);
    BOOST_TEST(back[i].params == runs[i].params);
    BOOST_TEST(back[i].final_metrics == runs[i].final_metrics);  // NaN cells are dropped
  }
  BOOST_TEST(back[0].final_metrics.count("val.loss") == 0u);
  BOOST_TEST(back[1].final_metrics.at("val.loss") == 0.25);

  // Links resolve from another working directory, with the sweep file opened by absolute and by
  // relative path: HDF5 looks for a relative target beside the file holding the link.
  const fs::path old_cwd = fs::current_path();
  for (const bool relative : {false, true}) {
    fs::current_path(relative ? dir.path.parent_path() : fs::path("/"));
    const std::string sweep = relative ? (dir.path.filename() / "sweep.h5").string() : dir / "sweep.h5";
    {
      File f(sweep);
      BOOST_TEST(str_attr1(f.id, "sweep_name") == "demo");
      BOOST_TEST(str_attr1(f.id, "sweep_toml") == "[run]\nname = \"demo\"\n");
      BOOST_TEST(str_attr1(f.id, "modlab_version") == MODLAB_VERSION);
      BOOST_TEST(int_attr(f.id, "schema_version") == kSchemaVersion);
      H5L_info_t info;
      BOOST_REQUIRE(H5Lget_info(f.id, "runs/run0", &info, H5P_DEFAULT) >= 0);
      BOOST_TEST(info.type == H5L_TYPE_EXTERNAL);
      BOOST_TEST(H5Lexists(f.id, "runs/run2", H5P_DEFAULT) == 0);  // no file, no link
      check_values(doubles(f.id, "runs/run1/metrics/val.acc"), {1.5}, "through the link");
      BOOST_TEST(shape(f.id, "summary") == (std::vector<hsize_t>{3}));
    }
    fs::current_path(old_cwd);
  }

  check_output_error([&] { modlab::runner::read_sweep_index(dir / "nowhere"); }, dir / "nowhere");
}

BOOST_AUTO_TEST_CASE(errors_name_the_path) {
  TempDir dir;
  const std::string missing = dir / "no_such_dir/run.h5";
  check_output_error([&] { RunWriter w(missing, {}, {}); }, missing + ".partial");
  fs::create_directories(dir.path / "is_a_dir.h5");
  check_output_error([&] { RunWriter w(dir / "is_a_dir.h5", {}, {}); }, dir / "is_a_dir.h5");
  check_output_error([&] { modlab::runner::write_sweep_index(dir / "no_such_dir", "s", "f", "", {}, {}); },
                     dir / "no_such_dir");

  RunWriter w(dir / "run.h5", {}, {});
  check_output_error([&] { w.scalar("loss", 1.0); }, "before the first begin_row");
  w.begin_row(0, 0, "train");
  check_output_error([&] { w.scalar("train/loss", 1.0); }, "'train/loss'");
  check_output_error([&] { w.scalar("epoch", 1.0); }, "reserved");
  check_output_error([&] { w.tensor("a//b", torch::ones({1})); }, "'a//b'");
  check_output_error([&] { w.tensor("..", torch::ones({1})); }, "'..'");
  check_output_error([&] { w.tensor("m", torch::ones({2, 2}), {"x"}); }, "rank 2");
  w.append("g", torch::ones({2}));
  check_output_error([&] { w.append("g", torch::ones({3})); }, "tensors/g");
  check_output_error([&] { w.tensor("g", torch::ones({2})); }, "already appended");
  w.finish("completed");
}

BOOST_AUTO_TEST_CASE(python_readers_see_the_documented_layout) {
  if (!python_has("h5py")) {
    BOOST_TEST_MESSAGE("skipping the h5py layout check: /usr/bin/python3 cannot import h5py");
    return;
  }
  TempDir dir;
  fs::create_directories(dir.path / "runs");
  const std::string run_file = "runs/ab12cd34ef56.h5";
  Written x;
  {
    RunWriter w(dir / run_file, sample_attrs(), sample_ints());
    x = write_sample(w);
    w.finish("completed");
  }
  RunSummary s = *read_run_summary(dir / run_file);
  s.file = run_file;
  s.params = {{"model.hidden", "8"}};
  modlab::runner::write_sweep_index(dir.path.string(), "demo", "demo.toml", "[run]\n", {"model.hidden"}, {s});

  // Expectations for the script, computed here from what was written.
  std::ofstream js(dir / "expect.json");
  auto num = [](double v) { std::ostringstream o; o.precision(17); if (std::isnan(v)) o << "null"; else o << v; return o.str(); };
  js << "{\"sweep_dir\": \"" << dir.path.string() << "\", \"run_file\": \"" << run_file << "\", \"run_id\": \"ab12cd34ef56\",";
  js << " \"epoch\": [";
  for (std::size_t i = 0; i < x.epoch.size(); ++i) js << (i ? ", " : "") << x.epoch[i];
  js << "], \"phase\": [";
  for (std::size_t i = 0; i < x.phase.size(); ++i) js << (i ? ", " : "") << "\"" << x.phase[i] << "\"";
  js << "], \"metrics\": {";
  bool first = true;
  for (const auto& [name, v] : x.metrics) {
    js << (first ? "" : ", ") << "\"" << name << "\": [";
    for (std::size_t i = 0; i < v.size(); ++i) js << (i ? ", " : "") << num(v[i]);
    js << "]";
    first = false;
  }
  js << "}, \"gates_shape\": [" << x.gates.size() << ", 2, 3], \"weights_sum\": " << num(x.weights.sum().item<double>()) << "}";
  js.close();

  const std::string cmd = "/usr/bin/python3 " MODLAB_TEST_SOURCE_DIR "/unit/check_h5_layout.py " + (dir / "expect.json");
  BOOST_TEST(std::system(cmd.c_str()) == 0, "check_h5_layout.py passed (see its output above)");
}
