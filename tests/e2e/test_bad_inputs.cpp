// The malformed-input corpus (tests/e2e/bad_inputs.txt): every case is a sweep, a command line or
// a folder set-up that modlab must refuse before any run starts. For each case this asserts the
// exit code, that every expected text is in the output (file:line:col where the value is in a file),
// that the message is one line, and that nothing was written: the temporary folder holds exactly
// what the case put there, byte for byte. The corpus format is described at the top of the file.
#define BOOST_TEST_MODULE bad_inputs
#include <boost/test/unit_test.hpp>

#include "cli_util.hpp"

#include <map>
#include <set>

using namespace e2e;

namespace {

struct Case {
  std::string name;
  int line = 0;  // in the corpus
  std::vector<std::pair<std::string, std::string>> replace;
  std::vector<std::string> expect, args;
  std::vector<std::pair<std::string, std::string>> files;  // relative path → text ("/" suffix: folder)
  std::string command, env, sweep;
  bool raw_sweep = false, many_lines = false;
  int nest = 0, code = 2;
};

std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == 'n') {
      out += '\n';
      ++i;
    } else if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] == 'x') {
      out += static_cast<char>(std::stoi(s.substr(i + 2, 2), nullptr, 16));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<Case> read_corpus(const fs::path& file) {
  std::vector<Case> cases;
  std::istringstream in(slurp(file));
  std::string line;
  int n = 0;
  bool in_sweep = false;
  auto after = [](const std::string& l, std::size_t k) { return l.substr(std::min(l.size(), k)); };
  while (std::getline(in, line)) {
    ++n;
    if (line.rfind("=== ", 0) == 0) {
      cases.push_back(Case{});
      cases.back().name = line.substr(4);
      cases.back().line = n;
      in_sweep = false;
      continue;
    }
    if (cases.empty()) continue;  // the header
    Case& c = cases.back();
    if (in_sweep) {
      c.sweep += unescape(line) + "\n";
    } else if (line.empty() || line[0] == '#') {
      continue;
    } else if (line.rfind("replace: ", 0) == 0) {
      const auto arrow = line.find(" => ");
      BOOST_TEST_REQUIRE(arrow != std::string::npos, file.string() << ":" << n << ": replace: A => B");
      c.replace.emplace_back(unescape(line.substr(9, arrow - 9)), unescape(after(line, arrow + 4)));
    } else if (line.rfind("expect: ", 0) == 0) {
      c.expect.push_back(after(line, 8));
    } else if (line.rfind("args: ", 0) == 0) {
      c.args.push_back(after(line, 6));
    } else if (line.rfind("command: ", 0) == 0) {
      c.command = after(line, 9);
    } else if (line.rfind("env: ", 0) == 0) {
      c.env = after(line, 5);
    } else if (line.rfind("file: ", 0) == 0) {
      const auto eq = line.find(" = ");
      c.files.emplace_back(line.substr(6, eq - 6), eq == std::string::npos ? "" : unescape(after(line, eq + 3)));
    } else if (line.rfind("mkdir: ", 0) == 0) {
      c.files.emplace_back(after(line, 7) + "/", "");
    } else if (line.rfind("nest: ", 0) == 0) {
      c.nest = std::stoi(after(line, 6));
    } else if (line.rfind("code: ", 0) == 0) {
      c.code = std::stoi(after(line, 6));
    } else if (line == "lines: many") {
      c.many_lines = true;
    } else if (line == "sweep:") {
      c.raw_sweep = in_sweep = true;
    } else {
      BOOST_FAIL(file.string() << ":" << n << ": unknown directive '" << line << "'");
    }
  }
  return cases;
}

std::string subst(std::string s, const std::map<std::string, std::string>& vars) {
  for (const auto& [k, v] : vars)
    for (auto at = s.find(k); at != std::string::npos; at = s.find(k, at + v.size())) s.replace(at, k.size(), v);
  return s;
}

/// Every file and folder below `dir` with its contents ("" for folders).
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (auto it = fs::recursive_directory_iterator(dir); it != fs::recursive_directory_iterator(); ++it) {
    const auto rel = fs::relative(it->path(), dir).string();
    m[rel] = it->is_directory() ? "/" : slurp(it->path());
  }
  return m;
}

std::string sweep_text(const Case& c, std::string base) {
  if (c.raw_sweep) return c.sweep;
  for (const auto& [from, to] : c.replace) {
    const auto at = base.find(from);
    BOOST_TEST_REQUIRE(at != std::string::npos, c.name << ": the base sweep has no '" << from << "'");
    base.replace(at, from.size(), to);
  }
  if (c.nest > 0) base += "deep = " + std::string(static_cast<std::size_t>(c.nest), '[') + std::string(static_cast<std::size_t>(c.nest), ']') + "\n";
  return base;
}

void check(const Case& c, const std::string& base) {
  TempDir d("bad_" + std::to_string(c.line));
  const fs::path sweep = d.path / (c.name + ".toml");
  write(sweep, sweep_text(c, base));
  const std::map<std::string, std::string> vars = {
      {"{dir}", d.path.string()}, {"{sweep}", sweep.string()}, {"{out}", (d.path / "out").string()},
      {"{fixtures}", fixture_plugins()}};
  for (const auto& [rel, text] : c.files) {
    if (rel.back() == '/') fs::create_directories(d.path / rel);
    else write(d.path / rel, subst(text, vars));
  }
  const auto before = snapshot(d.path);
  std::string args = c.command.empty() ? "run {sweep} --out {out} --jobs 2" : c.command;
  for (const auto& a : c.args) args += " " + a;
  const auto r = sh("cd " + quote(d.path.string()) + " && " + subst(c.env, vars) + " " + quote(exe()) + " " + subst(args, vars));
  const std::string where = "bad_inputs.txt:" + std::to_string(c.line) + " (" + c.name + "): ";
  BOOST_TEST_MESSAGE(where << r.output);
  BOOST_TEST(r.code == c.code, where << "exit " << r.code << ": " << r.output);
  for (const auto& e : c.expect)
    BOOST_TEST(r.output.find(subst(e, vars)) != std::string::npos, where << "expected '" << subst(e, vars) << "' in: " << r.output);
  if (!c.many_lines)
    BOOST_TEST(std::count(r.output.begin(), r.output.end(), '\n') == 1, where << "not one line: " << r.output);
  BOOST_TEST((snapshot(d.path) == before), where << "something was written or changed");
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_bad_input_is_refused_before_anything_runs) {
  const fs::path corpus = fs::path(MODLAB_TEST_SOURCE_DIR) / "e2e" / "bad_inputs.txt";
  const auto cases = read_corpus(corpus);
  BOOST_TEST(cases.size() >= 80u);
  std::set<std::string> names;
  const std::string base = slurp(fs::path(MODLAB_TEST_SOURCE_DIR) / "e2e" / "bad_inputs_base.toml");
  for (const auto& c : cases) {
    BOOST_TEST(names.insert(c.name).second, "two cases named " << c.name);
    BOOST_TEST(!c.expect.empty(), c.name << " expects nothing");
    check(c, base);
  }
}
