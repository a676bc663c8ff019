// syncbn-train's handling of bad input: every case ends with one clear error naming the problem
// and a non-zero exit, never a crash or a hang. Runs the real binary (a world of one).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "syncbn/train/safetensors.h"

namespace {

namespace fs = std::filesystem;

struct ProcessResult {
  int exit_code;
  std::string output;
};

ProcessResult run_train(const std::string& args) {
  // `timeout` turns a hang into a failure instead of a stuck test run.
  const std::string command =
      std::string("timeout 60 ") + SYNCBN_TRAIN_BINARY + " --no-progress " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe)) output += buffer;
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), output};
}

void expect_error(const std::string& args, const std::string& message) {
  const ProcessResult run = run_train(args);
  EXPECT_NE(run.exit_code, 0) << args << "\n" << run.output;
  EXPECT_LT(run.exit_code, 124) << "timed out or crashed: " << args << "\n" << run.output;
  EXPECT_NE(run.output.find(message), std::string::npos)
      << "expected '" << message << "' for: " << args << "\n"
      << run.output;
}

void write_u32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

void write_gz(const fs::path& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  gzclose(f);
}

// A Fashion-MNIST-shaped directory of n images (rows x cols) and m labels, gzip-compressed.
fs::path make_data_dir(const std::string& name, uint32_t images, uint32_t labels,
                       uint32_t image_magic = 0x803, uint32_t rows = 28, uint32_t cols = 28,
                       std::size_t truncate_images_to = 0) {
  const fs::path dir =
      fs::temp_directory_path() / ("syncbn_cli_" + name + std::to_string(getpid()));
  fs::create_directories(dir);
  for (const char* prefix : {"train", "t10k"}) {
    std::string image_bytes;
    write_u32(image_bytes, image_magic);
    write_u32(image_bytes, images);
    write_u32(image_bytes, rows);
    if ((image_magic & 0xFF) == 3) write_u32(image_bytes, cols);
    image_bytes.append(static_cast<std::size_t>(images) * rows * cols, '\x10');
    if (truncate_images_to) image_bytes.resize(truncate_images_to);
    write_gz(dir / (std::string(prefix) + "-images-idx3-ubyte.gz"), image_bytes);
    std::string label_bytes;
    write_u32(label_bytes, 0x801);
    write_u32(label_bytes, labels);
    for (uint32_t i = 0; i < labels; ++i) label_bytes.push_back(static_cast<char>(i % 10));
    write_gz(dir / (std::string(prefix) + "-labels-idx1-ubyte.gz"), label_bytes);
  }
  return dir;
}

TEST(TrainCliTest, UnknownModelNormAndInitAreNamed) {
  expect_error("--model vgg", "unknown model 'vgg'");
  expect_error("--norm foo", "unknown norm 'foo'");
  expect_error("--init magic", "magic");
}

TEST(TrainCliTest, BatchSizeZeroIsRejected) { expect_error("--batch-size 0", "--batch-size"); }

TEST(TrainCliTest, NegativeOrNonNumericLearningRateIsRejected) {
  expect_error("--lr=-1", "--lr");
  expect_error("--lr abc", "lr");
}

TEST(TrainCliTest, UnknownFlagIsRejected) { expect_error("--bogus 3", "bogus"); }

TEST(TrainCliTest, MissingDataDirectoryExplainsHowToGetTheData) {
  expect_error("--data-dir /nonexistent/fmnist", "/nonexistent/fmnist");
}

TEST(TrainCliTest, TruncatedImageFileNamesTheFileAndSizes) {
  const fs::path dir = make_data_dir("truncated", 100, 100, 0x803, 28, 28, 5000);
  expect_error("--data-dir " + dir.string(), "train-images-idx3-ubyte.gz");
  fs::remove_all(dir);
}

TEST(TrainCliTest, WrongMagicNumberIsRejected) {
  const fs::path dir = make_data_dir("magic", 100, 100, 0x0000ABCD);
  expect_error("--data-dir " + dir.string(), "magic");
  fs::remove_all(dir);
}

