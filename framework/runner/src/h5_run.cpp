// The run file: see docs/output-format.md for the layout.
//
// State machine: the file is either in SWMR mode (readers may have it open; rows can be appended
// to existing datasets) or in define mode (opened RDWR normally; objects and attributes can be
// created). Anything that creates an object or writes an attribute switches to define mode;
// flush() switches back to SWMR. Rows live in the in-memory history and are written by sync(),
// which rewrites only rows changed since the last sync.
//
// Compression: a SWMR writer never reuses file space it frees, and every flush rewrites the last
// chunk of each metric; with gzip the rewritten chunk changes size and moves, so a long run would
// leave megabytes of dead space. The live .partial therefore keeps metric columns uncompressed
// (rewritten in place) and appended tensors one chunk per row (written once). finish() writes a
// compact copy: metrics rebuilt from the history with gzip, tensors/ copied with H5Ocopy.
#include "h5_raii.hpp"

#include <modlab/errors.hpp>
#include <modlab/runner/h5.hpp>

#include <fcntl.h>
#include <hdf5_hl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>

namespace modlab::runner {
namespace h5_detail {

// How a tensor is stored: float32/float64 stay, other floats become float32, integers int64, bool uint8.
struct Storage {
  torch::ScalarType dtype;
  hid_t mem;
  hid_t file;
};

}  // namespace h5_detail

namespace {

using h5_detail::Storage;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr hsize_t kRowChunk = 1024;              // rows per metrics chunk
constexpr std::size_t kChunkBytes = 1 << 20;     // target chunk size for tensors
constexpr hsize_t kUserBlock = 512;              // finished files: the checksum block before the HDF5 data
constexpr const char* kSealMagic = "modlab run file checksum 1\n";
const std::set<std::string> kRowColumns = {"epoch", "step", "phase"};

// Metric names are link names in the flat metrics/ group (one xarray dimension); tensor names may
// nest with '/' (tensors/gates/layer0), each part a plain link name.
void check_name(const std::string& kind, const std::string& name) {
  const bool nested = kind == "tensor";
  bool ok = !name.empty();
  for (std::size_t b = 0; ok && b <= name.size();) {
    const std::size_t e = std::min(name.find('/', b), name.size());
    const std::string part = name.substr(b, e - b);
    ok = !part.empty() && part != "." && part != ".." && (nested || e == name.size());
    b = e + 1;
  }
  if (!ok)
    throw OutputError(kind + " name '" + name + "' is not allowed: it must be non-empty, not '.' or '..', and " +
                      (nested ? "have no empty, '.' or '..' part between '/'" : "contain no '/'"));
}

Storage storage_for(torch::ScalarType t, const std::string& what) {
  if (t == torch::kDouble) return {t, H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE};
  if (t == torch::kFloat || t == torch::kHalf || t == torch::kBFloat16) return {torch::kFloat, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE};
  if (t == torch::kBool) return {torch::kUInt8, H5T_NATIVE_UINT8, H5T_STD_U8LE};
  if (c10::isIntegralType(t, /*includeBool=*/false)) return {torch::kLong, H5T_NATIVE_INT64, H5T_STD_I64LE};
  throw OutputError(what + ": cannot store tensors of type " + std::string(c10::toString(t)));
}

torch::Tensor to_host(const torch::Tensor& v, torch::ScalarType dtype) {
  return v.detach().to(torch::kCPU).to(dtype).contiguous();
}

std::vector<hsize_t> shape_of(const torch::Tensor& t) {
  std::vector<hsize_t> s;
  for (auto d : t.sizes()) s.push_back(static_cast<hsize_t>(d));
  return s;
}

// Chunk shape for a dataset whose leading `rows` axis is chunked whole-row-wise: inner dims full,
// leading dims shrunk until a chunk is about kChunkBytes.
std::vector<hsize_t> chunk_for(std::vector<hsize_t> dims, std::size_t elem) {
  for (auto& d : dims) d = std::max<hsize_t>(d, 1);
  std::size_t bytes = elem;
  for (auto d : dims) bytes *= d;
  for (std::size_t i = 0; i < dims.size() && bytes > kChunkBytes; ++i) {
    const hsize_t keep = std::max<hsize_t>(1, dims[i] / ((bytes + kChunkBytes - 1) / kChunkBytes));
    bytes = bytes / dims[i] * keep;
    dims[i] = keep;
  }
  return dims;
}

h5::Handle chunked_dcpl(const std::vector<hsize_t>& chunk) {
  h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, "cannot create a dataset property list");
  h5::check(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), "cannot set chunking");
  h5::check(H5Pset_shuffle(dcpl.get()), "cannot set the shuffle filter");
  h5::check(H5Pset_deflate(dcpl.get(), 4), "cannot set gzip compression");
  return dcpl;
}

}  // namespace

