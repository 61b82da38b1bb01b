#pragma once
// Shared by the SDK and the host, not installed: plugin authors get "did you mean" through
// Config::fail_unknown instead of a string-distance function of their own.

#include <modlab/export.hpp>

#include <string>
#include <vector>

namespace modlab {

/// Levenshtein-closest candidate to `word` (case-insensitive), or "" when nothing is reasonably close.
MODLAB_API std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace modlab
