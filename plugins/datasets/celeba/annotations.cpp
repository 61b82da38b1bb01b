#include "annotations.hpp"

#include <modlab/errors.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

namespace modlab::celeba {
namespace {

std::string read_text(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(std::string(kName) + ": cannot open the " + what + " " + path + " (" + std::strerror(errno) + ")");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Splits text into lines, accepting LF and CRLF; calls fn(line_number, begin, end).
template <class Fn>
void for_each_line(const std::string& text, Fn fn) {
  std::size_t pos = 0;
  int line = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    std::size_t end = nl == std::string::npos ? text.size() : nl;
    std::size_t e = end;
    if (e > pos && text[e - 1] == '\r') --e;
    fn(++line, text.data() + pos, text.data() + e);
    pos = nl == std::string::npos ? text.size() : nl + 1;
  }
}

// Whitespace-separated tokens of [b, e).
void tokens(const char* b, const char* e, std::vector<std::pair<const char*, const char*>>& out) {
  out.clear();
  while (b < e) {
    while (b < e && (*b == ' ' || *b == '\t' || *b == '\r')) ++b;
    const char* s = b;
    while (b < e && *b != ' ' && *b != '\t' && *b != '\r') ++b;
    if (b > s) out.emplace_back(s, b);
  }
}

std::string excerpt(const char* b, const char* e) {
  std::string s(b, e);
  return s.size() > 60 ? s.substr(0, 60) + "..." : s;
}

}  // namespace

AttrTable parse_attributes(const std::string& path, const std::string& text) {
  AttrTable t;
  t.path = path;
  std::vector<std::pair<const char*, const char*>> tok;
  std::unordered_map<std::string, int> seen;
  bool have_count = false, have_names = false;
  for_each_line(text, [&](int line, const char* b, const char* e) {
    tokens(b, e, tok);
    if (!have_count) {
      char* end = nullptr;
      std::string s = tok.size() == 1 ? std::string(tok[0].first, tok[0].second) : std::string();
      long long n = s.empty() ? -1 : std::strtoll(s.c_str(), &end, 10);
      if (s.empty() || *end != '\0' || n < 0)
        throw DataError(path + ":" + std::to_string(line) + ": expected the number of records, found '" + excerpt(b, e) + "'");
      t.header_count = n;
      have_count = true;
      return;
    }
    if (!have_names) {
      if (tok.empty()) throw DataError(path + ":" + std::to_string(line) + ": expected the attribute names, found an empty line");
      for (const auto& [s, f] : tok) {
        std::string name(s, f);
        if (std::find(t.names.begin(), t.names.end(), name) != t.names.end())
          throw DataError(path + ":" + std::to_string(line) + ": attribute name '" + name + "' appears twice");
        t.names.push_back(name);
      }
      have_names = true;
      return;
    }
    if (tok.empty()) return;  // blank lines (e.g. at the end) carry nothing
    if (tok.size() != t.names.size() + 1)
      throw DataError(path + ":" + std::to_string(line) + ": '" + std::string(tok[0].first, tok[0].second) + "' has " +
                      std::to_string(tok.size() - 1) + " attribute values, expected " + std::to_string(t.names.size()) +
                      " (one per name on line 2)");
    std::string file(tok[0].first, tok[0].second);
    auto [it, fresh] = seen.emplace(file, line);
    if (!fresh)
      throw DataError(path + ":" + std::to_string(line) + ": second row for '" + file + "' (the first is on line " +
                      std::to_string(it->second) + ")");
    for (std::size_t k = 1; k < tok.size(); ++k) {
      const std::size_t len = static_cast<std::size_t>(tok[k].second - tok[k].first);
      const char* v = tok[k].first;
      std::uint8_t bit;
      if (len == 1 && v[0] == '1') bit = 1;
      else if (len == 2 && v[0] == '+' && v[1] == '1') bit = 1;
      else if (len == 2 && v[0] == '-' && v[1] == '1') bit = 0;
      else
        throw DataError(path + ":" + std::to_string(line) + ": value '" + std::string(v, len) + "' of attribute " +
                        t.names[k - 1] + " for '" + file + "' is not 1 or -1");
      t.values.push_back(bit);
    }
    t.files.push_back(std::move(file));
    t.lines.push_back(line);
  });
  if (!have_names) throw DataError(path + ": too short: expected a count line and a line of attribute names");
  return t;
}

PartitionTable parse_partition(const std::string& path, const std::string& text) {
  PartitionTable t;
  t.path = path;
  std::vector<std::pair<const char*, const char*>> tok;
  for_each_line(text, [&](int line, const char* b, const char* e) {
    tokens(b, e, tok);
    if (tok.empty()) return;
    if (tok.size() != 2 || tok[1].second - tok[1].first != 1 || tok[1].first[0] < '0' || tok[1].first[0] > '2')
      throw DataError(path + ":" + std::to_string(line) + ": expected '<image file> <0, 1 or 2>', found '" + excerpt(b, e) + "'");
    int p = tok[1].first[0] - '0';
    if (!t.of.emplace(std::string(tok[0].first, tok[0].second), p).second)
      throw DataError(path + ":" + std::to_string(line) + ": second line for '" + std::string(tok[0].first, tok[0].second) + "'");
    t.counts[p]++;
  });
  return t;
}

AttrTable read_attributes(const std::string& path) { return parse_attributes(path, read_text(path, "attribute file")); }

PartitionTable read_partition(const std::string& path) { return parse_partition(path, read_text(path, "partition file")); }

}  // namespace modlab::celeba
