// syncbn-train's handling of bad input: every case ends with one clear error naming the problem
// and a non-zero exit, never a crash or a hang. Runs the real binary (a world of one).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

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

}  // namespace
