#include "h5_raii.hpp"

#include <modlab/errors.hpp>

#include <ctime>
#include <mutex>

namespace modlab::runner::h5 {

void init() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

namespace {
// Walking upward starts at the innermost entry: the one that says what actually went wrong
// ("unable to open file: ... errno = 2 ...") rather than the API function that gave up.
herr_t innermost(unsigned n, const H5E_error2_t* err, void* out) {
  if (n == 0 && err->desc != nullptr) *static_cast<std::string*>(out) = err->desc;
  return 0;
}
}  // namespace

void fail(const std::string& what) {
  std::string reason;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost, &reason);
  H5Eclear2(H5E_DEFAULT);
  throw OutputError(reason.empty() ? what : what + " (HDF5: " + reason + ")");
}

Handle latest_fapl() {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, "cannot create a file access property list");
  check(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_LATEST), "cannot set HDF5 format bounds");
  // Strong: closing the file closes every object in it, so a rename after close is safe.
  check(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG), "cannot set the file close degree");
  return fapl;
}

Handle open_read(const std::string& path) {
  init();
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) id = H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
  H5Eclear2(H5E_DEFAULT);
  if (id < 0) return {};
  return Handle(id, H5Fclose, path);
}

Handle vlen_string_type() {
  Handle t(H5Tcopy(H5T_C_S1), H5Tclose, "cannot create a string type");
  check(H5Tset_size(t.get(), H5T_VARIABLE), "cannot create a string type");
  check(H5Tset_cset(t.get(), H5T_CSET_UTF8), "cannot create a string type");
  return t;
}

Handle simple_space(const std::vector<hsize_t>& dims, const std::vector<hsize_t>& maxdims) {
  if (dims.empty()) return Handle(H5Screate(H5S_SCALAR), H5Sclose, "cannot create a dataspace");
  return Handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), maxdims.empty() ? nullptr : maxdims.data()),
                H5Sclose, "cannot create a dataspace");
}

bool link_exists(hid_t loc, const std::string& name) { return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0; }

namespace {
void write_attr_raw(hid_t obj, const std::string& name, hid_t type, hid_t space, const void* data, const std::string& what) {
  const std::string ctx = what + ": cannot write attribute '" + name + "'";
  if (check(H5Aexists(obj, name.c_str()), ctx) > 0) check(H5Adelete(obj, name.c_str()), ctx);
  Handle attr(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose, ctx);
  if (H5Sget_simple_extent_npoints(space) == 0) return;  // an empty list: nothing to write
  check(H5Awrite(attr.get(), type, data), ctx);
}

std::optional<Handle> open_attr(hid_t obj, const std::string& name, const std::string& what) {
  const std::string ctx = what + ": cannot read attribute '" + name + "'";
  if (check(H5Aexists(obj, name.c_str()), ctx) == 0) return std::nullopt;
  return Handle(H5Aopen(obj, name.c_str(), H5P_DEFAULT), H5Aclose, ctx);
}

// Reads a string attribute of any shape (fixed or variable length) as a flat list.
std::vector<std::string> read_strings(hid_t attr, const std::string& ctx) {
  Handle ftype(H5Aget_type(attr), H5Tclose, ctx);
  if (H5Tget_class(ftype.get()) != H5T_STRING) throw OutputError(ctx + ": not a string attribute");
  Handle space(H5Aget_space(attr), H5Sclose, ctx);
  const auto n = static_cast<std::size_t>(H5Sget_simple_extent_npoints(space.get()));
  std::vector<std::string> out;
  if (n == 0) return out;
  if (H5Tis_variable_str(ftype.get()) > 0) {
    Handle mtype = vlen_string_type();
    std::vector<char*> buf(n, nullptr);
    check(H5Aread(attr, mtype.get(), buf.data()), ctx);
    for (char* s : buf) out.emplace_back(s != nullptr ? s : "");
    H5Dvlen_reclaim(mtype.get(), space.get(), H5P_DEFAULT, buf.data());
  } else {
    const std::size_t len = H5Tget_size(ftype.get());
    Handle mtype(H5Tcopy(ftype.get()), H5Tclose, ctx);
    std::vector<char> buf(n * len + 1, '\0');
    check(H5Aread(attr, mtype.get(), buf.data()), ctx);
    for (std::size_t i = 0; i < n; ++i) {
      std::string s(buf.data() + i * len, len);
      out.push_back(s.substr(0, s.find('\0')));
    }
  }
  return out;
}
}  // namespace

void write_attr(hid_t obj, const std::string& name, const std::string& value, const std::string& what) {
  Handle type = vlen_string_type();
  Handle space = simple_space({});
  const char* p = value.c_str();
  write_attr_raw(obj, name, type.get(), space.get(), &p, what);
}

void write_attr(hid_t obj, const std::string& name, std::int64_t value, const std::string& what) {
  Handle space = simple_space({});
  write_attr_raw(obj, name, H5T_NATIVE_INT64, space.get(), &value, what);
}

void write_attr(hid_t obj, const std::string& name, const std::vector<std::string>& value, const std::string& what) {
  Handle type = vlen_string_type();
  Handle space = simple_space({value.size()});
  std::vector<const char*> ptrs;
  for (const auto& s : value) ptrs.push_back(s.c_str());
  write_attr_raw(obj, name, type.get(), space.get(), ptrs.data(), what);
}

std::optional<std::string> read_string_attr(hid_t obj, const std::string& name, const std::string& what) {
  auto attr = open_attr(obj, name, what);
  if (!attr) return std::nullopt;
  auto v = read_strings(attr->get(), what + ": attribute '" + name + "'");
  return v.empty() ? std::string() : v.front();
}

std::optional<std::int64_t> read_int_attr(hid_t obj, const std::string& name, const std::string& what) {
  auto attr = open_attr(obj, name, what);
  if (!attr) return std::nullopt;
  const std::string ctx = what + ": attribute '" + name + "'";
  Handle type(H5Aget_type(attr->get()), H5Tclose, ctx);
  if (H5Tget_class(type.get()) == H5T_STRING) {
    const auto s = read_strings(attr->get(), ctx);
    try {
      return s.empty() ? std::nullopt : std::optional<std::int64_t>(std::stoll(s.front()));
    } catch (const std::exception&) {
      throw OutputError(ctx + ": expected an integer, found '" + s.front() + "'");
    }
  }
  if (H5Tget_class(type.get()) != H5T_INTEGER) throw OutputError(ctx + ": expected an integer attribute");
  std::int64_t v = 0;
  check(H5Aread(attr->get(), H5T_NATIVE_INT64, &v), ctx);
  return v;
}

std::vector<std::string> read_strings_attr(hid_t obj, const std::string& name, const std::string& what) {
  auto attr = open_attr(obj, name, what);
  if (!attr) return {};
  return read_strings(attr->get(), what + ": attribute '" + name + "'");
}

std::string iso_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace modlab::runner::h5