TEST(TrainCliTest, WrongDimensionsAreRejected) {
  // A 2-D "image" file (magic 0x802: two dimensions).
  const fs::path dir = make_data_dir("dims", 100, 100, 0x802);
  expect_error("--data-dir " + dir.string(), "train-images-idx3-ubyte.gz");
  fs::remove_all(dir);
}

TEST(TrainCliTest, LabelCountDifferentFromImageCountIsRejected) {
  const fs::path dir = make_data_dir("count", 100, 99);
  expect_error("--data-dir " + dir.string(), "99");
  fs::remove_all(dir);
}

TEST(TrainCliTest, MissingConfigFileIsRejected) {
  expect_error("--config /nonexistent.cfg", "/nonexistent.cfg");
}

TEST(TrainCliTest, ConfigFileIsReadAndTheCommandLineWins) {
  const fs::path cfg =
      fs::temp_directory_path() / ("syncbn_cli_" + std::to_string(getpid()) + ".cfg");
  std::ofstream(cfg) << "model = mlp\nnorm = gn\nbatch-size = 0\n";
  // The file's batch-size 0 would be an error; the command line's 16 wins.
  const ProcessResult run =
      run_train("--config " + cfg.string() +
                " --batch-size 16 --dataset synthetic --synthetic-samples 64 --steps 2");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("mlp + gn"), std::string::npos) << run.output;
  std::ofstream(cfg) << "batch-size = 0\n";
  expect_error("--config " + cfg.string(), "--batch-size");
  fs::remove(cfg);
}

// --init-from: a saved model loaded strictly over the initialisation. With lr 0 and no norm
// (no buffers to update), training from it changes nothing; a file of another model is an
// error naming the file and the keys, before training.
TEST(TrainCliTest, InitFromLoadsASavedModelAndRejectsAnotherModelsFile) {
  const fs::path dir = fs::temp_directory_path() / ("syncbn_cli_init" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string common = "--dataset synthetic --synthetic-samples 256 --batch-size 32 ";
  const std::string first = (dir / "first.safetensors").string();
  const std::string second = (dir / "second.safetensors").string();
  ProcessResult run =
      run_train(common + "--model mlp --norm none --steps 3 --seed 1 --save " + first);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  run = run_train(common + "--model mlp --norm none --steps 2 --seed 2 --lr 0 --init-from " +
                  first + " --save " + second);
  ASSERT_EQ(run.exit_code, 0) << run.output;
  const auto a = syncbn::train::load_safetensors(first);
  const auto b = syncbn::train::load_safetensors(second);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(a[i].second.to_vector(), b[i].second.to_vector()) << a[i].first;
  }
  expect_error(common + "--model cnn --norm bn --steps 1 --init-from " + first,
               "--init-from " + first + ": error(s) in loading state_dict");
  expect_error(common + "--steps 1 --init-from " + (dir / "absent.safetensors").string(),
               "absent.safetensors");
  fs::remove_all(dir);
}

TEST(TrainCliTest, SyntheticRunWritesMetricsAndCheckpoint) {
  const fs::path dir = fs::temp_directory_path() / ("syncbn_cli_run" + std::to_string(getpid()));
  fs::create_directories(dir);
  const ProcessResult run = run_train(
      "--dataset synthetic --synthetic-samples 256 --batch-size 32 --epochs 2 "
      "--model cnn --norm bn --synthetic-shape 1,12,12 --metrics " +
      (dir / "m.jsonl").string() + " --save " + (dir / "w.safetensors").string());
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::ifstream metrics(dir / "m.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(metrics, line)) {
    ++lines;
    for (const char* key :
         {"\"epoch\"", "\"step\"", "\"train_loss\"", "\"train_accuracy\"", "\"test_loss\"",
          "\"test_accuracy\"", "\"images_per_second\"", "\"seconds\""}) {
      EXPECT_NE(line.find(key), std::string::npos) << key << " missing in " << line;
    }
  }
  EXPECT_EQ(lines, 2);
  EXPECT_GT(fs::file_size(dir / "w.safetensors"), 8u);
  fs::remove_all(dir);
}

