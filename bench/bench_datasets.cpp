// Dataset loading benchmark: the rotated_mnist and celeba plugins, loaded through the plugin
// registry as a run would, against the torchvision-style Python loaders in bench/python/.
//
// Every measurement runs in its own process (this executable re-run with --child), so the peak
// resident memory of one load is not hidden by an earlier one: the child records its RSS after
// start-up, resets the high-water mark (/proc/self/clear_refs), loads, and reports VmHWM.
//
// Usage: bench_datasets [--celeba-images N] [--repeat R] [--skip-python]
// Data: $MODLAB_DATA_DIR (default <source>/../shared/data) with mnist/ and celeba/.

#include "bench_util.hpp"

#include <modlab/config.hpp>
#include <modlab/dataset.hpp>
#include <modlab/runner/registry.hpp>
#include <modlab/runner/run_host.hpp>
#include <modlab/runner/remove_tree.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

namespace fs = std::filesystem;

namespace {

std::int64_t status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
  return 0;
}

void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

modlab::Value parse_value(const std::string& v) {
  if (v == "true" || v == "false") return modlab::Value::boolean(v == "true");
  if (!v.empty() && v.find_first_not_of("-0123456789") == std::string::npos) return modlab::Value::integer(std::stoll(v));
  return modlab::Value::string(v);
}

// --child <plugin> <threads> key=value...: one load, one "RESULT k=v ..." line on stdout.
int child(int argc, char** argv) {
  const std::string plugin = argv[2];
  const int threads = std::stoi(argv[3]);
  modlab::Value::Table t;
  for (int i = 4; i < argc; ++i) {
    std::string kv = argv[i];
    auto eq = kv.find('=');
    t[kv.substr(0, eq)] = parse_value(kv.substr(eq + 1));
  }
  torch::set_num_threads(threads);
  auto& registry = modlab::runner::default_registry();
  std::vector<std::string> log;
  modlab::runner::HostOptions opts;
  opts.threads = threads;
  opts.logger = [&log](const std::string& m) { log.push_back(m); };
  modlab::runner::RunHost host(registry, opts);
  // A small load first, so that code pages touched on first use (LibTorch kernels, zlib, libjpeg)
  // belong to the baseline rather than to the measured load.
  {
    modlab::Value::Table warm = t;
    if (plugin == "rotated_mnist") {
      warm["train_limit"] = modlab::Value::integer(64);
      if (warm.count("mode") && warm["mode"].as_string() == "plain") warm["test_limit"] = modlab::Value::integer(64);
    } else {
      warm["samples"] = modlab::Value::integer(8);
      warm["cache"] = modlab::Value::boolean(false);
      warm.erase("cache_dir");
    }
    host.create_dataset(plugin, modlab::Config(std::make_shared<modlab::Value>(modlab::Value::table(warm)), "dataset"));
    log.clear();
  }
  const std::int64_t baseline = status_bytes("VmRSS");
  reset_peak();

  const auto t0 = std::chrono::steady_clock::now();
  auto ds = host.create_dataset(plugin, modlab::Config(std::make_shared<modlab::Value>(modlab::Value::table(t)), "dataset"));
  std::int64_t bytes = 0, examples = 0;
  for (const auto& name : ds->spec().splits) {
    auto b = ds->split(name)->all();
    examples += b.size();
    for (const auto* x : {&b.inputs, &b.targets, &b.groups})
      if (x->defined()) bytes += x->numel() * static_cast<std::int64_t>(x->element_size());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::int64_t peak = status_bytes("VmHWM");

  double decode_secs = -1;
  for (const auto& l : log) {
    auto p = l.find(" images in ");
    if (l.find("decoded ") != std::string::npos && p != std::string::npos) decode_secs = std::stod(l.substr(p + 11));
  }
  std::cout << "RESULT seconds=" << secs << " examples=" << examples << " tensor_bytes=" << bytes
            << " baseline=" << baseline << " peak=" << peak << " decode_seconds=" << decode_secs
            << " torch_threads=" << torch::get_num_threads() << "\n";
  return 0;
}

using Result = std::map<std::string, double>;

Result parse_result(const std::string& out) {
  Result r;
  auto p = out.find("RESULT ");
  if (p == std::string::npos) return r;
  std::istringstream in(out.substr(p + 7));
  for (std::string kv; in >> kv;) {
    auto eq = kv.find('=');
    if (eq != std::string::npos) r[kv.substr(0, eq)] = std::stod(kv.substr(eq + 1));
  }
  return r;
}

// The value of "key": <number> in a one-line JSON object (enough for the references' output).
double json_number(const std::string& json, const std::string& key) {
  auto p = json.find("\"" + key + "\":");
  return p == std::string::npos ? -1.0 : std::stod(json.substr(p + key.size() + 3));
}
std::string json_string(const std::string& json, const std::string& key) {
  auto p = json.find("\"" + key + "\": \"");
  if (p == std::string::npos) return "";
  p += key.size() + 5;
  return json.substr(p, json.find('"', p) - p);
}

std::string self_exe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("bench_datasets");
}

