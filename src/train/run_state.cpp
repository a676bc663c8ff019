#include "syncbn/train/run_state.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "syncbn/error.h"
#include "syncbn/train/checkpoint.h"
#include "util/format.h"

namespace syncbn::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "syncbn-run-state/1";
constexpr const char* kPrefix = "ckpt-step-";
constexpr const char* kSuffix = ".safetensors";
constexpr const char* kTempMarker = ".safetensors.tmp.";
constexpr const char* kModelPrefix = "model.";
constexpr const char* kOptimizerPrefix = "optimizer.";

bool starts_with(const std::string& text, const std::string& prefix) {
  return text.size() >= prefix.size() && text.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A whole text as a number of type T, or false.
template <typename T>
bool parse_number(const std::string& text, T& value) {
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  return !text.empty() && error == std::errc() && end == text.data() + text.size();
}

std::string host_name() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown-host";
  std::string host = name;
  // The name goes into a file name: keep it to characters that cannot split it.
  for (char& c : host) {
    if (c == '/' || c == '\0') c = '_';
  }
  return host;
}

// "<path>.tmp.<host>.<pid>.<counter>": two writers, or two writes of one, never share a name.
std::string unique_temp_path(const std::string& path) {
  static std::atomic<int64_t> counter{0};
  return path + ".tmp." + host_name() + "." + std::to_string(::getpid()) + "." +
         std::to_string(counter++);
}

NamedTensors with_prefix(const std::string& prefix, const NamedTensors& tensors) {
  NamedTensors out;
  out.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) out.emplace_back(prefix + name, tensor);
  return out;
}

class MetadataReader {
 public:
  MetadataReader(const std::map<std::string, std::string>& metadata, const std::string& path)
      : metadata_(metadata), path_(path) {}

  const std::string& text(const std::string& key) const {
    const auto it = metadata_.find(key);
    SYNCBN_CHECK(it != metadata_.end(), path_, ": not a training checkpoint: metadata lacks \"",
                 key, "\"");
    return it->second;
  }
  int64_t integer(const std::string& key, int64_t low) const {
    int64_t value = 0;
    SYNCBN_CHECK(parse_number(text(key), value) && value >= low, path_, ": metadata \"", key,
                 "\" must be an integer >= ", low, ", got ", quote_brief(text(key)));
    return value;
  }
  double real(const std::string& key) const {
    double value = 0;
    SYNCBN_CHECK(parse_number(text(key), value) && std::isfinite(value), path_, ": metadata \"",
                 key, "\" must be a finite number, got ", quote_brief(text(key)));
    return value;
  }

 private:
  const std::map<std::string, std::string>& metadata_;
  const std::string& path_;
};

std::string settings_json(const std::vector<std::pair<std::string, std::string>>& settings) {
  nlohmann::ordered_json object = nlohmann::ordered_json::array();
  for (const auto& [name, value] : settings) object.push_back({name, value});
  return object.dump();
}

std::vector<std::pair<std::string, std::string>> parse_settings(const std::string& text,
                                                                const std::string& path) {
  std::vector<std::pair<std::string, std::string>> settings;
  try {
    for (const auto& pair : nlohmann::json::parse(text)) {
      settings.emplace_back(pair.at(0).get<std::string>(), pair.at(1).get<std::string>());
    }
  } catch (const nlohmann::json::exception& e) {
    SYNCBN_FAIL(path, ": metadata \"settings\" is not a list of [name, value] pairs: ", e.what());
  }
  return settings;
}

}  // namespace

void save_run_state(const std::string& path, const RunState& state) {
  NamedTensors tensors = with_prefix(kModelPrefix, state.model);
  for (auto& named : with_prefix(kOptimizerPrefix, state.optimizer)) tensors.push_back(named);
  std::map<std::string, std::string> metadata = integrity_metadata(tensors);
  const RunPosition& p = state.position;
  metadata.insert({{"format", kFormat},
                   {"epoch", std::to_string(p.epoch)},
                   {"sample_offset", std::to_string(p.sample_offset)},
                   {"step", std::to_string(p.step)},
                   {"world_size", std::to_string(state.world_size)},
                   {"global_batch", std::to_string(state.global_batch)},
                   {"epoch_loss_sum", shortest_repr(state.epoch_totals[0])},
                   {"epoch_correct", shortest_repr(state.epoch_totals[1])},
                   {"epoch_samples", shortest_repr(state.epoch_totals[2])},
                   {"settings", settings_json(state.settings)}});
  save_safetensors(path, tensors, metadata, unique_temp_path(path));
}

RunState load_run_state(const std::string& path) {
  std::map<std::string, std::string> metadata;
  const NamedTensors tensors = load_safetensors(path, &metadata);
  verify_integrity(tensors, metadata, path);
  const MetadataReader read(metadata, path);
  SYNCBN_CHECK(read.text("format") == kFormat, path, ": checkpoint format ",
               quote_brief(read.text("format")), " is not ", kFormat);
  RunState state;
  for (const auto& [name, tensor] : tensors) {
    if (starts_with(name, kModelPrefix)) {
      state.model.emplace_back(name.substr(std::string(kModelPrefix).size()), tensor);
    } else if (starts_with(name, kOptimizerPrefix)) {
      state.optimizer.emplace_back(name.substr(std::string(kOptimizerPrefix).size()), tensor);
    } else {
      SYNCBN_FAIL(path, ": tensor '", name, "' is neither model.* nor optimizer.*");
    }
  }
  state.position.epoch = read.integer("epoch", 0);
  state.position.sample_offset = read.integer("sample_offset", 0);
  state.position.step = read.integer("step", 0);
  state.world_size = read.integer("world_size", 1);
  state.global_batch = read.integer("global_batch", 1);
  state.epoch_totals = {read.real("epoch_loss_sum"), read.real("epoch_correct"),
                        read.real("epoch_samples")};
  state.settings = parse_settings(read.text("settings"), path);
  return state;
}