// A small synthetic run: a few steps of the MLP on 8x8 samples.
const std::string kTinyRun =
    "--dataset synthetic --synthetic-samples 64 --synthetic-shape 1,8,8 --batch-size 16 ";

TEST(TrainCliTest, IdxHeaderWhoseDimensionsOverflowIsAnErrorNotACrash) {
  const fs::path dir = make_data_dir("overflow", 10, 10);
  // 0xFFFFFFFF^3 bytes claimed: the 64-bit product wraps.
  std::string header;
  write_u32(header, 0x803);
  for (int d = 0; d < 3; ++d) write_u32(header, 0xFFFFFFFFu);
  write_gz(dir / "train-images-idx3-ubyte.gz", header + "tiny");
  expect_error("--data-dir " + dir.string(), "overflows a 64-bit size");
  fs::remove_all(dir);
}

TEST(TrainCliTest, SyntheticShapeWhoseProductOverflowsIsAnErrorNotACrash) {
  // 2^32 x 2^32 x 4 wraps a 64-bit product to 0; 2^21 cubed to a negative number.
  expect_error("--dataset synthetic --synthetic-shape 4294967296,4294967296,4",
               "overflows a 64-bit size");
  expect_error("--dataset synthetic --synthetic-shape 2097152,2097152,2097152",
               "overflows a 64-bit size");
}

TEST(TrainCliTest, SyntheticShapeTooLargeForMemoryNamesTheSize) {
  expect_error("--dataset synthetic --synthetic-shape 1,100000,100000", "out of memory allocating");
}

TEST(TrainCliTest, NumericFlagsOutOfRangeNameTheFlagAndTheRange) {
  expect_error("--threads 70000", "--threads must be an integer in 0..1024");
  expect_error("--threads=-1", "--threads");
  expect_error("--seed=-1", "--seed must be an integer in 0..18446744073709551615, got '-1'");
  expect_error("--epochs 0", "--epochs must be an integer in 1..");
  expect_error("--momentum 2", "--momentum must be a finite number in [0, 1], got 2");
  expect_error("--warmup-epochs nan", "--warmup-epochs");
  expect_error("--bucket-kib 0", "--bucket-kib");
}

TEST(TrainCliTest, DivergedRunStopsAtOnceAndWritesNoCheckpoint) {
  const fs::path dir = fs::temp_directory_path() / ("syncbn_cli_nan" + std::to_string(getpid()));
  fs::create_directories(dir);
  const fs::path save = dir / "w.safetensors";
  const fs::path metrics = dir / "m.jsonl";
  const ProcessResult run = run_train(kTinyRun + "--norm none --lr 1e3 --epochs 50 --save " +
                                      save.string() + " --metrics " + metrics.string());
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_LT(run.exit_code, 124) << run.output;
  EXPECT_NE(run.output.find("training diverged at step"), std::string::npos) << run.output;
  EXPECT_EQ(run.output.find("saved"), std::string::npos) << run.output;
  EXPECT_FALSE(fs::exists(save));
  // Every metrics line that was written is valid JSON without NaN literals.
  std::ifstream lines(metrics);
  std::string line;
  while (std::getline(lines, line)) EXPECT_EQ(line.find("nan"), std::string::npos) << line;
  fs::remove_all(dir);
}

TEST(TrainCliTest, UnwritableOutputPathsFailBeforeTraining) {
  for (const char* flag : {"--save", "--metrics"}) {
    const ProcessResult run = run_train(kTinyRun + "--epochs 3 " + flag + " /nonexistent/dir/x");
    EXPECT_NE(run.exit_code, 0) << run.output;
    EXPECT_NE(run.output.find(std::string(flag) + " /nonexistent/dir/x"), std::string::npos)
        << run.output;
    EXPECT_EQ(run.output.find("epoch 1/"), std::string::npos) << "trained first:\n" << run.output;
  }
  expect_error(kTinyRun + "--save /", "is a directory");
}

