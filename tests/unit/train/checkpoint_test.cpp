#include "syncbn/train/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "syncbn/error.h"
#include "syncbn/nn/batch_norm.h"
#include "syncbn/train/safetensors.h"

namespace syncbn::train {
namespace {

namespace fs = std::filesystem;

TEST(CheckpointIntegrityTest, MetadataCatchesCorruptionAndRenamedTensors) {
  NamedTensors tensors = {{"a.weight", Tensor::from_vector({2, 2}, {1, 2, 3, 4})},
                          {"a.bias", Tensor::from_vector({2}, {5, 6})}};
  const auto metadata = integrity_metadata(tensors);
  EXPECT_NO_THROW(verify_integrity(tensors, metadata, "x.safetensors"));
  EXPECT_NO_THROW(verify_integrity(tensors, {}, "x.safetensors"));  // other writers: no claims

  tensors[1].second.data()[0] = 5.5f;  // one flipped value
  try {
    verify_integrity(tensors, metadata, "x.safetensors");
    FAIL() << "a changed value must fail the checksum";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x.safetensors: checksum mismatch"), std::string::npos);
  }
  tensors[1].second.data()[0] = 5.0f;
  tensors[1].first = "a.shift";
  EXPECT_THROW(verify_integrity(tensors, metadata, "x.safetensors"), Error);
}

TEST(CheckpointIntegrityTest, SignatureIsOneLinePerTensorAsEarlierCheckpointsRecordedIt) {
  // Files already written carry this text; it must not change for them to keep verifying.
  const NamedTensors tensors = {{"a.weight", Tensor::zeros({2, 3})},
                                {"a.num_batches_tracked", Tensor::zeros({})}};
  EXPECT_EQ(integrity_metadata(tensors).at("signature"),
            "a.weight [2, 3]\na.num_batches_tracked []\n");
  EXPECT_EQ(integrity_metadata(tensors).at("crc32").size(), 8u);
}

TEST(CheckpointTest, ModelSurvivesSaveAndLoadThroughAFile) {
  std::string directory = (fs::temp_directory_path() / "syncbn_checkpoint_XXXXXX").string();
  ASSERT_NE(::mkdtemp(directory.data()), nullptr);
  const std::string file = directory + "/bn.safetensors";
  nn::BatchNorm2d source(2);
  float value = 0.5f;
  for (auto& [name, tensor] : source.state_dict()) {
    Tensor destination = tensor;  // shares storage with the parameter or buffer
    for (int64_t i = 0; i < destination.numel(); ++i) destination.data()[i] = value++;
  }
  save_safetensors(file, source.state_dict(), integrity_metadata(source.state_dict()));

  std::map<std::string, std::string> metadata;
  const NamedTensors loaded = load_safetensors(file, &metadata);
  EXPECT_NO_THROW(verify_integrity(loaded, metadata, file));
  nn::BatchNorm2d restored(2);
  load_state_dict(restored, loaded);
  const auto expected = source.state_dict();
  const auto actual = restored.state_dict();
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(actual[i].first, expected[i].first);
    EXPECT_EQ(actual[i].second.to_vector(), expected[i].second.to_vector()) << expected[i].first;
  }
  fs::remove_all(directory);
}

}  // namespace
}  // namespace syncbn::train