struct RunWriter::Impl {
  std::string final_path, partial;
  std::string writing;  // the file being written: the .partial, or the compact copy in finish()
  h5::Handle fapl, file, lcpl;  // lcpl: creates the groups of nested tensor names
  bool swmr = false;
  bool closed = false;
  bool compact = false;  // writing the finished copy: gzip metric columns
  std::map<std::string, std::string> attrs;  // root attributes besides schema_version and notes
  std::map<std::string, std::int64_t> int_attrs;
  RunHistory hist;
  std::map<std::string, std::int64_t> phase_code;  // phase name → code, codes 0,1,2...
  std::vector<std::string> phase_names;            // code → phase name
  std::size_t phases_on_disk = 0;
  std::set<std::string> metrics_on_disk;
  std::size_t dirty_from = 0;                      // first row sync() must (re)write
  std::map<std::string, Storage> appended_storage;
  std::set<std::string> appended_on_disk, final_tensors;
  std::map<std::string, h5::Handle> open_datasets;  // cache, emptied on every mode switch

  std::string at(const std::string& obj) const { return "run file '" + writing + "', " + obj; }

  void require_open(const char* op) const {
    if (closed) throw OutputError("run file '" + final_path + "': " + op + " after finish");
  }

  hid_t dataset(const std::string& path) {
    auto it = open_datasets.find(path);
    if (it == open_datasets.end())
      it = open_datasets.emplace(path, h5::Handle(H5Dopen2(file.get(), path.c_str(), H5P_DEFAULT), H5Dclose,
                                                  at(path) + ": cannot open dataset")).first;
    return it->second.get();
  }

  // HDF5 cannot create objects or attributes under SWMR, and there is no way to stop SWMR
  // writing: close and reopen the file normally.
  void define_mode() {
    if (!swmr) return;
    open_datasets.clear();
    file.close(at("/") + ": cannot close before reopening");
    // Live SWMR readers hold a shared lock; the writer stays the only writer, so it skips locking here.
    h5::Handle reopen_fapl(H5Pcopy(fapl.get()), H5Pclose, at("/") + ": cannot copy the file access list");
    h5::check(H5Pset_file_locking(reopen_fapl.get(), false, true), at("/") + ": cannot disable file locking");
    file = h5::Handle(H5Fopen(partial.c_str(), H5F_ACC_RDWR, reopen_fapl.get()), H5Fclose, at("/") + ": cannot reopen");
    swmr = false;
  }

  void swmr_mode() {
    if (swmr) return;
    open_datasets.clear();  // attributes and committed types must not be open; datasets may, but keep it simple
    h5::check(H5Fstart_swmr_write(file.get()), at("/") + ": cannot start SWMR writing");
    swmr = true;
  }

  void root_attr(const std::string& name, const std::string& value) {
    define_mode();
    h5::write_attr(file.get(), name, value, at("/"));
  }

