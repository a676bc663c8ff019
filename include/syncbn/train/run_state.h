#pragma once
// Resumable training (docs/DESIGN.md §6): the whole state of a run after an optimizer step as
// one checkpoint file, the directory of periodic checkpoints ("ckpt-step-00001234.safetensors"),
// and the choice of the newest valid one. The format is safetensors with integrity metadata
// (train/checkpoint.h): tensors "model.<state_dict name>" and "optimizer.<Sgd::state_dict
// name>"; everything else is text in "__metadata__".
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "syncbn/train/safetensors.h"

namespace syncbn::train {

// Where a run stands, in terms that do not depend on the global batch: the epoch in progress
// (0-based) and how many positions of its sample permutation the epoch's steps have consumed.
// An epoch that is complete is recorded as {epoch + 1, 0}.
struct RunPosition {
  int64_t epoch = 0;
  int64_t sample_offset = 0;
  int64_t step = 0;  // optimizer steps taken so far
};

struct RunState {
  NamedTensors model;      // Module::state_dict: parameters and buffers
  NamedTensors optimizer;  // optim::Sgd::state_dict: the momentum buffers that exist
  RunPosition position;
  // [sum of loss * n, correct, n] over the samples the epoch in progress has trained on so far,
  // summed over all ranks: a resumed epoch's metrics line covers the whole epoch.
  std::array<double, 3> epoch_totals{};
  int64_t world_size = 1;
  int64_t global_batch = 1;
  // The run's settings (TrainConfig::settings() and a fingerprint of its data), in order.
  std::vector<std::pair<std::string, std::string>> settings;
};

// Writes `state` to `path` through a temporary file unique to this writer
// ("<path>.tmp.<host>.<pid>.<counter>"), fsync'ed and renamed. Throws naming the path.
void save_run_state(const std::string& path, const RunState& state);
// Reads and validates a file save_run_state wrote: the safetensors structure, the signature and
// CRC-32 of its tensors, and every metadata field. Each failure is a syncbn::Error naming `path`.
RunState load_run_state(const std::string& path);

// "ckpt-step-00001234.safetensors" (at least 8 digits: names sort by step).
std::string checkpoint_file_name(int64_t step);
// The checkpoint files in `directory` as (step, path), oldest step first. Temporary files and
// other names are not listed. Throws when `directory` cannot be read.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& directory);

// The newest checkpoint in `directory` that loads and verifies. Each newer one that does not is
// passed to `report` with the reason ("<path>: checksum mismatch ...; using the one before").
// `chosen` receives the path. Throws when the directory has no checkpoint or none is valid.
RunState load_newest_run_state(const std::string& directory, std::string* chosen,
                               const std::function<void(const std::string&)>& report);

// Removes the temporary files that writers which no longer run left in `directory` (a writer
// killed between create and rename): those of another host, or of a process of this host that
// is gone. Returns the paths removed.
std::vector<std::string> remove_stray_temps(const std::string& directory);

// Called after the checkpoint of step `step` was written: removes every checkpoint of a later
// step (left by a run that this one resumed before its end: the next resume must not return to
// it) and all but the `keep` newest of the others. Returns the paths removed.
std::vector<std::string> prune_checkpoints(const std::string& directory, int64_t step,
                                           int64_t keep);

// The settings a resumed run may change: the step cap, the batch per rank (and with it the
// world size), the device and the bucket size. Every other one must be equal.
bool setting_may_change_on_resume(const std::string& name);
// Throws naming the first setting of `current` (in its order) whose value differs from the one
// `saved` records, or which `saved` lacks:
//   "--resume ckpt-step-00000040.safetensors: the checkpoint was written with norm syncbn,
//    this run has bn (a resumed run must keep it)"
void check_resumable(const std::vector<std::pair<std::string, std::string>>& saved,
                     const std::vector<std::pair<std::string, std::string>>& current,
                     const std::string& path);

}  // namespace syncbn::train