// Best (fastest) of `repeat` child runs.
Result run_child(const std::string& args, int repeat) {
  Result best;
  for (int i = 0; i < repeat; ++i) {
    int code = 0;
    std::string out = bench::capture(self_exe() + " --child " + args + " 2>&1", &code);
    Result r = parse_result(out);
    if (r.empty()) {
      std::cerr << "child failed: " << args << "\n" << out << "\n";
      return r;
    }
    if (best.empty() || r["seconds"] < best["seconds"]) best = r;
  }
  return best;
}

std::string mib(double bytes) { return bench::num(bytes / (1024.0 * 1024.0), 1) + " MiB"; }

// A CelebA-layout folder of `n` images: each image is a link to one of the 10 real images (in
// turn), with the real attribute rows 1..n and every image in the train partition.
fs::path make_celeba_folder(const fs::path& real, std::int64_t n) {
  fs::path dir = fs::temp_directory_path() / ("modlab_bench_celeba_" + std::to_string(::getpid()));
  fs::create_directories(dir / "img_align_celeba");
  std::ifstream attrs(real / "annotations_full" / "list_attr_celeba_first20000.txt");
  std::ofstream out_attrs(dir / "list_attr_celeba.txt"), out_parts(dir / "list_eval_partition.txt");
  std::string line;
  std::getline(attrs, line);
  out_attrs << n << "\n";
  std::getline(attrs, line);
  out_attrs << line << "\n";
  for (std::int64_t i = 0; i < n && std::getline(attrs, line); ++i) {
    out_attrs << line << "\n";
    char name[32];
    std::snprintf(name, sizeof name, "%06lld.jpg", static_cast<long long>(i + 1));
    char src[32];
    std::snprintf(src, sizeof src, "%06lld.jpg", static_cast<long long>(i % 10 + 1));
    fs::create_symlink(real / "img_align_celeba" / src, dir / "img_align_celeba" / name);
    out_parts << name << " 0\n";
  }
  return dir;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 4 && std::string(argv[1]) == "--child") return child(argc, argv);

  std::int64_t celeba_images = 2000;
  int repeat = 3;
  bool python = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--celeba-images" && i + 1 < argc) celeba_images = std::stoll(argv[++i]);
    else if (a == "--repeat" && i + 1 < argc) repeat = std::stoi(argv[++i]);
    else if (a == "--skip-python") python = false;
    else {
      std::cerr << "usage: bench_datasets [--celeba-images N (<= 20000)] [--repeat R] [--skip-python]\n";
      return 2;
    }
  }
  const char* env = std::getenv("MODLAB_DATA_DIR");
  const fs::path data = env ? fs::path(env) : fs::path(MODLAB_SOURCE_DIR) / ".." / "shared" / "data";
  const fs::path mnist = data / "mnist", celeba = data / "celeba";
  const std::string py = "/usr/bin/python3 " + std::string(MODLAB_SOURCE_DIR) + "/bench/python/";
  const unsigned hw = std::thread::hardware_concurrency();

  std::string loadavg;
  std::getline(std::ifstream("/proc/loadavg"), loadavg);
  std::cout << "# Dataset loading (rotated_mnist, celeba)\n\n"
            << "host: " << hw << " hardware threads, load average at start " << loadavg.substr(0, 14) << "; data: " << data.string() << "; C++ times are the best of " << repeat
            << " runs, each in a fresh process; Python runs once.\n"
            << "peak = VmHWM - VmRSS before loading (after a small warm-up load; high-water mark reset); tensors = "
               "inputs + targets + groups of all splits.\n\n";

  std::vector<std::vector<std::string>> rows;
  std::string backend;
  auto add = [&](const std::string& what, const std::string& threads, const Result& r, const std::string& value,
                 const std::string& ref, const std::string& ratio) {
    double peak = r.count("peak") ? r.at("peak") - r.at("baseline") : 0.0;
    double tb = r.count("tensor_bytes") ? r.at("tensor_bytes") : 0.0;
    rows.push_back({what, threads, value, ref, ratio, r.empty() ? "-" : mib(peak), r.empty() ? "-" : mib(tb),
                    r.empty() || tb <= 0 ? "-" : bench::num(peak / tb, 2)});
  };

  if (fs::exists(mnist / "train-images-idx3-ubyte.gz")) {
    Result plain = run_child("rotated_mnist 1 mode=plain root=" + mnist.string(), repeat);
    std::string ref = "-", ratio = "-";
    if (python) {
      std::string j = bench::capture(py + "mnist_reference.py --mode plain --root " + mnist.string());
      double s = json_number(j, "seconds");
      if (s > 0) {
        ref = bench::num(s, 2) + " s (peak " + mib(json_number(j, "peak_rss") - json_number(j, "baseline_rss")) + ")";
        backend = json_string(j, "backend");
        if (!plain.empty()) ratio = bench::num(s / plain["seconds"], 1) + "x";
      }
    }
    add("MNIST plain, 60k+10k from .gz -> float tensors", "1", plain,
        plain.empty() ? "failed" : bench::num(plain["seconds"], 3) + " s", ref, ratio);

    Result rot = run_child("rotated_mnist 1 root=" + mnist.string(), repeat);
    ref = "-", ratio = "-";
    if (python) {
      std::string j = bench::capture(py + "mnist_reference.py --mode rotated --root " + mnist.string());
      double s = json_number(j, "seconds");
      if (s > 0) {
        ref = bench::num(s, 2) + " s (peak " + mib(json_number(j, "peak_rss") - json_number(j, "baseline_rss")) + ")";
        if (!rot.empty()) ratio = bench::num(s / rot["seconds"], 1) + "x";
      }
    }
    add("Rotated MNIST, goe defaults (240k items, 1/20 kept: 12k)", "1", rot,
        rot.empty() ? "failed" : bench::num(rot["seconds"], 3) + " s", ref, ratio);

    Result all = run_child("rotated_mnist 1 subsample=1 root=" + mnist.string(), repeat);
    add("Rotated MNIST, all 240k items (subsample = 1)", "1", all,
        all.empty() ? "failed" : bench::num(all["seconds"], 3) + " s", "-", "-");
  } else {
    std::cout << "MNIST not found in " << mnist.string() << ": MNIST rows skipped\n";
  }

  double py_best = 0.0;
  Result c1, c2;
  if (fs::exists(celeba / "annotations_full" / "list_attr_celeba_first20000.txt")) {
    celeba_images = std::min<std::int64_t>(celeba_images, 20000);
    fs::path folder = make_celeba_folder(celeba, celeba_images);
    const std::string base = "celeba 1 samples=0 cache=false root=" + folder.string();
    c1 = run_child(base + " decode_threads=1", repeat);
    c2 = run_child(base + " decode_threads=2", repeat);
    std::string ref0 = "-", ref2 = "-";
    double py0 = 0, py2 = 0;
    if (python) {
      std::string j0 = bench::capture(py + "celeba_reference.py --workers 0 --root " + folder.string());
      std::string j2 = bench::capture(py + "celeba_reference.py --workers 2 --root " + folder.string());
      py0 = json_number(j0, "images_per_s");
      py2 = json_number(j2, "images_per_s");
      if (py0 > 0) ref0 = bench::num(py0, 0) + " img/s (in process)";
      if (py2 > 0) ref2 = bench::num(py2, 0) + " img/s (DataLoader, 2 workers)";
      py_best = std::max(py0, py2);
    }
    auto rate = [&](const Result& r) { return r.empty() ? 0.0 : r.at("examples") / r.at("seconds"); };
    auto decode_rate = [&](const Result& r) {
      return r.empty() || r.at("decode_seconds") <= 0 ? 0.0 : r.at("examples") / r.at("decode_seconds");
    };
    const std::string what = "CelebA 178x218 JPEG -> 3x32x32, " + std::to_string(celeba_images) +
                             " decodes of the 10 real images (links), whole load";
    add(what, "1", c1,
        bench::num(rate(c1), 0) + " img/s (decode alone " + bench::num(decode_rate(c1), 0) + ")", ref0,
        py0 > 0 ? bench::num(rate(c1) / py0, 1) + "x" : "-");
    add(what, "2", c2,
        bench::num(rate(c2), 0) + " img/s (decode alone " + bench::num(decode_rate(c2), 0) + ")", ref2,
        py2 > 0 ? bench::num(rate(c2) / py2, 1) + "x" : "-");

    // Second load of the same configuration: read from the cache file, no decoding.
    fs::path cache_dir = folder / "cache";
    run_child("celeba 1 samples=0 cache_dir=" + cache_dir.string() + " root=" + folder.string(), 1);
    Result hit = run_child("celeba 1 samples=0 cache_dir=" + cache_dir.string() + " root=" + folder.string(), repeat);
    add("CelebA, same " + std::to_string(celeba_images) + " images from the cache file", "1", hit,
        hit.empty() ? "failed" : bench::num(hit["seconds"], 3) + " s (" + bench::num(rate(hit), 0) + " img/s)", "-", "-");
    modlab::runner::remove_tree(folder);
  } else {
    std::cout << "CelebA annotations not found in " << celeba.string() << ": CelebA rows skipped\n";
  }

  bench::table({"measurement", "threads", "modlab (C++ plugin)", "Python reference", "speed-up", "peak", "tensors",
                "peak/tensors"},
               rows);
  if (!c2.empty() && py_best > 0)
    std::cout << "\nCelebA, 2 threads vs the faster Python loader: "
              << bench::num(c2.at("examples") / c2.at("seconds") / py_best, 1) << "x (goal >= 2x)\n";
  std::cout << "LibTorch intra-op threads in the children: 1; JPEG decode threads as listed; Python: "
               "torch.set_num_threads(1), DataLoader workers as listed.\n";
  if (!backend.empty()) std::cout << "Python references (bench/python/): " << backend << ".\n";
  return 0;
}