  // An extendible 1-D column under metrics/, with `epoch` attached as its dimension scale.
  void create_column(const std::string& name, hid_t ftype) {
    const std::string path = "metrics/" + name;
    auto space = h5::simple_space({0}, {H5S_UNLIMITED});
    const hsize_t chunk = compact ? std::clamp<hsize_t>(hist.epoch.size(), 1, kRowChunk) : kRowChunk;
    auto dcpl = compact ? chunked_dcpl({chunk}) : h5::Handle(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, at(path));
    if (!compact) h5::check(H5Pset_chunk(dcpl.get(), 1, &chunk), at(path) + ": cannot set chunking");
    if (ftype == H5T_IEEE_F64LE)
      h5::check(H5Pset_fill_value(dcpl.get(), H5T_NATIVE_DOUBLE, &kNaN), at(path) + ": cannot set the fill value");
    h5::Handle ds(H5Dcreate2(file.get(), path.c_str(), ftype, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                  H5Dclose, at(path) + ": cannot create dataset");
    if (name == "epoch") {
      h5::check(H5DSset_scale(ds.get(), "epoch"), at(path) + ": cannot make it a dimension scale");
    } else {
      h5::check(H5DSattach_scale(ds.get(), dataset("metrics/epoch"), 0), at(path) + ": cannot attach the epoch scale");
    }
  }

  void write_column(const std::string& name, hid_t mtype, const void* data, std::size_t elem, std::size_t n) {
    const std::string path = "metrics/" + name;
    const hid_t ds = dataset(path);
    const hsize_t dims[1] = {n};
    h5::check(H5Dset_extent(ds, dims), at(path) + ": cannot extend dataset");
    if (n <= dirty_from) return;
    const hsize_t start[1] = {dirty_from}, count[1] = {n - dirty_from};
    h5::Handle fspace(H5Dget_space(ds), H5Sclose, at(path));
    h5::check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), at(path));
    auto mspace = h5::simple_space({count[0]});
    h5::check(H5Dwrite(ds, mtype, mspace.get(), fspace.get(), H5P_DEFAULT, static_cast<const char*>(data) + dirty_from * elem),
              at(path) + ": cannot write rows");
  }

  // Writes rows [dirty_from, n) of every column; new metric datasets and phase names first.
  void sync() {
    const std::size_t n = hist.epoch.size();
    bool new_metrics = false;
    for (const auto& [name, values] : hist.metrics) new_metrics |= !metrics_on_disk.count(name);
    if (new_metrics || phases_on_disk != phase_names.size()) {
      define_mode();
      for (const auto& [name, values] : hist.metrics) {
        if (metrics_on_disk.count(name)) continue;
        create_column(name, H5T_IEEE_F64LE);
        metrics_on_disk.insert(name);
        dirty_from = 0;  // a new column needs every row, NaN before its first value
      }
      if (phases_on_disk != phase_names.size()) {
        h5::write_attr(dataset("metrics/phase"), "phase_names", phase_names, at("metrics/phase"));
        phases_on_disk = phase_names.size();
      }
    }
    if (dirty_from >= n) return;
    std::vector<std::int64_t> codes;
    for (const auto& p : hist.phase) codes.push_back(phase_code.at(p));
    write_column("epoch", H5T_NATIVE_INT64, hist.epoch.data(), sizeof(std::int64_t), n);
    write_column("step", H5T_NATIVE_INT64, hist.step.data(), sizeof(std::int64_t), n);
    write_column("phase", H5T_NATIVE_INT64, codes.data(), sizeof(std::int64_t), n);
    for (const auto& [name, values] : hist.metrics) write_column(name, H5T_NATIVE_DOUBLE, values.data(), sizeof(double), n);
    dirty_from = n;
  }

  void add_phase(const std::string& p) {
    if (phase_code.count(p)) return;
    phase_code[p] = static_cast<std::int64_t>(phase_names.size());
    phase_names.push_back(p);
  }

  void write_dims(hid_t ds, const std::string& path, const std::vector<std::string>& dims) {
    if (!dims.empty()) h5::write_attr(ds, "dims", dims, at(path));
  }

  // Writes appended tensor number `index` of `name` (creating the dataset on the first one).
  void write_appended(const std::string& name, const torch::Tensor& t, std::size_t index) {
    const std::string path = "tensors/" + name;
    const Storage& st = appended_storage.at(name);
    std::vector<hsize_t> shape = shape_of(t);
    if (!appended_on_disk.count(name)) {
      define_mode();
      std::vector<hsize_t> dims{0}, maxdims{H5S_UNLIMITED};
      for (auto d : shape) {
        dims.push_back(d);
        maxdims.push_back(d == 0 ? H5S_UNLIMITED : d);  // a chunk dimension may not exceed a fixed 0
      }
      std::vector<hsize_t> row(dims);
      row[0] = 1;  // one chunk per append: written once, never rewritten (see the top of this file)
      auto chunk = chunk_for(row, H5Tget_size(st.file));
      auto space = h5::simple_space(dims, maxdims);
      auto dcpl = chunked_dcpl(chunk);
      h5::Handle ds(H5Dcreate2(file.get(), path.c_str(), st.file, space.get(), lcpl.get(), dcpl.get(), H5P_DEFAULT),
                    H5Dclose, at(path) + ": cannot create dataset");
      const auto& user_dims = hist.appended.at(name).first;
      if (!user_dims.empty()) {
        std::vector<std::string> d{"epoch"};
        d.insert(d.end(), user_dims.begin(), user_dims.end());
        write_dims(ds.get(), path, d);
      }
      appended_on_disk.insert(name);
    }
    const hid_t ds = dataset(path);
    std::vector<hsize_t> dims{index + 1}, start{index}, count{1};
    dims.insert(dims.end(), shape.begin(), shape.end());
    start.resize(dims.size(), 0);
    count.insert(count.end(), shape.begin(), shape.end());
    h5::check(H5Dset_extent(ds, dims.data()), at(path) + ": cannot extend dataset");
    if (t.numel() == 0) return;
    h5::Handle fspace(H5Dget_space(ds), H5Sclose, at(path));
    h5::check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), at(path));
    auto mspace = h5::simple_space(count);
    h5::check(H5Dwrite(ds, st.mem, mspace.get(), fspace.get(), H5P_DEFAULT, t.data_ptr()), at(path) + ": cannot write");
  }

  // A new file with the root attributes, metrics/ and its row columns (and an empty tensors/ for
  // the live file; the compact copy gets tensors/ by H5Ocopy).
  void create_file(const std::string& path) {
    writing = path;
    // The compact copy reserves a user block for its checksum (seal_run_file).
    h5::Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose, "cannot create a file creation property list");
    if (compact) h5::check(H5Pset_userblock(fcpl.get(), kUserBlock), "cannot reserve the run file's user block");
    file = h5::Handle(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()), H5Fclose,
                      "cannot create run file '" + path + "'");
    const hid_t f = file.get();
    h5::write_attr(f, "schema_version", std::int64_t{kSchemaVersion}, at("/"));
    for (const auto& [k, v] : attrs) h5::write_attr(f, k, v, at("/"));
    for (const auto& [k, v] : int_attrs) h5::write_attr(f, k, v, at("/"));
    for (const auto& [k, v] : hist.notes) h5::write_attr(f, "note." + k, v, at("/"));
    for (const char* g : {"metrics", "tensors"})
      if (!compact || g == std::string("metrics"))
        h5::Handle(H5Gcreate2(f, g, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, at(g) + ": cannot create group");
    metrics_on_disk.clear();
    phases_on_disk = 0;
    dirty_from = 0;
    for (const char* c : {"epoch", "step", "phase"}) create_column(c, H5T_STD_I64LE);
  }

  // The finished file, written beside the .partial (closed by now) and renamed by finish().
  void write_compact(const std::string& tmp) {
    h5::Handle src(H5Fopen(partial.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, at("/") + ": cannot reopen to finish");
    compact = true;
    create_file(tmp);
    sync();
    h5::check(H5Ocopy(src.get(), "tensors", file.get(), "tensors", H5P_DEFAULT, H5P_DEFAULT),
              "run file '" + tmp + "': cannot copy tensors/ from '" + partial + "'");
    open_datasets.clear();
    file.close("cannot close run file '" + tmp + "'");
  }

  void register_appended(const std::string& name, const torch::Tensor& value, const std::vector<std::string>& dims) {
    check_name("tensor", name);
    if (final_tensors.count(name))
      throw OutputError(at("tensors/" + name) + ": already written with tensor(), cannot append to it");
    if (!dims.empty() && dims.size() != static_cast<std::size_t>(value.dim()))
      throw OutputError(at("tensors/" + name) + ": " + std::to_string(dims.size()) + " dims names for a tensor of rank " +
                        std::to_string(value.dim()));
    appended_storage.emplace(name, storage_for(value.scalar_type(), at("tensors/" + name)));
  }
};

