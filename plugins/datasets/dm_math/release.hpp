#pragma once
// Reading the DeepMind Mathematics release (mathematics_dataset v1.0): a folder in the release's
// layout or the .tar.gz itself, streamed without unpacking it.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace modlab::dm_math {

/// The release's five folders, in the order files are read (evaluation sets first, so that a
/// question duplicated in a training file is dropped from training, never from evaluation).
const std::vector<std::string>& release_folders();

/// One question/answer file of the release: `<folder>/<module>.txt`.
struct TextFile {
  std::string folder;  ///< train-easy, train-medium, train-hard, interpolate or extrapolate
  std::string module;  ///< file stem, e.g. "arithmetic__add_or_sub" or "arithmetic__add_or_sub_big"
  std::string where;   ///< how errors name it: a path, or "archive.tar.gz:member"
};

/// A release on disk. `read` hands each wanted file's full text to `fn` (a .tar.gz is decompressed
/// once, streaming, and only wanted members are kept in memory, one at a time).
class Release {
 public:
  /// `path`: a folder holding the five folders (or holding `mathematics_dataset-v1.0/`), or a
  /// .tar.gz of the release. DataError naming what was looked for when it is neither.
  static std::unique_ptr<Release> open(const std::string& path);
  virtual ~Release();
  /// Sizes and modification times of what `read` reads: equal identities, equal contents.
  virtual std::string identity() const = 0;
  virtual void read(const std::function<bool(const TextFile&)>& wanted,
                    const std::function<void(const TextFile&, const std::string&)>& fn) const = 0;
  virtual std::string path() const = 0;
};

/// Question/answer pairs of one file: alternating lines, question first. A final newline and
/// CR before LF are accepted; DataError naming `file.where` and the line for an odd number of lines,
/// an empty question or answer, or a byte outside printable ASCII.
struct Pairs {
  std::vector<std::string> questions, answers;
};
Pairs parse_pairs(const TextFile& file, const std::string& text);

}  // namespace modlab::dm_math
