#pragma once
/// @file errors.hpp
/// The one error hierarchy of modlab. Every error the host shows a user is one of these;
/// `main` prints `what()` as one line and exits non-zero.

#include <modlab/export.hpp>
#include <stdexcept>
#include <string>

namespace modlab {

/// Base of all modlab errors.
class MODLAB_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
  ~Error() override;
};

/// A sweep file or a config value is wrong: malformed TOML, unknown key, wrong type, bad value.
/// The message names the file, line and dotted key where known.
class MODLAB_API ConfigError : public Error {
 public:
  using Error::Error;
  ~ConfigError() override;
};

/// A plugin shared object could not be loaded or does not match this host.
class MODLAB_API PluginLoadError : public Error {
 public:
  using Error::Error;
  ~PluginLoadError() override;
};

/// Data files are missing, truncated or malformed.
class MODLAB_API DataError : public Error {
 public:
  using Error::Error;
  ~DataError() override;
};

/// Results could not be written (or read back).
class MODLAB_API OutputError : public Error {
 public:
  using Error::Error;
  ~OutputError() override;
};

}  // namespace modlab