RunWriter::RunWriter(std::string final_path, std::map<std::string, std::string> attributes,
                     std::map<std::string, std::int64_t> int_attributes, const RunHistory* history)
    : impl_(std::make_unique<Impl>()) {
  h5::init();
  Impl& m = *impl_;
  m.final_path = std::move(final_path);
  m.partial = m.writing = m.final_path + ".partial";
  struct stat st {};
  if (::stat(m.final_path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw OutputError("cannot write run file '" + m.final_path + "': it is a directory");
  // A stale .partial (an earlier attempt) is replaced; unlinking first also detaches any reader.
  ::unlink(m.partial.c_str());
  m.fapl = h5::latest_fapl();
  m.lcpl = h5::Handle(H5Pcreate(H5P_LINK_CREATE), H5Pclose, "cannot create a link creation property list");
  h5::check(H5Pset_create_intermediate_group(m.lcpl.get(), 1), "cannot set intermediate group creation");
  m.attrs = std::move(attributes);
  m.attrs.emplace("start_time", h5::iso_now());
  m.attrs["status"] = "running";
  m.attrs.emplace("error", "");
  m.int_attrs = std::move(int_attributes);

  if (history != nullptr) {
    const std::size_t n = history->epoch.size();
    bool ok = history->step.size() == n && history->phase.size() == n;
    for (const auto& [name, v] : history->metrics) ok = ok && v.size() == n;
    if (!ok) throw OutputError(m.at("/") + ": cannot resume from a history whose columns have different lengths");
    for (const auto& [name, v] : history->metrics) check_name("metric", name);
    m.hist = *history;
    for (const auto& p : m.hist.phase) m.add_phase(p);
  }
  m.create_file(m.partial);
  if (history != nullptr) {
    for (auto& [name, entry] : m.hist.appended) {
      if (entry.second.empty()) continue;
      m.register_appended(name, entry.second.front(), entry.first);
      const Storage& s = m.appended_storage.at(name);
      for (std::size_t i = 0; i < entry.second.size(); ++i) {
        entry.second[i] = to_host(entry.second[i], s.dtype).clone();
        m.write_appended(name, entry.second[i], i);
      }
    }
  }
  flush();
}

RunWriter::~RunWriter() {
  if (!impl_ || impl_->closed) return;
  try {
    impl_->sync();
  } catch (const std::exception&) {
    // A destructor must not throw; the .partial keeps what was synced before.
  }
  impl_->open_datasets.clear();
  impl_->file.reset();
}

void RunWriter::begin_row(std::int64_t epoch, std::int64_t step, const std::string& phase) {
  Impl& m = *impl_;
  m.require_open("begin_row");
  m.add_phase(phase);
  m.hist.epoch.push_back(epoch);
  m.hist.step.push_back(step);
  m.hist.phase.push_back(phase);
  for (auto& [name, values] : m.hist.metrics) values.push_back(kNaN);
}

void RunWriter::flush() {
  Impl& m = *impl_;
  m.require_open("flush");
  m.sync();
  m.swmr_mode();
  h5::check(H5Fflush(m.file.get(), H5F_SCOPE_GLOBAL), m.at("/") + ": cannot flush");
}

void RunWriter::scalar(const std::string& name, double value) {
  Impl& m = *impl_;
  m.require_open("scalar");
  const std::size_t n = m.hist.epoch.size();
  if (n == 0) throw OutputError(m.at("metrics/" + name) + ": scalar written before the first begin_row");
  auto it = m.hist.metrics.find(name);
  if (it == m.hist.metrics.end()) {
    check_name("metric", name);
    if (kRowColumns.count(name)) throw OutputError(m.at("metrics/" + name) + ": metric name is reserved for a row column");
    it = m.hist.metrics.emplace(name, std::vector<double>(n, kNaN)).first;
  }
  it->second.back() = value;
  m.dirty_from = std::min(m.dirty_from, n - 1);
}

void RunWriter::tensor(const std::string& name, const torch::Tensor& value, const std::vector<std::string>& dims) {
  Impl& m = *impl_;
  m.require_open("tensor");
  check_name("tensor", name);
  const std::string path = "tensors/" + name;
  if (m.hist.appended.count(name)) throw OutputError(m.at(path) + ": already appended to, cannot also write it with tensor()");
  if (!dims.empty() && dims.size() != static_cast<std::size_t>(value.dim()))
    throw OutputError(m.at(path) + ": " + std::to_string(dims.size()) + " dims names for a tensor of rank " +
                      std::to_string(value.dim()));
  const Storage st = storage_for(value.scalar_type(), m.at(path));
  const torch::Tensor t = to_host(value, st.dtype);
  m.define_mode();
  if (h5::link_exists(m.file.get(), path)) {
    m.open_datasets.erase(path);
    h5::check(H5Ldelete(m.file.get(), path.c_str(), H5P_DEFAULT), m.at(path) + ": cannot replace");
  }
  const auto shape = shape_of(t);
  auto space = h5::simple_space(shape);
  // Chunked + gzip when it can be (not 0-d, no empty axis); masks and gate matrices compress well.
  const bool chunk = !shape.empty() && t.numel() > 0;
  h5::Handle dcpl = chunk ? chunked_dcpl(chunk_for(shape, H5Tget_size(st.file)))
                          : h5::Handle(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, m.at(path));
  h5::Handle ds(H5Dcreate2(m.file.get(), path.c_str(), st.file, space.get(), m.lcpl.get(), dcpl.get(), H5P_DEFAULT),
                H5Dclose, m.at(path) + ": cannot create dataset");
  if (t.numel() > 0) h5::check(H5Dwrite(ds.get(), st.mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()), m.at(path) + ": cannot write");
  m.write_dims(ds.get(), path, dims);
  m.final_tensors.insert(name);
}

void RunWriter::table(const std::string& name, const torch::Tensor& value, const std::vector<std::string>& rows,
                      const std::vector<std::string>& columns) {
  Impl& m = *impl_;
  const std::string path = "tensors/tables/" + name;
  if (value.dim() != 2 || value.size(0) != static_cast<std::int64_t>(rows.size()) ||
      value.size(1) != static_cast<std::int64_t>(columns.size()))
    throw OutputError(m.at(path) + ": a table of " + std::to_string(rows.size()) + " rows and " +
                      std::to_string(columns.size()) + " columns needs a [rows, columns] tensor");
  tensor("tables/" + name, value.to(torch::kDouble), {"row", "column"});
  h5::Handle ds(H5Dopen2(m.file.get(), path.c_str(), H5P_DEFAULT), H5Dclose, m.at(path) + ": cannot open");
  h5::write_attr(ds.get(), "rows", rows, m.at(path));
  h5::write_attr(ds.get(), "columns", columns, m.at(path));
}

void RunWriter::append(const std::string& name, const torch::Tensor& value, const std::vector<std::string>& dims) {
  Impl& m = *impl_;
  m.require_open("append");
  const std::string path = "tensors/" + name;
  auto it = m.hist.appended.find(name);
  if (it == m.hist.appended.end() || it->second.second.empty()) {
    m.register_appended(name, value, dims);
    it = m.hist.appended.insert_or_assign(name, std::make_pair(dims, std::vector<torch::Tensor>{})).first;
  } else if (value.sizes() != it->second.second.front().sizes()) {
    throw OutputError(m.at(path) + ": appended shape " + c10::str(value.sizes()) + " differs from the first one " +
                      c10::str(it->second.second.front().sizes()));
  }
  auto& list = it->second.second;
  list.push_back(to_host(value, m.appended_storage.at(name).dtype).clone());
  m.write_appended(name, list.back(), list.size() - 1);
}

void RunWriter::note(const std::string& name, const std::string& value) {
  Impl& m = *impl_;
  m.require_open("note");
  m.root_attr("note." + name, value);
  m.hist.notes[name] = value;
}

void RunWriter::set_attribute(const std::string& name, const std::string& value) {
  impl_->require_open("set_attribute");
  impl_->root_attr(name, value);
  impl_->attrs[name] = value;
}

namespace {

/// CRC-32 of the bytes of `fd` from `offset` to its end, and how many there were.
std::pair<std::uint32_t, std::uint64_t> crc_from(int fd, off_t offset, const std::string& path) {
  uLong crc = crc32(0L, Z_NULL, 0);
  std::uint64_t n = 0;
  std::vector<unsigned char> buf(1 << 16);
  for (;;) {
    const ssize_t got = ::pread(fd, buf.data(), buf.size(), offset + static_cast<off_t>(n));
    if (got < 0) throw OutputError("cannot read '" + path + "': " + std::strerror(errno));
    if (got == 0) break;
    crc = crc32(crc, buf.data(), static_cast<uInt>(got));
    n += static_cast<std::uint64_t>(got);
  }
  return {static_cast<std::uint32_t>(crc), n};
}

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

void seal_run_file(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDWR | O_CLOEXEC)};
  if (f.fd < 0) throw OutputError("cannot open '" + path + "' to seal it: " + std::strerror(errno));
  const auto [crc, size] = crc_from(f.fd, static_cast<off_t>(kUserBlock), path);
  char block[kUserBlock] = {};
  std::snprintf(block, sizeof block, "%scrc32 %08x\nbytes %llu\n", kSealMagic, crc, static_cast<unsigned long long>(size));
  if (::pwrite(f.fd, block, sizeof block, 0) != static_cast<ssize_t>(sizeof block) || ::fsync(f.fd) != 0)
    throw OutputError("cannot write the checksum of '" + path + "': " + std::strerror(errno));
}

std::string file_checksum(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) throw OutputError("cannot open '" + path + "': " + std::strerror(errno));
  const auto [crc, size] = crc_from(f.fd, 0, path);
  char text[64];
  std::snprintf(text, sizeof text, "crc32 %08x bytes %llu", crc, static_cast<unsigned long long>(size));
  return text;
}

