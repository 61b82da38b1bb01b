// The SDK's anchors: out-of-line virtual destructors of the interfaces whose type info must be
// emitted once, in libmodlab_sdk.so, and shared by the host and every plugin (a plugin catches a
// ConfigError the host threw, the host a DataError a plugin threw), and the error types. The rest
// of the SDK is defined by topic: data.cpp (batches, splits, datasets), metrics.cpp, model.cpp
// (Model defaults), config.cpp, nn.cpp.
#include <modlab/errors.hpp>
#include <modlab/host.hpp>
#include <modlab/plugin.hpp>
#include <modlab/recorder.hpp>

#include <cmath>
#include <sstream>

namespace modlab {

Error::~Error() = default;
ConfigError::~ConfigError() = default;
PluginLoadError::~PluginLoadError() = default;
DataError::~DataError() = default;
OutputError::~OutputError() = default;
ArgumentError::~ArgumentError() = default;
PluginError::~PluginError() = default;
NonFiniteLoss::~NonFiniteLoss() = default;
Recorder::~Recorder() = default;
Host::~Host() = default;
SharedFile::~SharedFile() = default;
Registrar::~Registrar() = default;

namespace {
std::string non_finite_text(std::int64_t step, const std::string& phase, std::int64_t epoch,
                            const std::vector<NonFiniteLoss::Term>& terms) {
  std::ostringstream os;
  os.precision(4);
  os << "non-finite loss at step " << step << " (phase " << phase << ", epoch " << epoch << "): term"
     << (terms.size() > 1 ? "s " : " ");
  for (std::size_t i = 0; i < terms.size(); ++i) {
    os << (i ? ", '" : "'") << terms[i].name << "' = ";
    if (std::isnan(terms[i].value)) os << "nan";  // the sign of a NaN says nothing; "-nan" misleads
    else os << terms[i].value;
  }
  return os.str();
}
}  // namespace

NonFiniteLoss::NonFiniteLoss(std::int64_t step, const std::string& phase, std::int64_t epoch, std::vector<Term> terms)
    : Error(non_finite_text(step, phase, epoch, terms)),
      step_(step),
      phase_(phase),
      epoch_(epoch),
      terms_(std::move(terms)) {}

}  // namespace modlab
