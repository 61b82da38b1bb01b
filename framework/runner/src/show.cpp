#include <modlab/errors.hpp>
#include <modlab/runner/show.hpp>
#include <modlab_internal/closest_match.hpp>

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

namespace fs = std::filesystem;

namespace modlab::runner {

namespace {

std::string number(double v) {
  if (std::isnan(v)) return "";
  std::ostringstream os;
  os << std::setprecision(4) << v + 0.0;  // + 0.0: no "-0"
  return os.str();
}

std::size_t column_of(const std::vector<std::string>& header, const std::string& name, const char* what) {
  auto it = std::find(header.begin(), header.end(), name);
  if (it != header.end()) return static_cast<std::size_t>(it - header.begin());
  const std::string guess = closest_match(name, header);
  std::string all;
  for (const auto& h : header) all += (all.empty() ? "" : ", ") + h;
  throw ConfigError(std::string(what) + ": no column '" + name + "'" +
                    (guess.empty() ? "" : " (did you mean '" + guess + "'?)") + "; columns: " + all);
}

/// "mean ± std" of the values (the mean alone for one value; "" for none).
std::string mean_std(const std::vector<double>& v) {
  if (v.empty()) return "";
  double mean = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  if (v.size() == 1) return number(mean);
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return number(mean) + " ± " + number(std::sqrt(ss / static_cast<double>(v.size() - 1)));
}

/// Cells compare as numbers when both start with one ("0.9 ± 0.1" by its mean), else as text.
bool cell_less(const std::string& a, const std::string& b) {
  char *ea = nullptr, *eb = nullptr;
  const double x = std::strtod(a.c_str(), &ea), y = std::strtod(b.c_str(), &eb);
  if (ea != a.c_str() && eb != b.c_str() && x != y) return x < y;
  return a < b;
}

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

/// Display width of UTF-8 text (code points; "±" is one column).
std::size_t display_width(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string aligned(const TextTable& t, std::size_t width) {
  std::vector<std::size_t> w(t.header.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    w[i] = display_width(t.header[i]);
    for (const auto& r : t.rows) w[i] = std::max(w[i], display_width(r[i]));
  }
  std::size_t shown = w.size(), used = 0;
  if (width > 0)
    for (std::size_t i = 0; i < w.size(); ++i) {
      used += w[i] + (i ? 2 : 0);
      if (used > width && i > 0) {
        shown = i;
        break;
      }
    }
  std::ostringstream os;
  auto line = [&](const std::vector<std::string>& r) {
    std::string text;
    for (std::size_t i = 0; i < shown; ++i)
      text += r[i] + (i + 1 < shown ? std::string(w[i] - display_width(r[i]) + 2, ' ') : "");
    os << text.substr(0, text.find_last_not_of(' ') + 1) << "\n";  // no trailing blanks
  };
  line(t.header);
  for (const auto& r : t.rows) line(r);
  if (shown < w.size())
    os << "(" << w.size() - shown << " more columns: choose with --columns, or --csv for all)\n";
  return os.str();
}

}  // namespace

std::vector<std::string> shown_metrics(const std::vector<RunSummary>& rows, const std::vector<std::string>& filters) {
  std::set<std::string> names;
  for (const auto& r : rows)
    for (const auto& [k, v] : r.final_metrics) {
      bool keep = filters.empty();
      for (const auto& f : filters) keep = keep || k.find(f) != std::string::npos;
      if (keep && k.rfind("fit_", 0) != 0) names.insert(k);
    }
  return {names.begin(), names.end()};
}

TextTable run_table(const std::vector<RunSummary>& rows, const std::vector<std::string>& varied,
                    const std::vector<std::string>& metrics) {
  TextTable t;
  t.header = {"#", "run_id", "status"};
  t.header.insert(t.header.end(), varied.begin(), varied.end());
  t.header.insert(t.header.end(), metrics.begin(), metrics.end());
  for (const auto& r : rows) {
    std::vector<std::string> row = {std::to_string(r.index), r.run_id, r.status};
    for (const auto& v : varied) row.push_back(r.params.count(v) ? r.params.at(v) : "");
    for (const auto& m : metrics) {
      auto it = r.final_metrics.find(m);
      row.push_back(it == r.final_metrics.end() ? "" : number(it->second));
    }
    t.rows.push_back(row);
  }
  return t;
}

TextTable grouped_table(const std::vector<RunSummary>& rows, const std::vector<std::string>& varied,
                        const std::vector<std::string>& keys, const std::vector<std::string>& metrics) {
  for (const auto& k : keys) (void)column_of(varied, k, "--group-by");
  struct Group {
    std::vector<std::string> values;
    std::size_t runs = 0, completed = 0;
    std::map<std::string, std::vector<double>> metric_values;
  };
  std::vector<Group> groups;
  std::map<std::vector<std::string>, std::size_t> index;
  for (const auto& r : rows) {
    std::vector<std::string> values;
    for (const auto& k : keys) values.push_back(r.params.count(k) ? r.params.at(k) : "");
    auto [it, added] = index.emplace(values, groups.size());
    if (added) groups.push_back({values, 0, 0, {}});
    Group& g = groups[it->second];
    ++g.runs;
    if (r.status != "completed") continue;
    ++g.completed;
    for (const auto& m : metrics)
      if (auto v = r.final_metrics.find(m); v != r.final_metrics.end() && !std::isnan(v->second))
        g.metric_values[m].push_back(v->second);
  }
  TextTable t;
  t.header = keys;
  t.header.push_back("runs");
  t.header.insert(t.header.end(), metrics.begin(), metrics.end());
  for (const auto& g : groups) {
    std::vector<std::string> row = g.values;
    row.push_back(std::to_string(g.completed) + "/" + std::to_string(g.runs));
    for (const auto& m : metrics) row.push_back(g.metric_values.count(m) ? mean_std(g.metric_values.at(m)) : "");
    t.rows.push_back(row);
  }
  return t;
}

std::string render(TextTable t, const ShowOptions& o) {
  if (!o.sort.empty()) {
    const std::size_t c = column_of(t.header, o.sort, "--sort");
    std::stable_sort(t.rows.begin(), t.rows.end(), [&](const auto& a, const auto& b) {
      if (a[c].empty() || b[c].empty()) return !a[c].empty() && b[c].empty();  // empty cells last
      return o.reverse ? cell_less(b[c], a[c]) : cell_less(a[c], b[c]);
    });
  }
  if (!o.columns.empty()) {
    std::vector<std::size_t> keep;
    for (const auto& name : o.columns) keep.push_back(column_of(t.header, name, "--columns"));
    TextTable chosen;
    for (auto c : keep) chosen.header.push_back(t.header[c]);
    for (const auto& r : t.rows) {
      chosen.rows.emplace_back();
      for (auto c : keep) chosen.rows.back().push_back(r[c]);
    }
    t = std::move(chosen);
  }
  if (!o.csv) return aligned(t, o.width);
  std::ostringstream os;
  auto line = [&](const std::vector<std::string>& r) {
    for (std::size_t i = 0; i < r.size(); ++i) os << (i ? "," : "") << csv_cell(r[i]);
    os << "\n";
  };
  line(t.header);
  for (const auto& r : t.rows) line(r);
  return os.str();
}

std::string show_summary(const std::string& dir, const ShowOptions& o) {
  if (!fs::exists(fs::path(dir) / "sweep.h5"))
    throw OutputError(dir + ": no sweep.h5 here (is it a sweep's output folder? a sweep writes it once its first "
                            "runs start)");
  std::vector<std::string> varied;
  const auto rows = read_sweep_index(dir, &varied);
  const auto metrics = shown_metrics(rows, o.metric_filters);
  if (!o.group_by) return render(run_table(rows, varied, metrics), o);
  std::vector<std::string> keys = *o.group_by;
  if (keys.empty())
    std::copy_if(varied.begin(), varied.end(), std::back_inserter(keys), [](const auto& k) { return k != "run.seed"; });
  return render(grouped_table(rows, varied, keys, metrics), o);
}

std::size_t terminal_width(int fd) {
  winsize w{};
  if (isatty(fd) && ioctl(fd, TIOCGWINSZ, &w) == 0 && w.ws_col > 0) return w.ws_col;
  if (const char* c = std::getenv("COLUMNS"); c && std::atoi(c) > 0) return static_cast<std::size_t>(std::atoi(c));
  return 80;
}

}  // namespace modlab::runner