std::string checkpoint_file_name(int64_t step) {
  char digits[32];
  std::snprintf(digits, sizeof digits, "%08lld", static_cast<long long>(step));
  return std::string(kPrefix) + digits + kSuffix;
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& directory) {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  fs::directory_iterator it(directory, ec);
  SYNCBN_CHECK(!ec, directory, ": cannot list the checkpoint directory: ", ec.message());
  for (const fs::directory_entry& entry : it) {
    const std::string name = entry.path().filename().string();
    if (!starts_with(name, kPrefix) || !ends_with(name, kSuffix)) continue;
    const std::string digits =
        name.substr(std::string(kPrefix).size(),
                    name.size() - std::string(kPrefix).size() - std::string(kSuffix).size());
    int64_t step = 0;
    if (!parse_number(digits, step) || step < 0) continue;
    found.emplace_back(step, entry.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

RunState load_newest_run_state(const std::string& directory, std::string* chosen,
                               const std::function<void(const std::string&)>& report) {
  const auto checkpoints = list_checkpoints(directory);
  SYNCBN_CHECK(!checkpoints.empty(), directory, ": no checkpoint (", kPrefix, "*", kSuffix,
               ") to resume from");
  std::string newest_failure;
  for (auto it = checkpoints.rbegin(); it != checkpoints.rend(); ++it) {
    try {
      RunState state = load_run_state(it->second);
      if (chosen != nullptr) *chosen = it->second;
      return state;
    } catch (const Error& e) {
      if (newest_failure.empty()) newest_failure = e.what();
      report(std::string(e.what()) + "; trying the checkpoint before it");
    }
  }
  SYNCBN_FAIL(directory, ": none of its ", checkpoints.size(),
              " checkpoint(s) is valid; the newest: ", newest_failure);
}

std::vector<std::string> remove_stray_temps(const std::string& directory) {
  std::vector<std::string> removed;
  std::error_code ec;
  fs::directory_iterator it(directory, ec);
  SYNCBN_CHECK(!ec, directory, ": cannot list the checkpoint directory: ", ec.message());
  const std::string this_host = host_name();
  for (const fs::directory_entry& entry : it) {
    const std::string name = entry.path().filename().string();
    const std::size_t marker = name.find(kTempMarker);
    if (!starts_with(name, kPrefix) || marker == std::string::npos) continue;
    // <host>.<pid>.<counter>; the host name may hold dots, so it is read from the right.
    const std::string writer = name.substr(marker + std::string(kTempMarker).size());
    const std::size_t last = writer.rfind('.');
    const std::size_t middle = last == std::string::npos ? last : writer.rfind('.', last - 1);
    int pid = 0;
    if (middle != std::string::npos && writer.substr(0, middle) == this_host &&
        parse_number(writer.substr(middle + 1, last - middle - 1), pid) && pid > 0 &&
        (::kill(pid, 0) == 0 || errno == EPERM)) {
      continue;  // its writer still runs on this host
    }
    if (fs::remove(entry.path(), ec)) removed.push_back(entry.path().string());
  }
  return removed;
}

std::vector<std::string> prune_checkpoints(const std::string& directory, int64_t step,
                                           int64_t keep) {
  SYNCBN_CHECK(keep >= 1, "prune_checkpoints: keep must be at least 1, got ", keep);
  std::vector<std::string> removed;
  const auto checkpoints = list_checkpoints(directory);
  int64_t kept = 0;
  for (auto it = checkpoints.rbegin(); it != checkpoints.rend(); ++it) {
    if (it->first <= step && kept < keep) {
      ++kept;
      continue;
    }
    std::error_code ec;
    if (fs::remove(it->second, ec)) removed.push_back(it->second);
  }
  return removed;
}

bool setting_may_change_on_resume(const std::string& name) {
  static const std::set<std::string> kMayChange = {"steps", "batch-size", "device", "bucket-kib"};
  return kMayChange.count(name) != 0;
}

void check_resumable(const std::vector<std::pair<std::string, std::string>>& saved,
                     const std::vector<std::pair<std::string, std::string>>& current,
                     const std::string& path) {
  const std::map<std::string, std::string> recorded(saved.begin(), saved.end());
  for (const auto& [name, value] : current) {
    if (setting_may_change_on_resume(name)) continue;
    const auto it = recorded.find(name);
    SYNCBN_CHECK(it != recorded.end(), "--resume ", path, ": the checkpoint does not record ", name,
                 " (this run has ", quote_brief(value), ")");
    SYNCBN_CHECK(it->second == value, "--resume ", path, ": the checkpoint was written with ", name,
                 " ", quote_brief(it->second), ", this run has ", quote_brief(value),
                 " (a resumed run must keep it)");
  }
}

}  // namespace syncbn::train
