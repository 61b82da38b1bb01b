#define BOOST_TEST_MODULE config
#include <boost/test/unit_test.hpp>

#include "config_error_of.hpp"

#include <modlab/config.hpp>
#include <modlab/errors.hpp>
#include <modlab/runner/config_check.hpp>
#include <modlab/runner/sweep.hpp>

using namespace modlab;
using modlab::runner::AccessLog;
using modlab::runner::canonical_text;
using modlab::runner::validate_keys;

namespace {
SourceLocation loc(int line) { return SourceLocation{"sweep.toml", line, 1}; }

Config model_table() {
  Value::Table t;
  t["num_experts"] = Value::integer(4, loc(3));
  t["temperature"] = Value::floating(0.5, loc(4));
  t["lr_as_int"] = Value::integer(2, loc(5));
  t["name"] = Value::string("moe", loc(6));
  t["hidden"] = Value::array({Value::integer(32, loc(7)), Value::integer(16, loc(7))}, loc(7));
  t["routing"] = Value::array({Value::array({Value::integer(0, loc(8)), Value::integer(1, loc(8))}, loc(8))}, loc(8));
  Value::Table gate;
  gate["kind"] = Value::string("mlp", loc(10));
  t["gate"] = Value::table(gate, loc(9));
  return Config(std::make_shared<Value>(Value::table(t, loc(2))), "model", std::make_shared<AccessLog>());
}

using test_config_error::error_of;
}  // namespace

BOOST_AUTO_TEST_CASE(typed_access) {
  Config c = model_table();
  BOOST_TEST(c.get<std::int64_t>("num_experts") == 4);
  BOOST_TEST(c.get<int>("num_experts") == 4);
  BOOST_TEST(c.get<double>("temperature") == 0.5);
  BOOST_TEST(c.get<double>("lr_as_int") == 2.0);  // integers are accepted where floats are expected
  BOOST_TEST(c.get<std::string>("name") == "moe");
  BOOST_TEST((c.get<std::vector<std::int64_t>>("hidden") == std::vector<std::int64_t>{32, 16}));
  BOOST_TEST(c.get<std::vector<std::vector<std::int64_t>>>("routing")[0][1] == 1);
  BOOST_TEST(c.get<std::string>("gate.kind") == "mlp");
  BOOST_TEST(c.sub("gate").get<std::string>("kind") == "mlp");
  BOOST_TEST(c.get_or<std::int64_t>("missing", 7) == 7);
  BOOST_TEST(c.sub("gate").prefix() == "model.gate");
}

BOOST_AUTO_TEST_CASE(errors_name_key_type_and_line) {
  Config c = model_table();
  auto m = error_of([&] { c.get<std::int64_t>("temperature"); });
  BOOST_TEST(m.find("sweep.toml:4:1") != std::string::npos, m);
  BOOST_TEST(m.find("model.temperature") != std::string::npos, m);
  BOOST_TEST(m.find("expected integer, found float") != std::string::npos, m);
  m = error_of([&] { c.get<std::vector<std::string>>("hidden"); });
  BOOST_TEST(m.find("array of strings") != std::string::npos, m);
  BOOST_TEST(m.find("element 0 is integer") != std::string::npos, m);
  m = error_of([&] { c.get<std::string>("nope"); });
  BOOST_TEST(m.find("model.nope: required key is missing") != std::string::npos, m);
  m = error_of([&] { c.sub("gate").get<bool>("kind"); });
  BOOST_TEST(m.find("sweep.toml:10:1: model.gate.kind: expected boolean, found string \"mlp\"") != std::string::npos, m);
}

BOOST_AUTO_TEST_CASE(choices_are_checked_with_the_list_and_the_line) {
  Config c = model_table();
  BOOST_TEST(c.get_choice("name", "x", {"mode", "moe"}) == "moe");
  BOOST_TEST(c.get_choice("missing", "mode", {"mode", "moe"}) == "mode");  // the fallback
  auto m = error_of([&] { c.get_choice("gate.kind", "linear", {"linear", "cnn"}); });
  BOOST_TEST(m == "sweep.toml:10:1: model.gate.kind: expected one of \"linear\", \"cnn\", got \"mlp\"", m);
  m = error_of([&] { c.check_choice("name", "mpl", {"mlp"}); });
  BOOST_TEST(m.find("sweep.toml:6:1: model.name: expected one of \"mlp\", got \"mpl\"") == 0u, m);
}

