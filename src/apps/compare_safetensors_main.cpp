// syncbn-compare-safetensors A B [--rtol R] [--atol A] [--ignore NAME-SUFFIX ...]
// Compares two safetensors files tensor by tensor: same names and shapes, and values within
// |a - b| <= atol + rtol * |b|. Prints the worst tensor; exits 0 when they match, 1 when not,
// 2 on bad input. Used by the equivalence tests (P ranks of b samples == 1 rank of P*b).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "syncbn/error.h"
#include "syncbn/train/checkpoint.h"
#include "syncbn/train/safetensors.h"

int main(int argc, char** argv) {
  std::vector<std::string> files, ignored;
  double rtol = 1e-4, atol = 1e-6;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--rtol" || arg == "--atol" || arg == "--ignore") && i + 1 < argc) {
      const std::string value = argv[++i];
      if (arg == "--ignore") {
        ignored.push_back(value);
      } else {
        (arg == "--rtol" ? rtol : atol) = std::strtod(value.c_str(), nullptr);
      }
    } else if (arg.rfind("--", 0) == 0) {
      std::fprintf(stderr, "unknown option %s\n", arg.c_str());
      return 2;
    } else {
      files.push_back(arg);
    }
  }
  if (files.size() != 2) {
    std::fprintf(stderr,
                 "usage: syncbn-compare-safetensors A B [--rtol R] [--atol A] [--ignore SUFFIX]\n");
    return 2;
  }
  try {
    auto load = [](const std::string& path) {
      std::map<std::string, std::string> metadata;
      const auto tensors = syncbn::train::load_safetensors(path, &metadata);
      syncbn::train::verify_integrity(tensors, metadata, path);
      std::map<std::string, syncbn::Tensor> out;
      for (auto& [name, tensor] : tensors) out[name] = tensor;
      return out;
    };
    auto a = load(files[0]);
    auto b = load(files[1]);
    auto skip = [&](const std::string& name) {
      for (const auto& suffix : ignored) {
        if (name.size() >= suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
          return true;
      }
      return false;
    };
    bool ok = true;
    double worst = 0;
    std::string worst_name;
    for (const auto& [name, ta] : a) {
      if (skip(name)) continue;
      auto it = b.find(name);
      if (it == b.end()) {
        std::printf("%s: only in %s\n", name.c_str(), files[0].c_str());
        ok = false;
        continue;
      }
      const syncbn::Tensor& tb = it->second;
      if (ta.shape() != tb.shape()) {
        std::printf("%s: shape %s vs %s\n", name.c_str(), syncbn::shape_str(ta.shape()).c_str(),
                    syncbn::shape_str(tb.shape()).c_str());
        ok = false;
        continue;
      }
      const float* x = ta.data();
      const float* y = tb.data();
      for (int64_t i = 0; i < ta.numel(); ++i) {
        const double difference = std::fabs(double(x[i]) - y[i]);
        // Equal values are within any tolerance, also rtol = atol = 0 (exact) where 0 / 0 is NaN.
        const double excess = difference == 0 ? 0 : difference / (atol + rtol * std::fabs(y[i]));
        if (!(excess <= worst)) {  // also catches NaN
          worst = std::isnan(excess) ? INFINITY : excess;
          worst_name = name + "[" + std::to_string(i) + "]";
        }
      }
    }
    for (const auto& [name, tb] : b) {
      if (!skip(name) && !a.count(name)) {
        std::printf("%s: only in %s\n", name.c_str(), files[1].c_str());
        ok = false;
      }
    }
    ok = ok && worst <= 1.0;
    std::printf("%s: %zu tensors, worst %s at %.3g of the tolerance (rtol %g, atol %g)\n",
                ok ? "MATCH" : "DIFFER", a.size(), worst_name.c_str(), worst, rtol, atol);
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "syncbn-compare-safetensors: %s\n", e.what());
    return 2;
  }
}
