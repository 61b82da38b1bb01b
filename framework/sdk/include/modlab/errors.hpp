#pragma once
/// @file errors.hpp
/// The one error hierarchy of modlab. Every error the host shows a user is one of these;
/// `main` prints `what()` as one line and exits non-zero, and a failed run records it as its error.
/// Plugins throw these too (never a bare std::invalid_argument / std::runtime_error), so that the
/// host can tell what went wrong and a user reads one line that names the cause.

#include <modlab/export.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

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

/// A function of the SDK or of a plugin was called with arguments outside what it accepts (a tensor
/// of the wrong shape, an unknown form name). Checked where the cause is cheapest to name; a user
/// meets it only through a configuration the plugin's own validation let pass.
class MODLAB_API ArgumentError : public Error {
 public:
  using Error::Error;
  ~ArgumentError() override;
};

/// A plugin failed to build its model or dataset for a reason it did not classify, or broke the
/// SDK's contract (e.g. a factory returned nothing). The message names the plugin and its file.
class MODLAB_API PluginError : public Error {
 public:
  using Error::Error;
  ~PluginError() override;
};

/// A training loss term was NaN or infinite. Names the step (optimizer steps before the batch),
/// the phase, the epoch and every term that was not finite, with its value.
class MODLAB_API NonFiniteLoss : public Error {
 public:
  /// One loss term that was not finite.
  struct Term {
    std::string name;
    double value;
  };
  NonFiniteLoss(std::int64_t step, const std::string& phase, std::int64_t epoch, std::vector<Term> terms);
  ~NonFiniteLoss() override;
  std::int64_t step() const { return step_; }
  const std::string& phase() const { return phase_; }
  std::int64_t epoch() const { return epoch_; }
  const std::vector<Term>& terms() const { return terms_; }

 private:
  std::int64_t step_;
  std::string phase_;
  std::int64_t epoch_;
  std::vector<Term> terms_;
};

}  // namespace modlab