std::string run_file_checksum_problem(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return std::string("cannot open it: ") + std::strerror(errno);
  char block[kUserBlock + 1] = {};
  if (::pread(f.fd, block, kUserBlock, 0) != static_cast<ssize_t>(kUserBlock) ||
      std::strncmp(block, kSealMagic, std::strlen(kSealMagic)) != 0)
    return "no checksum";
  unsigned crc = 0;
  unsigned long long bytes = 0;
  if (std::sscanf(block + std::strlen(kSealMagic), "crc32 %8x\nbytes %llu", &crc, &bytes) != 2)
    return "its checksum block is damaged";
  const auto [actual, size] = crc_from(f.fd, static_cast<off_t>(kUserBlock), path);
  if (size != bytes)
    return "it has " + std::to_string(size) + " bytes after its checksum block, the checksum was taken over " +
           std::to_string(bytes) + " (truncated or appended to)";
  if (actual != crc) {
    char hex[64];
    std::snprintf(hex, sizeof hex, "crc32 %08x, written %08x", actual, crc);
    return std::string("its contents changed after it was written (") + hex + ")";
  }
  return "";
}

void RunWriter::finish(const std::string& status, const std::string& error) {
  Impl& m = *impl_;
  m.require_open("finish");
  m.sync();  // the .partial is complete (status "running") if anything below fails
  m.open_datasets.clear();
  m.closed = true;
  m.file.close(m.at("/") + ": cannot close");
  m.swmr = false;
  m.attrs["status"] = status;
  m.attrs["error"] = error;
  m.attrs["end_time"] = h5::iso_now();
  const std::string target = status == "interrupted" ? m.partial : m.final_path;
  const std::string tmp = target + ".tmp";
  try {
    m.write_compact(tmp);
    seal_run_file(tmp);
  } catch (...) {
    m.file.reset();
    ::unlink(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw OutputError("cannot rename '" + tmp + "' to '" + target + "': " + reason);
  }
  if (target != m.partial) ::unlink(m.partial.c_str());
}

const RunHistory& RunWriter::history() const { return impl_->hist; }
const std::string& RunWriter::partial_path() const { return impl_->partial; }
const std::string& RunWriter::final_path() const { return impl_->final_path; }

namespace {
herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}
}  // namespace

