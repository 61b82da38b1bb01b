#pragma once
// A small RAII layer over the HDF5 C API, private to modlab_h5. Every failing call becomes a
// modlab::OutputError whose message names the file and object and ends with HDF5's own reason;
// HDF5's automatic printing of its error stack is switched off (init()).

#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace modlab::runner::h5 {

/// Silences HDF5's automatic error printing (once per process). Every entry point calls it.
void init();

/// Throws OutputError("<what> (HDF5: <innermost message of the error stack>)").
[[noreturn]] void fail(const std::string& what);

inline herr_t check(herr_t rc, const std::string& what) {
  if (rc < 0) fail(what);
  return rc;
}

/// Owns one HDF5 identifier and closes it with the matching H5?close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() noexcept = default;
  /// Takes `id`; throws OutputError(what) when `id` is negative (the call that made it failed).
  Handle(hid_t id, Closer closer, const std::string& what) : id_(id), closer_(closer) {
    if (id_ < 0) fail(what);
  }
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const noexcept { return id_; }
  explicit operator bool() const noexcept { return id_ >= 0; }
  /// Closes, ignoring errors (destructors and clean-up paths).
  void reset() noexcept {
    if (id_ >= 0 && closer_ != nullptr) closer_(id_);
    id_ = H5I_INVALID_HID;
  }
  /// Closes and throws OutputError(what) if closing failed (files: the final flush happens here).
  void close(const std::string& what) {
    const hid_t id = id_;
    id_ = H5I_INVALID_HID;
    if (id >= 0 && closer_ != nullptr) check(closer_(id), what);
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

/// A file access property list with the 1.10 (SWMR-capable) format and strong close degree.
Handle latest_fapl();
/// Opens an existing file read-only; falls back to SWMR-read for a file being written in SWMR
/// mode. An empty Handle if neither works.
Handle open_read(const std::string& path);
/// Variable-length UTF-8 string type.
Handle vlen_string_type();
/// A simple dataspace of the given dimensions.
Handle simple_space(const std::vector<hsize_t>& dims, const std::vector<hsize_t>& maxdims = {});

bool link_exists(hid_t loc, const std::string& name);

/// Root/object attributes. Writers replace an existing attribute of that name; `what` names the
/// file and object for error messages.
void write_attr(hid_t obj, const std::string& name, const std::string& value, const std::string& what);
void write_attr(hid_t obj, const std::string& name, std::int64_t value, const std::string& what);
void write_attr(hid_t obj, const std::string& name, const std::vector<std::string>& value,
                const std::string& what);
/// Readers return nullopt when the attribute is absent; strings accept fixed and variable length,
/// integers accept any integer type or a decimal string.
std::optional<std::string> read_string_attr(hid_t obj, const std::string& name, const std::string& what);
std::optional<std::int64_t> read_int_attr(hid_t obj, const std::string& name, const std::string& what);
std::vector<std::string> read_strings_attr(hid_t obj, const std::string& name, const std::string& what);

/// Current UTC time as ISO-8601, e.g. 2024-05-01T12:34:56Z.
std::string iso_now();

}  // namespace modlab::runner::h5
