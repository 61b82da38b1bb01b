// `modlab show`'s table: per run or grouped over seeds (mean ± std), sorted, chosen columns,
// CSV, fitted to a terminal width; unknown names are errors with the closest column.
#define BOOST_TEST_MODULE show
#include <boost/test/unit_test.hpp>

#include <modlab/errors.hpp>
#include <modlab/runner/show.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

using namespace modlab::runner;

namespace {

RunSummary run(std::int64_t index, const std::string& experts, std::int64_t seed, const std::string& status,
               double accuracy) {
  RunSummary r;
  r.index = index;
  r.run_id = "id" + std::to_string(index);
  r.seed = seed;
  r.status = status;
  r.params = {{"model.num_experts", experts}, {"run.seed", std::to_string(seed)}};
  if (!std::isnan(accuracy)) r.final_metrics = {{"test_accuracy", accuracy}, {"fit_loss", 0.5}};
  return r;
}

const std::vector<std::string> kVaried = {"model.num_experts", "run.seed"};

std::vector<RunSummary> sweep() {
  return {run(0, "1", 0, "completed", 0.7), run(1, "1", 1, "completed", 0.8), run(2, "2", 0, "completed", 0.9),
          run(3, "2", 1, "failed", std::numeric_limits<double>::quiet_NaN()), run(4, "4", 0, "pending", std::nan(""))};
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const modlab::ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

BOOST_AUTO_TEST_CASE(one_row_per_run_without_the_fit_losses) {
  const auto rows = sweep();
  const auto metrics = shown_metrics(rows, {});
  BOOST_TEST(metrics == std::vector<std::string>{"test_accuracy"});
  const TextTable t = run_table(rows, kVaried, metrics);
  BOOST_TEST(t.header == (std::vector<std::string>{"#", "run_id", "status", "model.num_experts", "run.seed", "test_accuracy"}));
  BOOST_TEST_REQUIRE(t.rows.size() == 5u);
  BOOST_TEST(t.rows[1] == (std::vector<std::string>{"1", "id1", "completed", "1", "1", "0.8"}));
  BOOST_TEST(t.rows[3].back() == "");  // a failed run has no metric
  BOOST_TEST(render(t, {}) ==
             "#  run_id  status     model.num_experts  run.seed  test_accuracy\n"
             "0  id0     completed  1                  0         0.7\n"
             "1  id1     completed  1                  1         0.8\n"
             "2  id2     completed  2                  0         0.9\n"
             "3  id3     failed     2                  1\n"
             "4  id4     pending    4                  0\n");
}

BOOST_AUTO_TEST_CASE(grouped_rows_give_mean_and_sample_std_of_the_completed_runs) {
  const TextTable t = grouped_table(sweep(), kVaried, {"model.num_experts"}, {"test_accuracy"});
  BOOST_TEST(t.header == (std::vector<std::string>{"model.num_experts", "runs", "test_accuracy"}));
  BOOST_TEST_REQUIRE(t.rows.size() == 3u);
  BOOST_TEST(t.rows[0] == (std::vector<std::string>{"1", "2/2", "0.75 ± 0.07071"}));
  BOOST_TEST(t.rows[1] == (std::vector<std::string>{"2", "1/2", "0.9"}));  // one completed: the mean alone
  BOOST_TEST(t.rows[2] == (std::vector<std::string>{"4", "0/1", ""}));
  BOOST_TEST(message_of([] { grouped_table(sweep(), kVaried, {"model.num_expert"}, {}); })
                 .find("--group-by: no column 'model.num_expert' (did you mean 'model.num_experts'?)") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(sorting_by_value_either_way_with_empty_cells_last) {
  ShowOptions o;
  o.sort = "test_accuracy";
  o.columns = {"run_id", "test_accuracy"};
  const TextTable t = run_table(sweep(), kVaried, {"test_accuracy"});
  BOOST_TEST(render(t, o) == "run_id  test_accuracy\nid0     0.7\nid1     0.8\nid2     0.9\nid3\nid4\n");
  o.reverse = true;
  BOOST_TEST(render(t, o) == "run_id  test_accuracy\nid2     0.9\nid1     0.8\nid0     0.7\nid3\nid4\n");
  // "10" after "9": numbers compare by value, grouped cells by their mean
  TextTable n{{"x"}, {{"10"}, {"9 ± 1"}, {"abc"}}};
  o = ShowOptions{};
  o.sort = "x";
  BOOST_TEST(render(n, o) == "x\n9 ± 1\n10\nabc\n");
  o.sort = "test_acuracy";
  BOOST_TEST(message_of([&] { render(t, o); }).find("--sort: no column 'test_acuracy' (did you mean 'test_accuracy'?)") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(csv_quotes_and_keeps_every_column_while_a_narrow_terminal_drops_the_last_ones) {
  TextTable t{{"key", "value"}, {{"[4, 4]", "say \"hi\""}, {"plain", "1"}}};
  ShowOptions o;
  o.csv = true;
  o.width = 5;  // ignored for CSV
  BOOST_TEST(render(t, o) == "key,value\n\"[4, 4]\",\"say \"\"hi\"\"\"\nplain,1\n");
  o.csv = false;
  o.width = 10;
  BOOST_TEST(render(t, o) == "key\n[4, 4]\nplain\n(1 more columns: choose with --columns, or --csv for all)\n");
  o.width = 80;
  BOOST_TEST(render(t, o).find("more columns") == std::string::npos);
}