namespace {

RunTable read_table(hid_t group, const std::string& name, const std::string& at) {
  const std::string where = at + ", tensors/tables/" + name;
  h5::Handle ds(H5Dopen2(group, name.c_str(), H5P_DEFAULT), H5Dclose, where + ": cannot open");
  RunTable t;
  t.name = name;
  t.rows = h5::read_strings_attr(ds.get(), "rows", where);
  t.columns = h5::read_strings_attr(ds.get(), "columns", where);
  t.values.resize(t.rows.size() * t.columns.size());
  h5::Handle space(H5Dget_space(ds.get()), H5Sclose, where);
  if (static_cast<std::size_t>(H5Sget_simple_extent_npoints(space.get())) != t.values.size())
    throw OutputError(where + ": its size does not match its row and column labels");
  if (!t.values.empty())
    h5::check(H5Dread(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.values.data()), where + ": cannot read");
  return t;
}

}  // namespace

std::vector<RunTable> read_run_tables(const std::string& path) {
  h5::Handle file = h5::open_read(path);
  const std::string at = "run file '" + path + "'";
  if (!file) throw OutputError(at + ": cannot open");
  std::vector<RunTable> out;
  if (!h5::link_exists(file.get(), "tensors") || !h5::link_exists(file.get(), "tensors/tables")) return out;
  h5::Handle g(H5Gopen2(file.get(), "tensors/tables", H5P_DEFAULT), H5Gclose, at + ": cannot open tensors/tables");
  std::vector<std::string> names;  // every link below, groups included, in name order
  h5::check(H5Lvisit(g.get(), H5_INDEX_NAME, H5_ITER_INC, collect_name, &names), at + ": cannot list tables");
  for (const auto& name : names) {
    h5::Handle obj(H5Oopen(g.get(), name.c_str(), H5P_DEFAULT), H5Oclose, at + ", tensors/tables/" + name);
    if (H5Iget_type(obj.get()) == H5I_DATASET) out.push_back(read_table(g.get(), name, at));
  }
  return out;
}

