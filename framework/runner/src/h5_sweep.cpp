// sweep.h5: external links to the run files and a compound summary table. See docs/output-format.md.
#include "h5_raii.hpp"

#include <modlab/errors.hpp>
#include <modlab/runner/h5.hpp>

#include <hdf5_hl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>

namespace modlab::runner {
namespace {

// The summary's leading columns, in order; every column (string, int64 or float64) takes 8 bytes
// in memory (a char*, an int64_t or a double), so a row is an array of 8-byte slots.
const std::vector<std::string> kFixedColumns = {"run_id", "index", "seed", "status", "error", "file"};
constexpr std::size_t kSlot = 8;
static_assert(sizeof(char*) == kSlot && sizeof(std::int64_t) == kSlot && sizeof(double) == kSlot);

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// A column name not used yet: metric names may collide with fixed columns or varied keys.
std::string unique_column(std::string name, std::set<std::string>& used) {
  while (used.count(name)) name = "final." + name;
  used.insert(name);
  return name;
}

// ------------------------------------------------------------------- /columns: typed, one per column

/// The TOML type every run's value of a varied key shares ("integer", "float", "boolean",
/// "string"), or "toml" (arrays, tables, mixed types: the literal text is stored).
std::string literal_type(const std::string& v) {
  if (v == "true" || v == "false") return "boolean";
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"' && v.find_first_of("\\\"", 1) == v.size() - 1) return "string";
  if (v.empty() || v.find_first_of("xobXOB_") != std::string::npos) return "toml";
  char* end = nullptr;
  errno = 0;
  (void)std::strtoll(v.c_str(), &end, 10);
  if (*end == '\0' && errno == 0 && v.find_first_of(".eEin") == std::string::npos) return "integer";
  (void)std::strtod(v.c_str(), &end);
  if (*end == '\0' && v.find_first_not_of("0123456789+-.eE") == std::string::npos) return "float";
  return "toml";
}

std::string column_type(const std::vector<std::string>& values) {
  std::set<std::string> types;
  for (const auto& v : values) types.insert(literal_type(v));
  if (types == std::set<std::string>{"integer", "float"}) return "float";
  return types.size() == 1 ? *types.begin() : "toml";
}