BOOST_AUTO_TEST_CASE(access_log_tracks_reads) {
  auto log = std::make_shared<AccessLog>();
  Config base = model_table();
  Config c(base.shared_value(), "model", log);
  c.get<int>("num_experts");
  c.sub("gate").get<std::string>("kind");
  BOOST_TEST(log->was_read("model.num_experts"));
  BOOST_TEST(log->was_read("model.gate.kind"));
  BOOST_TEST(log->was_read("model.gate"));  // a child was read
  BOOST_TEST(!log->was_read("model.temperature"));
}

BOOST_AUTO_TEST_CASE(validate_keys_suggests_and_checks_types) {
  Config c = model_table();
  auto key = [](std::string name, ValueType type, ValueType element = ValueType::Null) {
    KeySpec k;
    k.name = std::move(name);
    k.type = type;
    k.element = element;
    return k;
  };
  std::vector<KeySpec> keys = {
      key("num_experts", ValueType::Int),         key("temperature", ValueType::Float),
      key("lr_as_int", ValueType::Float),         key("name", ValueType::String),
      key("hidden", ValueType::Array, ValueType::Int), key("routing", ValueType::Array, ValueType::Array),
      key("gate.kind", ValueType::String),
  };
  BOOST_CHECK_NO_THROW(validate_keys(c, keys));

  auto missing_temp = keys;
  missing_temp[1].name = "temperatur";  // the file's key is now unknown, the declared one close to it
  auto m = error_of([&] { validate_keys(c, missing_temp); });
  BOOST_TEST(m.find("unknown key 'model.temperature'") != std::string::npos, m);
  BOOST_TEST(m.find("did you mean 'model.temperatur'") != std::string::npos, m);
  BOOST_TEST(m.find("sweep.toml:4") != std::string::npos, m);

  auto wrong = keys;
  wrong[0].type = ValueType::String;
  m = error_of([&] { validate_keys(c, wrong); });
  BOOST_TEST(m.find("model.num_experts: expected string, found integer 4") != std::string::npos, m);

  auto wrong_elem = keys;
  wrong_elem[4].element = ValueType::String;
  m = error_of([&] { validate_keys(c, wrong_elem); });
  BOOST_TEST(m.find("expected array of strings") != std::string::npos, m);

  auto nogate = keys;
  nogate.pop_back();
  m = error_of([&] { validate_keys(c, nogate); });
  BOOST_TEST(m.find("unknown key 'model.gate'") != std::string::npos, m);
}

BOOST_AUTO_TEST_CASE(unknown_names_get_the_closest_known_one) {
  Config c = model_table();
  std::vector<std::string> names = {"num_experts", "temperature", "top_k"};
  auto m = error_of([&] { c.fail_unknown("name", "key", "num_expert", names); });
  BOOST_TEST(m == "sweep.toml:6:1: model.name: unknown key 'num_expert' (did you mean 'num_experts'?)", m);
  m = error_of([&] { c.fail_unknown("name", "key", "tempreature", names); });
  BOOST_TEST(m.find("(did you mean 'temperature'?)") != std::string::npos, m);
  m = error_of([&] { c.fail_unknown("name", "key", "completely_different", names); });
  BOOST_TEST(m == "sweep.toml:6:1: model.name: unknown key 'completely_different'", m);
}

BOOST_AUTO_TEST_CASE(canonical_text_is_order_independent_and_round_trips_floats) {
  Value::Table a, b;
  a["x"] = Value::floating(0.1);
  a["y"] = Value::integer(3);
  b["y"] = Value::integer(3, loc(9));
  b["x"] = Value::floating(0.1, loc(1));
  BOOST_TEST(canonical_text(Value::table(a)) == canonical_text(Value::table(b)));
  BOOST_TEST(canonical_text(Value::table(a)) == "x = 0.1\ny = 3\n");
  BOOST_TEST(Value::floating(1.0).literal() == "1.0");
  BOOST_TEST(Value::floating(1e-15).literal() == "1e-15");
  BOOST_TEST(Value::string("a\"b").literal() == "\"a\\\"b\"");
  BOOST_TEST((Value::table(a) == Value::table(b)));
}