std::optional<RunSummary> read_run_summary(const std::string& path, bool checksum_verified) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  if (!checksum_verified) {
    const std::string damage = run_file_checksum_problem(path);
    if (!damage.empty() && damage != "no checksum") return std::nullopt;
  }
  h5::Handle file = h5::open_read(path);
  if (!file) return std::nullopt;
  const std::string at = "run file '" + path + "'";
  const hid_t f = file.get();
  try {
    RunSummary s;
    s.file = path;
    s.run_id = h5::read_string_attr(f, "run_id", at).value_or("");
    s.status = h5::read_string_attr(f, "status", at).value_or("");
    s.error = h5::read_string_attr(f, "error", at).value_or("");
    s.config = h5::read_string_attr(f, "config", at).value_or("");
    s.seed = h5::read_int_attr(f, "seed", at).value_or(0);
    s.index = h5::read_int_attr(f, "index", at).value_or(0);
    if (!h5::link_exists(f, "metrics")) return s;
    h5::Handle g(H5Gopen2(f, "metrics", H5P_DEFAULT), H5Gclose, at + ": cannot open metrics");
    std::vector<std::string> names;
    h5::check(H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, nullptr, collect_name, &names), at + ": cannot list metrics");
    for (const auto& name : names) {
      if (kRowColumns.count(name)) continue;
      h5::Handle ds(H5Dopen2(g.get(), name.c_str(), H5P_DEFAULT), H5Dclose, at + ", metrics/" + name);
      h5::Handle space(H5Dget_space(ds.get()), H5Sclose, at + ", metrics/" + name);
      std::vector<double> v(static_cast<std::size_t>(std::max<hssize_t>(0, H5Sget_simple_extent_npoints(space.get()))));
      if (!v.empty())
        h5::check(H5Dread(ds.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), at + ", metrics/" + name);
      auto last = std::find_if(v.rbegin(), v.rend(), [](double x) { return !std::isnan(x); });
      if (last != v.rend()) s.final_metrics[name] = *last;
    }
    return s;
  } catch (const OutputError&) {
    return std::nullopt;  // readable header but damaged body: as unusable as an unopenable file
  }
}

}  // namespace modlab::runner
