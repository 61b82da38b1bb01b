// Metric sets: weighted running means of named values over an evaluated split.
#include <modlab/recorder.hpp>

#include <limits>

namespace modlab {

void MetricSet::add(const std::string& name, double value, double weight) {
  auto& a = acc_[name];
  a.sum += value * weight;
  a.weight += weight;
}

void MetricSet::set(const std::string& name, double value) { acc_[name] = Acc{value, 1.0}; }

double MetricSet::get(const std::string& name) const {
  auto it = acc_.find(name);
  if (it == acc_.end() || it->second.weight == 0.0) return std::numeric_limits<double>::quiet_NaN();
  return it->second.sum / it->second.weight;
}

bool MetricSet::has(const std::string& name) const { return acc_.count(name) > 0; }

std::map<std::string, double> MetricSet::values() const {
  std::map<std::string, double> out;
  for (const auto& kv : acc_) out[kv.first] = get(kv.first);
  return out;
}

void MetricSet::clear() { acc_.clear(); }

}  // namespace modlab
