#include "syncbn/train/run_state.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "support/error.h"
#include "syncbn/error.h"

namespace syncbn::train {
namespace {

namespace fs = std::filesystem;
using syncbn::testing::error_of;

// A fresh directory, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    path_ = (fs::temp_directory_path() / "syncbn_run_state_XXXXXX").string();
    if (::mkdtemp(path_.data()) == nullptr) path_.clear();
  }
  ~TempDir() {
    if (!path_.empty()) fs::remove_all(path_);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

std::set<std::string> file_names(const std::string& directory) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(directory))
    names.insert(entry.path().filename().string());
  return names;
}

std::string this_host() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

RunState sample_state(int64_t step) {
  RunState state;
  // Values whose bits a text or rounding step would change: -0, a denormal, the float nearest
  // 0.1, the largest float.
  state.model = {{"0.weight", Tensor::from_vector({2, 3}, {-0.0f, 1e-45f, 0.1f, -2.5f,
                                                           std::numeric_limits<float>::max(),
                                                           static_cast<float>(step)})},
                 {"1.running_mean", Tensor::from_vector({2}, {3.0f, -1.0f / 3.0f})},
                 {"1.num_batches_tracked", Tensor::from_vector({1}, {17.0f})}};
  state.optimizer = {{"state.0.momentum_buffer",
                      Tensor::from_vector({2, 3}, {1e-30f, -1e30f, 0.5f, 0.25f, 0.125f, 7.0f})}};
  state.position = {/*epoch=*/2, /*sample_offset=*/96, step};
  // 0.1 + 0.2 is not 0.3: a double that only the shortest round-trip text keeps exactly.
  state.epoch_totals = {0.1 + 0.2, 41.0, 96.0};
  state.world_size = 4;
  state.global_batch = 32;
  state.settings = {{"model", "mlp"}, {"norm", "syncbn"}, {"batch-size", "8"}, {"lr", "0.02"}};
  return state;
}

void expect_same_tensors(const NamedTensors& a, const NamedTensors& b) {
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    ASSERT_EQ(a[i].second.shape(), b[i].second.shape()) << a[i].first;
    const std::vector<float> x = a[i].second.to_vector(), y = b[i].second.to_vector();
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0)
        << a[i].first << " differs in its bits";
  }
}

void truncate_file(const std::string& path, std::uintmax_t bytes) { fs::resize_file(path, bytes); }

// Flips one bit of the last byte (tensor data) of `path`.
void flip_last_byte(const std::string& path) {
  std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
  file.seekg(-1, std::ios::end);
  char byte = 0;
  file.get(byte);
  file.seekp(-1, std::ios::end);
  file.put(static_cast<char>(byte ^ 0x01));
}

TEST(RunStateTest, SaveAndLoadKeepEveryBitAndEveryField) {
  const TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const RunState saved = sample_state(1234);
  const std::string path = dir / checkpoint_file_name(1234);
  EXPECT_EQ(checkpoint_file_name(1234), "ckpt-step-00001234.safetensors");
  save_run_state(path, saved);
  // Only the checkpoint is left: the temporary file was renamed over it.
  EXPECT_EQ(file_names(dir.path()), std::set<std::string>{"ckpt-step-00001234.safetensors"});

  const RunState loaded = load_run_state(path);
  expect_same_tensors(loaded.model, saved.model);
  expect_same_tensors(loaded.optimizer, saved.optimizer);
  EXPECT_EQ(loaded.position.epoch, 2);
  EXPECT_EQ(loaded.position.sample_offset, 96);
  EXPECT_EQ(loaded.position.step, 1234);
  EXPECT_EQ(loaded.epoch_totals, saved.epoch_totals);  // exact, 0.30000000000000004 included
  EXPECT_EQ(loaded.world_size, 4);
  EXPECT_EQ(loaded.global_batch, 32);
  EXPECT_EQ(loaded.settings, saved.settings);  // in their order
}

TEST(RunStateTest, FileThatIsNotATrainingCheckpointIsANamedError) {
  const TempDir dir;
  const std::string weights = dir / "weights.safetensors";
  save_safetensors(weights, {{"0.weight", Tensor::zeros({2})}});  // what --save writes
  EXPECT_NE(error_of([&] {
              load_run_state(weights);
            }).find("weights.safetensors: not a training checkpoint: metadata lacks"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_run_state(dir / "absent.safetensors"); }).find("absent"),
            std::string::npos);
}

