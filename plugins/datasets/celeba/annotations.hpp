#pragma once
// Parsers of CelebA's annotation files (list_attr_celeba.txt, list_eval_partition.txt). They take
// the text and the path used in messages, so they can be tested and fuzzed without files; every
// problem is a modlab::DataError "path:line: what was expected, what was found".

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace modlab::celeba {

/// The plugin's name, the prefix of its messages.
inline constexpr const char* kName = "celeba";

/// list_attr_celeba.txt: a record count, a line of attribute names, then one row per image.
struct AttrTable {
  std::string path;
  std::int64_t header_count = 0;
  std::vector<std::string> names;
  std::vector<std::string> files;
  std::vector<int> lines;            // 1-based line of each row
  std::vector<std::uint8_t> values;  // rows x names, in {0, 1}: (v + 1) / 2 as torchvision
  std::size_t rows() const { return files.size(); }
};

/// list_eval_partition.txt: "<image file> <0, 1 or 2>" per line.
struct PartitionTable {
  std::string path;
  std::unordered_map<std::string, int> of;  // image file -> 0 train, 1 valid, 2 test
  std::int64_t counts[3] = {0, 0, 0};
};

AttrTable parse_attributes(const std::string& path, const std::string& text);
PartitionTable parse_partition(const std::string& path, const std::string& text);

/// Reads the file, then parses it; DataError naming the path when it cannot be read.
AttrTable read_attributes(const std::string& path);
PartitionTable read_partition(const std::string& path);

}  // namespace modlab::celeba
