#pragma once
// The selected question/answer pairs as token streams plus an offset index, the form the cache
// file holds and the splits read (memory-mapped, so the text of the release is never in memory).

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace modlab::dm_math {

/// Token ids: 0 padding, 1 start, 2 end, then the vocabulary's characters from 3 on.
inline constexpr std::int64_t kPad = 0, kStart = 1, kEnd = 2, kFirstChar = 3;

/// One example's place in the token stream: question tokens [offset, offset + question), answer
/// tokens after them up to offset + length. 64-bit offsets: the whole release's stream is larger
/// than 4 GiB.
struct Entry {
  std::uint64_t offset;
  std::uint32_t length;
  std::uint16_t question, module;
};
static_assert(sizeof(Entry) == 16, "the cache's index entries are 16 bytes");

/// A contiguous range of examples.
struct Range {
  std::string name;
  std::int64_t first = 0, count = 0;
};

/// What the cache holds, in memory (while building) or mapped from the file.
class Corpus {
 public:
  virtual ~Corpus();
  std::string vocabulary;             ///< characters, id = kFirstChar + position
  std::vector<std::string> modules;   ///< module names, indexed by Entry::module
  std::vector<Range> splits;          ///< named example ranges
  virtual const std::uint8_t* tokens() const = 0;
  virtual const Entry* entries() const = 0;
  virtual std::int64_t size() const = 0;  ///< number of examples
  /// The range called `name`, or nullptr.
  const Range* split(const std::string& name) const;
  /// Longest question and longest answer (in tokens) over all examples.
  std::pair<std::int64_t, std::int64_t> longest() const;
};

/// A corpus built in memory, to be written.
class BuiltCorpus : public Corpus {
 public:
  std::vector<std::uint8_t> stream;
  std::vector<Entry> index;
  const std::uint8_t* tokens() const override { return stream.data(); }
  const Entry* entries() const override { return index.data(); }
  std::int64_t size() const override { return static_cast<std::int64_t>(index.size()); }
};

/// Writes `c` to `path` (through a temporary name and a rename, so a reader never sees half a file).
void write_cache(const std::string& path, const Corpus& c);
/// Maps a cache file read-only. DataError naming the file when it is not a complete cache of this
/// format version.
std::shared_ptr<const Corpus> map_cache(const std::string& path);

/// A batch of examples `indices` (absolute example numbers): questions [B, Lq] and answers followed
/// by the end token [B, La + 1], int64, padded with kPad to the longest in the batch, with lengths.
struct SequenceBatch {
  torch::Tensor questions, question_lengths, answers, answer_lengths, modules;
};
SequenceBatch gather(const Corpus& c, const std::vector<std::int64_t>& indices);

}  // namespace modlab::dm_math