TEST(TrainCliTest, OverLongOrBinaryConfigLinesAreQuotedBriefly) {
  const fs::path cfg =
      fs::temp_directory_path() / ("syncbn_cli_long" + std::to_string(getpid()) + ".cfg");
  std::ofstream(cfg) << "model = " << std::string(10240, 'x') << "\n";
  ProcessResult run = run_train("--config " + cfg.string());
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("line 1 is too long"), std::string::npos) << run.output;
  EXPECT_LT(run.output.size(), 400u) << run.output;
  std::ofstream(cfg, std::ios::binary)
      << "model = mlp\nnorm " << std::string("\0\x01\xff", 3) << " = bn\n";
  run = run_train("--config " + cfg.string());
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("line 2"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("\\x00\\x01\\xFF"), std::string::npos) << run.output;
  // A line short enough to pass, but not a setting: Boost's message, with the line cut short.
  std::ofstream(cfg) << std::string(3000, 'y') << "\n";
  run = run_train("--config " + cfg.string());
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("(3000 bytes)"), std::string::npos) << run.output;
  EXPECT_LT(run.output.size(), 400u) << run.output;
  fs::remove(cfg);
}

TEST(TrainCliTest, CheckpointAndResumeFlagsAreCheckedBeforeTraining) {
  expect_error(kTinyRun + "--resume", "--resume without a path needs --checkpoint-dir");
  expect_error(kTinyRun + "--checkpoint-every 5", "--checkpoint-every needs --checkpoint-dir");
  expect_error(kTinyRun + "--checkpoint-dir /tmp --keep-checkpoints 0", "--keep-checkpoints");
  expect_error(kTinyRun + "--resume /nonexistent/run", "/nonexistent/run: no such file");
  expect_error(kTinyRun + "--checkpoint-dir /proc/syncbn-no", "--checkpoint-dir /proc/syncbn-no");
}

TEST(TrainCliTest, ResumeRefusesOtherSettingsOrAPlainWeightsFile) {
  const fs::path dir = fs::temp_directory_path() / ("syncbn_cli_resume" + std::to_string(getpid()));
  fs::create_directories(dir);  // for --save; --checkpoint-dir would create it
  const std::string run = kTinyRun + "--norm bn --steps 3 --checkpoint-dir " + dir.string();
  const ProcessResult first = run_train(run + " --save " + (dir / "w.safetensors").string());
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_TRUE(fs::exists(dir / "ckpt-step-00000003.safetensors")) << first.output;
  expect_error(kTinyRun + "--norm gn --resume " + dir.string(),
               "the checkpoint was written with norm 'bn', this run has 'gn'");
  expect_error(kTinyRun + "--norm bn --resume " + (dir / "w.safetensors").string(),
               "not a training checkpoint");
  // The batch per rank may change; --resume DIR and --resume=DIR are the same.
  for (const std::string& flag : {"--resume " + dir.string(), "--resume=" + dir.string()}) {
    const ProcessResult resumed = run_train(
        "--dataset synthetic --synthetic-samples 64 --synthetic-shape 1,8,8 --batch-size 8 "
        "--norm bn " +
        flag);
    EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_NE(resumed.output.find("resumed from " + (dir / "ckpt-step-00000003").string()),
              std::string::npos)
        << resumed.output;
  }
  fs::remove_all(dir);
}

TEST(TrainCliTest, DivergedRunKeepsOnlyCheckpointsOfFiniteWeights) {
  const fs::path dir = fs::temp_directory_path() / ("syncbn_cli_nanck" + std::to_string(getpid()));
  const ProcessResult run = run_train(kTinyRun +
                                      "--norm none --lr 1e3 --epochs 50 "
                                      "--checkpoint-every 1 --keep-checkpoints 100 "
                                      "--checkpoint-dir " +
                                      dir.string());
  EXPECT_NE(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("training diverged at step"), std::string::npos) << run.output;
  // Whatever was written before the divergence holds finite values only.
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::map<std::string, std::string> metadata;
    for (const auto& [name, tensor] :
         syncbn::train::load_safetensors(entry.path().string(), &metadata)) {
      for (float value : tensor.to_vector()) {
        ASSERT_TRUE(std::isfinite(value)) << entry.path() << " " << name;
      }
    }
  }
  fs::remove_all(dir);
}

}  // namespace