TEST(RunStateTest, NewestValidCheckpointIsUsedAndEachBrokenNewerOneIsReported) {
  const TempDir dir;
  for (int64_t step : {5, 10, 15})
    save_run_state(dir / checkpoint_file_name(step), sample_state(step));
  const std::string newest = dir / checkpoint_file_name(15);
  const std::string middle = dir / checkpoint_file_name(10);

  std::vector<std::string> reports;
  auto report = [&](const std::string& message) { reports.push_back(message); };
  std::string chosen;
  EXPECT_EQ(load_newest_run_state(dir.path(), &chosen, report).position.step, 15);
  EXPECT_EQ(chosen, newest);
  EXPECT_TRUE(reports.empty());

  // A writer killed mid-file cannot leave this (it writes a temporary file), but a disk can.
  truncate_file(newest, fs::file_size(newest) / 2);
  EXPECT_EQ(load_newest_run_state(dir.path(), &chosen, report).position.step, 10);
  EXPECT_EQ(chosen, middle);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].rfind(newest, 0), 0u) << reports[0];  // names the file first

  reports.clear();
  flip_last_byte(middle);
  EXPECT_EQ(load_newest_run_state(dir.path(), &chosen, report).position.step, 5);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_NE(reports[1].find(middle + ": checksum mismatch"), std::string::npos) << reports[1];

  flip_last_byte(dir / checkpoint_file_name(5));
  EXPECT_NE(error_of([&] {
              load_newest_run_state(dir.path(), &chosen, report);
            }).find("none of its 3 checkpoint(s) is valid"),
            std::string::npos);
  const TempDir empty;
  EXPECT_NE(error_of([&] {
              load_newest_run_state(empty.path(), &chosen, report);
            }).find("no checkpoint (ckpt-step-*.safetensors) to resume from"),
            std::string::npos);
}

TEST(RunStateTest, CheckpointsAreListedByStepAndOtherFilesIgnored) {
  const TempDir dir;
  for (const char* name :
       {"ckpt-step-00000020.safetensors", "ckpt-step-100000000.safetensors",
        "ckpt-step-00000003.safetensors", "ckpt-step-00000007.safetensors.tmp.h.1.0",
        "ckpt-step-x.safetensors", "weights.safetensors", "notes.txt"}) {
    std::ofstream(dir / name) << "x";
  }
  const auto listed = list_checkpoints(dir.path());
  ASSERT_EQ(listed.size(), 3u);
  EXPECT_EQ(listed[0].first, 3);
  EXPECT_EQ(listed[1].first, 20);
  EXPECT_EQ(listed[2].first, 100000000);  // nine digits sort after eight by number
  EXPECT_EQ(listed[2].second, dir / "ckpt-step-100000000.safetensors");
}

TEST(RunStateTest, StrayTemporaryFilesOfGoneWritersAreRemovedAndLiveOnesKept) {
  const TempDir dir;
  // A process that has exited: its pid names no process (until reused, which takes far longer).
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ::waitpid(child, nullptr, 0);
  const std::string host = this_host();
  const std::string gone =
      "ckpt-step-00000040.safetensors.tmp." + host + "." + std::to_string(child) + ".0";
  const std::string live =
      "ckpt-step-00000045.safetensors.tmp." + host + "." + std::to_string(::getpid()) + ".3";
  const std::string other_host = "ckpt-step-00000045.safetensors.tmp.node-7.example.org.12.1";
  const std::string kept = "ckpt-step-00000030.safetensors";
  for (const std::string& name : {gone, live, other_host, kept, std::string("notes.tmp.1")}) {
    std::ofstream(dir / name) << "partial";
  }
  const std::vector<std::string> removed = remove_stray_temps(dir.path());
  EXPECT_EQ(std::set<std::string>(removed.begin(), removed.end()),
            (std::set<std::string>{dir / gone, dir / other_host}));
  EXPECT_EQ(file_names(dir.path()), (std::set<std::string>{live, kept, "notes.tmp.1"}));
}

TEST(RunStateTest, PruningKeepsTheNewestAndDropsStepsBeyondTheRunsOwn) {
  const TempDir dir;
  for (int step = 1; step <= 6; ++step) std::ofstream(dir / checkpoint_file_name(step)) << "x";
  // A run resumed from step 2 has just written step 4: 5 and 6 belong to the run it replaced.
  const auto removed = prune_checkpoints(dir.path(), /*step=*/4, /*keep=*/2);
  EXPECT_EQ(removed.size(), 4u);
  EXPECT_EQ(file_names(dir.path()),
            (std::set<std::string>{checkpoint_file_name(3), checkpoint_file_name(4)}));
  EXPECT_THROW(prune_checkpoints(dir.path(), 4, 0), Error);
}

TEST(RunStateTest, ResumeNamesTheFirstSettingThatDiffersAndAllowsBatchAndSteps) {
  const std::vector<std::pair<std::string, std::string>> saved = {
      {"model", "mlp"}, {"norm", "syncbn"}, {"steps", "20"}, {"batch-size", "8"}, {"lr", "0.02"}};
  auto current = saved;
  current[2].second = "0";   // steps
  current[3].second = "16";  // batch-size
  EXPECT_NO_THROW(check_resumable(saved, current, "c.safetensors"));
  current[1].second = "bn";
  current[4].second = "0.1";
  EXPECT_NE(error_of([&] { check_resumable(saved, current, "c.safetensors"); })
                .find("--resume c.safetensors: the checkpoint was written with norm 'syncbn', "
                      "this run has 'bn'"),
            std::string::npos);
  current = saved;
  current.emplace_back("seed", "3");
  EXPECT_NE(error_of([&] {
              check_resumable(saved, current, "c.safetensors");
            }).find("the checkpoint does not record seed"),
            std::string::npos);
  EXPECT_TRUE(setting_may_change_on_resume("batch-size"));
  EXPECT_FALSE(setting_may_change_on_resume("epochs"));
}

}  // namespace
}  // namespace syncbn::train
