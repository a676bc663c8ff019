// The study spec: axes parsed from text, keys forwarded to syncbn-train, bad input rejected with a
// message naming the key, and the cartesian product of cells.
#include "study/spec.h"

#include <gtest/gtest.h>

#include "support/error.h"

namespace syncbn::study {
namespace {

using syncbn::testing::error_of;

constexpr const char* kWeakSpec =
    "ranks = 1,2\n"
    "batch-per-rank = 4 8\n"
    "norms = bn syncbn:2\n"
    "seeds = 0 1 2\n"
    "lr = 0.1\n"
    "lr-rule = linear\n"
    "ref-batch = 32\n"
    "model = cnn\n"
    "epochs = 3\n"
    "nesterov = true\n";

TEST(StudySpecTest, IntegerListsTakeSpacesAndCommas) {
  EXPECT_EQ(parse_int_list("ranks", "1 2,4 ,8", 1), (std::vector<int64_t>{1, 2, 4, 8}));
  EXPECT_EQ(parse_int_list("seeds", "0", 0), (std::vector<int64_t>{0}));
}

TEST(StudySpecTest, BadIntegerListsNameTheKeyAndTheValue) {
  EXPECT_NE(error_of([] { parse_int_list("ranks", "", 1); }).find("ranks is empty"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_int_list("ranks", "1 two", 1); }).find("'two'"), std::string::npos);
  EXPECT_NE(error_of([] { parse_int_list("ranks", "0", 1); }).find("integers >= 1"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_int_list("ranks", "2 2", 1); }).find("lists 2 twice"),
            std::string::npos);
}

TEST(StudySpecTest, SyncBnWithAGroupSizeMapsToSyncGroupSize) {
  const NormSpec norm = parse_norm("syncbn:4");
  EXPECT_EQ(norm.name, "syncbn:4");
  EXPECT_EQ(norm.norm, "syncbn");
  EXPECT_EQ(norm.sync_group_size, 4);
  EXPECT_EQ(parse_norm("gn").sync_group_size, 0);
}

TEST(StudySpecTest, BadNormsAreRejected) {
  EXPECT_NE(error_of([] { parse_norm("batchnorm"); }).find("unknown norm 'batchnorm'"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_norm("bn:2"); }).find("only syncbn takes a group size"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_norm("syncbn:0"); }).find("K >= 1"), std::string::npos);
  EXPECT_NE(error_of([] { parse_norms(" , "); }).find("norms is empty"), std::string::npos);
}

TEST(StudySpecTest, WeakModeExpandsTheCartesianProductSeedsFastest) {
  const Expansion expansion = expand(parse_spec(kWeakSpec, "spec", {}));
  ASSERT_EQ(expansion.cells.size(), 2u * 2 * 2 * 3);
  EXPECT_TRUE(expansion.notes.empty());
  EXPECT_EQ(expansion.cells[0].id, "np1-b4-bn-s0");
  EXPECT_EQ(expansion.cells[1].id, "np1-b4-bn-s1");
  EXPECT_EQ(expansion.cells[3].id, "np1-b4-syncbn_g2-s0");
  const Cell& last = expansion.cells.back();
  EXPECT_EQ(last.id, "np2-b8-syncbn_g2-s2");
  EXPECT_EQ(last.global_batch, 16);
  // linear rule: 0.1 * 16 / 32
  EXPECT_DOUBLE_EQ(last.lr, 0.05);
  EXPECT_EQ(last.train_args,
            (std::vector<std::string>{"--model", "cnn", "--norm", "syncbn", "--sync-group-size",
                                      "2", "--batch-size", "8", "--seed", "2", "--lr", "0.05",
                                      "--epochs", "3", "--nesterov"}));
}

TEST(StudySpecTest, StrongModeSplitsTheGlobalBatchAndSkipsWhatDoesNotDivide) {
  const StudySpec spec =
      parse_spec("ranks = 1 2 3\nglobal-batch = 12 16\nmode = strong\nnorms = bn\n", "spec", {});
  const Expansion expansion = expand(spec);
  ASSERT_EQ(expansion.cells.size(), 5u);  // 16 does not split over 3 ranks
  ASSERT_EQ(expansion.notes.size(), 1u);
  EXPECT_NE(expansion.notes[0].find("global batch 16 does not split over 3"), std::string::npos);
  EXPECT_EQ(expansion.cells[4].id, "np3-b4-bn-s0");
  EXPECT_EQ(expansion.cells[4].global_batch, 12);
  // fixed rule: syncbn-train's default rate for every cell
  EXPECT_DOUBLE_EQ(expansion.cells[0].lr, spec.lr);
}

TEST(StudySpecTest, TheCommandLineOverridesTheFileAndArgumentsAfterDashesGoToTraining) {
  const StudySpec spec =
      parse_spec(kWeakSpec, "spec", {"--ranks", "4", "--epochs", "1", "--", "--init", "xavier"});
  EXPECT_EQ(spec.ranks, (std::vector<int64_t>{4}));
  EXPECT_EQ(spec.train_args,
            (std::vector<std::string>{"--epochs", "1", "--nesterov", "--init", "xavier"}));
}

TEST(StudySpecTest, BadSpecsNameTheProblem) {
  const auto error = [](const std::string& text) {
    return error_of([&] { parse_spec(text, "s.cfg", {}); });
  };
  const std::string base = "ranks = 2\nbatch-per-rank = 4\nnorms = bn\n";
  EXPECT_NE(error(base + "colour = blue\n").find("s.cfg: unknown key 'colour'"), std::string::npos);
  EXPECT_NE(error(base + "batch-size = 8\n").find("'batch-size' is set per cell"),
            std::string::npos);
  EXPECT_NE(error("ranks = 2\nnorms = bn\n").find("batch-per-rank is missing"), std::string::npos);
  EXPECT_NE(error(base + "ranks = 4\n").find("ranks"), std::string::npos);
  EXPECT_NE(error(base + "mode = sideways\n").find("mode must be weak or strong"),
            std::string::npos);
  EXPECT_NE(error(base + "lr = -1\n").find("lr must be a positive number"), std::string::npos);
  EXPECT_NE(error(base + "epochs = many\n").find("syncbn-train would reject"), std::string::npos);
  EXPECT_NE(error(base + "nesterov = maybe\n").find("nesterov is a switch"), std::string::npos);
  EXPECT_NE(error(base + "global-batch = 8\n").find("global-batch is for mode strong"),
            std::string::npos);
}

}  // namespace
}  // namespace syncbn::study