/// One 1-D dataset of /columns, attached to the run_id scale (or made the scale when `scale` < 0).
h5::Handle write_column(hid_t group, const std::string& name, hid_t type, const void* data, std::size_t n, hid_t scale,
                        const std::string& at) {
  h5::Handle space = h5::simple_space({n});
  h5::Handle ds(H5Dcreate2(group, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                at + ": cannot create columns/" + name);
  if (n > 0) h5::check(H5Dwrite(ds.get(), type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), at + ": cannot write columns/" + name);
  if (scale < 0) h5::check(H5DSset_scale(ds.get(), "run_id"), at + ": columns/run_id as a dimension scale");
  else h5::check(H5DSattach_scale(ds.get(), scale, 0), at + ": attach run_id to columns/" + name);
  return ds;
}

void write_strings_column(hid_t group, const std::string& name, const std::vector<std::string>& values, hid_t scale,
                          const std::string& at) {
  std::vector<const char*> p;
  for (const auto& v : values) p.push_back(v.c_str());
  h5::Handle str = h5::vlen_string_type();
  write_column(group, name, str.get(), p.data(), p.size(), scale, at);
}

/// A varied key's column, typed by column_type (booleans as int8 0/1), its key and TOML type as attributes.
void write_varied_column(hid_t group, const std::string& name, const std::string& key, const std::vector<std::string>& values,
                         hid_t scale, const std::string& at) {
  const std::string type = column_type(values);
  std::vector<std::int64_t> ints;
  std::vector<double> floats;
  std::vector<std::int8_t> bools;
  std::vector<std::string> texts;
  for (const auto& v : values) {
    if (type == "integer") ints.push_back(std::strtoll(v.c_str(), nullptr, 10));
    else if (type == "float") floats.push_back(std::strtod(v.c_str(), nullptr));
    else if (type == "boolean") bools.push_back(v == "true" ? 1 : 0);
    else texts.push_back(type == "string" ? v.substr(1, v.size() - 2) : v);
  }
  if (!texts.empty() || values.empty()) write_strings_column(group, name, texts, scale, at);
  else {
    const hid_t t = type == "integer" ? H5T_NATIVE_INT64 : type == "float" ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT8;
    const void* data = type == "integer" ? static_cast<const void*>(ints.data())
                       : type == "float" ? static_cast<const void*>(floats.data()) : static_cast<const void*>(bools.data());
    write_column(group, name, t, data, values.size(), scale, at);
  }
  h5::Handle ds(H5Dopen2(group, name.c_str(), H5P_DEFAULT), H5Dclose, at + ": columns/" + name);
  h5::write_attr(ds.get(), "key", key, at);
  h5::write_attr(ds.get(), "toml_type", values.empty() ? std::string("toml") : type, at);
}

/// /columns: the summary again, one typed 1-D dataset per column over the dimension run_id (a
/// dimension scale), so that xarray (engine h5netcdf) and pandas open it without help.
void write_columns(hid_t f, const std::vector<std::string>& columns, const std::vector<std::string>& varied_keys,
                   const std::vector<std::string>& metrics, const std::vector<RunSummary>& runs, const std::string& at) {
  h5::Handle group(H5Gcreate2(f, "columns", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, at + ": cannot create columns");
  const hid_t g = group.get();
  const std::size_t n = runs.size();
  std::vector<std::string> ids, statuses, errors, files;
  std::vector<std::int64_t> index, seed;
  for (const auto& r : runs) {
    ids.push_back(r.run_id), statuses.push_back(r.status), errors.push_back(r.error), files.push_back(r.file);
    index.push_back(r.index), seed.push_back(r.seed);
  }
  std::vector<const char*> id_ptrs;
  for (const auto& v : ids) id_ptrs.push_back(v.c_str());
  h5::Handle str = h5::vlen_string_type();
  const h5::Handle scale = write_column(g, "run_id", str.get(), id_ptrs.data(), n, -1, at);
  write_column(g, columns[1], H5T_NATIVE_INT64, index.data(), n, scale.get(), at);
  write_column(g, columns[2], H5T_NATIVE_INT64, seed.data(), n, scale.get(), at);
  write_strings_column(g, columns[3], statuses, scale.get(), at);
  write_strings_column(g, columns[4], errors, scale.get(), at);
  write_strings_column(g, columns[5], files, scale.get(), at);
  std::size_t c = kFixedColumns.size();
  for (const auto& k : varied_keys) {
    std::vector<std::string> values;
    for (const auto& r : runs) values.push_back(r.params.count(k) ? r.params.at(k) : "");
    write_varied_column(g, columns[c++], k, values, scale.get(), at);
  }
  for (const auto& m : metrics) {
    std::vector<double> values;
    for (const auto& r : runs)
      values.push_back(r.final_metrics.count(m) ? r.final_metrics.at(m) : std::numeric_limits<double>::quiet_NaN());
    write_column(g, columns[c++], H5T_NATIVE_DOUBLE, values.data(), n, scale.get(), at);
  }
}

void write_index_file(const std::string& path, const std::string& dir, const std::string& sweep_name,
                      const std::string& sweep_file, const std::string& sweep_text,
                      const std::vector<std::string>& varied_keys, const std::vector<RunSummary>& runs) {
  const std::string at = "sweep index '" + path + "'";
  h5::Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, "cannot create " + at);
  const hid_t f = file.get();
  h5::write_attr(f, "schema_version", std::int64_t{kSchemaVersion}, at);
  h5::write_attr(f, "sweep_name", sweep_name, at);
  h5::write_attr(f, "sweep_file", sweep_file, at);
  h5::write_attr(f, "sweep_toml", sweep_text, at);
  h5::write_attr(f, "modlab_version", std::string(MODLAB_VERSION), at);
  h5::write_attr(f, "updated", h5::iso_now(), at);

  // Relative link targets resolve against the folder of sweep.h5 (HDF5 tries the parent file's
  // directory before the working directory), so the sweep folder can be moved as a whole.
  h5::Handle runs_group(H5Gcreate2(f, "runs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose, at + ": cannot create runs");
  for (const auto& r : runs) {
    if (r.file.empty() || r.run_id.empty() || r.run_id.find('/') != std::string::npos || r.run_id == "." ||
        h5::link_exists(runs_group.get(), r.run_id))
      continue;
    if (!is_file(r.file.front() == '/' ? r.file : dir + "/" + r.file)) continue;
    h5::check(H5Lcreate_external(r.file.c_str(), "/", runs_group.get(), r.run_id.c_str(), H5P_DEFAULT, H5P_DEFAULT),
              at + ": cannot link runs/" + r.run_id);
  }

  std::set<std::string> metric_set;
  for (const auto& r : runs)
    for (const auto& [k, v] : r.final_metrics) metric_set.insert(k);
  const std::vector<std::string> metrics(metric_set.begin(), metric_set.end());

  std::set<std::string> used(kFixedColumns.begin(), kFixedColumns.end());
  std::vector<std::string> columns = kFixedColumns;
  for (const auto& k : varied_keys) columns.push_back(unique_column(k, used));
  for (const auto& k : metrics) columns.push_back(unique_column(k, used));

  const std::size_t nf = columns.size(), nv = varied_keys.size();
  h5::Handle str = h5::vlen_string_type();
  h5::Handle type(H5Tcreate(H5T_COMPOUND, kSlot * nf), H5Tclose, at + ": cannot create the summary type");
  for (std::size_t i = 0; i < nf; ++i) {
    const bool is_int = i == 1 || i == 2, is_metric = i >= kFixedColumns.size() + nv;
    const hid_t t = is_int ? H5T_NATIVE_INT64 : is_metric ? H5T_NATIVE_DOUBLE : str.get();
    h5::check(H5Tinsert(type.get(), columns[i].c_str(), kSlot * i, t), at + ": summary column '" + columns[i] + "'");
  }

  static const std::string empty;
  std::vector<unsigned char> buf(runs.size() * nf * kSlot);
  for (std::size_t row = 0; row < runs.size(); ++row) {
    const RunSummary& r = runs[row];
    unsigned char* slot = buf.data() + row * nf * kSlot;
    auto put_str = [&](const std::string& s) { const char* p = s.c_str(); std::memcpy(slot, &p, kSlot); slot += kSlot; };
    auto put_int = [&](std::int64_t v) { std::memcpy(slot, &v, kSlot); slot += kSlot; };
    put_str(r.run_id), put_int(r.index), put_int(r.seed), put_str(r.status), put_str(r.error), put_str(r.file);
    for (const auto& k : varied_keys) {
      auto it = r.params.find(k);
      put_str(it == r.params.end() ? empty : it->second);
    }
    for (const auto& k : metrics) {
      auto it = r.final_metrics.find(k);
      const double v = it == r.final_metrics.end() ? std::numeric_limits<double>::quiet_NaN() : it->second;
      std::memcpy(slot, &v, kSlot);
      slot += kSlot;
    }
  }
  h5::Handle space = h5::simple_space({runs.size()});
  h5::Handle ds(H5Dcreate2(f, "summary", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                at + ": cannot create summary");
  if (!runs.empty())
    h5::check(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), at + ": cannot write summary");
  h5::write_attr(ds.get(), "varied_keys", varied_keys, at + ", summary");
  h5::write_attr(ds.get(), "metric_names", metrics, at + ", summary");
  ds.reset();
  write_columns(f, columns, varied_keys, metrics, runs, at);
  runs_group.reset();
  file.close("cannot close " + at);
}

}  // namespace

void write_sweep_index(const std::string& dir, const std::string& sweep_name, const std::string& sweep_file,
                       const std::string& sweep_text, const std::vector<std::string>& varied_keys,
                       const std::vector<RunSummary>& runs) {
  h5::init();
  if (!is_dir(dir)) throw OutputError("cannot write the sweep index: '" + dir + "' is not a directory");
  const std::string final_path = dir + "/sweep.h5";
  // Readers that have sweep.h5 open keep the old file; new readers see the complete new one.
  const std::string tmp = final_path + ".tmp." + std::to_string(::getpid());
  try {
    write_index_file(tmp, dir, sweep_name, sweep_file, sweep_text, varied_keys, runs);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), final_path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw OutputError("cannot rename '" + tmp + "' to '" + final_path + "': " + reason);
  }
}

std::optional<std::string> read_sweep_name(const std::string& dir) {
  const std::string path = dir + "/sweep.h5";
  if (!is_file(path)) return std::nullopt;
  h5::Handle file = h5::open_read(path);
  if (!file) return std::nullopt;
  return h5::read_string_attr(file.get(), "sweep_name", "sweep index '" + path + "'");
}

std::vector<RunSummary> read_sweep_index(const std::string& dir, std::vector<std::string>* varied_keys) {
  const std::string path = dir + "/sweep.h5";
  const std::string at = "sweep index '" + path + "'";
  if (!is_file(path)) throw OutputError("no sweep index '" + path + "' (has this sweep been run?)");
  h5::Handle file = h5::open_read(path);
  if (!file) throw OutputError("cannot open " + at + " as an HDF5 file");
  h5::Handle ds(H5Dopen2(file.get(), "summary", H5P_DEFAULT), H5Dclose, at + ": cannot open summary");
  h5::Handle ftype(H5Dget_type(ds.get()), H5Tclose, at + ": summary");
  if (H5Tget_class(ftype.get()) != H5T_COMPOUND) throw OutputError(at + ": summary is not a compound table");
  const auto nf = static_cast<std::size_t>(std::max(0, H5Tget_nmembers(ftype.get())));
  const std::vector<std::string> varied = h5::read_strings_attr(ds.get(), "varied_keys", at + ", summary");
  const std::vector<std::string> metric_names = h5::read_strings_attr(ds.get(), "metric_names", at + ", summary");

  // Memory layout: one 8-byte slot per column, whatever the file's layout is.
  h5::Handle str = h5::vlen_string_type();
  h5::Handle mtype(H5Tcreate(H5T_COMPOUND, kSlot * std::max<std::size_t>(nf, 1)), H5Tclose, at + ": summary");
  std::vector<std::string> names(nf);
  std::vector<H5T_class_t> classes(nf);
  for (std::size_t i = 0; i < nf; ++i) {
    char* name = H5Tget_member_name(ftype.get(), static_cast<unsigned>(i));
    names[i] = name != nullptr ? name : "";
    H5free_memory(name);
    classes[i] = H5Tget_member_class(ftype.get(), static_cast<unsigned>(i));
    const hid_t t = classes[i] == H5T_STRING ? str.get() : classes[i] == H5T_INTEGER ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE;
    if (classes[i] != H5T_STRING && classes[i] != H5T_INTEGER && classes[i] != H5T_FLOAT)
      throw OutputError(at + ": summary column '" + names[i] + "' has an unsupported type");
    h5::check(H5Tinsert(mtype.get(), names[i].c_str(), kSlot * i, t), at + ": summary");
  }
  h5::Handle space(H5Dget_space(ds.get()), H5Sclose, at + ": summary");
  const auto n = static_cast<std::size_t>(std::max<hssize_t>(0, H5Sget_simple_extent_npoints(space.get())));
  std::vector<unsigned char> buf(n * nf * kSlot);
  if (n > 0) h5::check(H5Dread(ds.get(), mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), at + ": cannot read summary");

  const std::set<std::string> fixed(kFixedColumns.begin(), kFixedColumns.end());
  std::vector<RunSummary> out(n);
  std::vector<std::string> found_keys;
  for (std::size_t row = 0; row < n; ++row) {
    RunSummary& r = out[row];
    std::size_t extra = 0;  // position among the non-fixed columns
    for (std::size_t i = 0; i < nf; ++i) {
      const unsigned char* slot = buf.data() + (row * nf + i) * kSlot;
      std::string s;
      std::int64_t iv = 0;
      double dv = 0;
      if (classes[i] == H5T_STRING) {
        const char* p = nullptr;
        std::memcpy(&p, slot, kSlot);
        s = p != nullptr ? p : "";
      } else if (classes[i] == H5T_INTEGER) {
        std::memcpy(&iv, slot, kSlot);
      } else {
        std::memcpy(&dv, slot, kSlot);
      }
      const std::string& name = names[i];
      if (fixed.count(name)) {
        if (name == "run_id") r.run_id = s;
        else if (name == "index") r.index = iv;
        else if (name == "seed") r.seed = iv;
        else if (name == "status") r.status = s;
        else if (name == "error") r.error = s;
        else r.file = s;
        continue;
      }
      const std::size_t j = extra++;
      // Column names may carry a "final." prefix added on collision: the attributes hold the real keys.
      if (classes[i] == H5T_STRING) {
        const std::string key = j < varied.size() ? varied[j] : name;
        r.params[key] = s;
        if (row == 0) found_keys.push_back(key);
      } else if (classes[i] == H5T_FLOAT && !std::isnan(dv)) {
        const std::size_t m = j - std::min(j, varied.size());
        r.final_metrics[m < metric_names.size() && j >= varied.size() ? metric_names[m] : name] = dv;
      }
    }
  }
  if (n > 0) H5Dvlen_reclaim(mtype.get(), space.get(), H5P_DEFAULT, buf.data());
  if (varied_keys != nullptr) *varied_keys = varied.empty() && n > 0 ? found_keys : varied;
  return out;
}

}  // namespace modlab::runner
