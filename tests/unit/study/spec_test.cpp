// The study spec: axes parsed from text, keys forwarded to syncbn-train, bad input rejected with a
// message naming the key, and the cartesian product of cells.
#include "study/spec.h"

#include <gtest/gtest.h>

#include <algorithm>

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
  // ranks x batch x norm x seed, less syncbn:2 at 1 rank (2 batches x 3 seeds)
  ASSERT_EQ(expansion.cells.size(), 2u * 2 * 2 * 3 - 2 * 3);
  ASSERT_EQ(expansion.notes.size(), 1u);
  EXPECT_EQ(expansion.notes[0], "skipped: syncbn:2 needs a multiple of 2 ranks, not 1");
  EXPECT_EQ(expansion.cells[0].id, "np1-b4-bn-s0");
  EXPECT_EQ(expansion.cells[1].id, "np1-b4-bn-s1");
  EXPECT_EQ(expansion.cells[3].id, "np1-b8-bn-s0");
  EXPECT_EQ(expansion.cells[6].id, "np2-b4-bn-s0");
  EXPECT_EQ(expansion.cells[9].id, "np2-b4-syncbn_g2-s0");
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
  EXPECT_NE(
      error(base + "ranks = 4\n").find("s.cfg: option 'ranks' cannot be specified more than once"),
      std::string::npos);
  EXPECT_NE(error(base + "mode = sideways\n").find("mode must be weak or strong"),
            std::string::npos);
  EXPECT_NE(error(base + "lr = -1\n").find("lr must be a positive number"), std::string::npos);
  EXPECT_NE(error(base + "epochs = many\n").find("syncbn-train would reject"), std::string::npos);
  EXPECT_NE(error(base + "nesterov = maybe\n").find("nesterov is a switch"), std::string::npos);
  EXPECT_NE(error(base + "global-batch = 8\n").find("global-batch is for mode strong"),
            std::string::npos);
}

TEST(StudySpecTest, SweepAxesMultiplyTheCellsAndReachTheirArguments) {
  const Expansion expansion =
      expand(parse_spec("ranks = 1\nbatch-per-rank = 64\nnorms = none bn\nseeds = 0 1\nepochs = 2\n"
                        "[sweep]\nlr = 0.01 0.1\ninit = xavier constant:10 zeros\n",
                        "spec", {}));
  ASSERT_EQ(expansion.cells.size(), 2u * 3u * 2u * 2u);  // lr x init x norm x seed
  // Axes in key order (init, then lr), the first slowest; norm and seed inside.
  const Cell& first = expansion.cells.front();
  EXPECT_EQ(first.id, "np1-b64-init=xavier-lr=0.01-none-s0");
  EXPECT_EQ(first.sweep,
            (std::vector<std::pair<std::string, std::string>>{{"init", "xavier"}, {"lr", "0.01"}}));
  EXPECT_DOUBLE_EQ(first.lr, 0.01);
  const Cell& fifth = expansion.cells[4];
  EXPECT_EQ(fifth.id, "np1-b64-init=xavier-lr=0.1-none-s0");
  EXPECT_DOUBLE_EQ(fifth.lr, 0.1);
  const Cell& constant = expansion.cells[8];
  EXPECT_EQ(constant.id, "np1-b64-init=constant_10-lr=0.01-none-s0");
  const std::vector<std::string>& args = constant.train_args;
  const auto init = std::find(args.begin(), args.end(), "--init");
  ASSERT_NE(init, args.end());
  EXPECT_EQ(*(init + 1), "constant:10");
  EXPECT_EQ(std::count(args.begin(), args.end(), "--lr"), 1);
  EXPECT_EQ(*(std::find(args.begin(), args.end(), "--lr") + 1), "0.01");
}

TEST(StudySpecTest, ASweptLrFollowsTheLinearRule) {
  const Expansion expansion =
      expand(parse_spec("ranks = 2\nbatch-per-rank = 8\nnorms = bn\nlr-rule = linear\n"
                        "ref-batch = 64\n",
                        "spec", {"--sweep.lr", "0.1 0.4"}));
  ASSERT_EQ(expansion.cells.size(), 2u);
  EXPECT_DOUBLE_EQ(expansion.cells[0].lr, 0.1 * 16 / 64);
  EXPECT_DOUBLE_EQ(expansion.cells[1].lr, 0.4 * 16 / 64);
}

TEST(StudySpecTest, BadSweepsNameTheProblem) {
  const auto error = [](const std::string& sweep) {
    return error_of([&] {
      parse_spec("ranks = 1\nbatch-per-rank = 4\nnorms = bn\nepochs = 2\n[sweep]\n" + sweep,
                 "s.cfg", {});
    });
  };
  EXPECT_NE(error("colour = red blue\n").find("[sweep]: 'colour' is not a syncbn-train option"),
            std::string::npos);
  EXPECT_NE(error("norm = bn gn\n").find("use the norms axis"), std::string::npos);
  EXPECT_NE(error("epochs = 1 2\n").find("epochs is both a fixed key and a [sweep] axis"),
            std::string::npos);
  EXPECT_NE(error("lr = 0.1 0.1\n").find("lists 0.1 twice"), std::string::npos);
  EXPECT_NE(error("lr = 0.1 fast\n").find("[sweep] lr must be a positive number"),
            std::string::npos);
  EXPECT_NE(error("steps = 4 many\n").find("syncbn-train would reject"), std::string::npos);
  EXPECT_NE(error("dropout = 0.1 lots\n").find("syncbn-train would reject"), std::string::npos);
  // Values that differ only in characters a directory name does not take.
  EXPECT_NE(error_of([] {
              expand(parse_spec("ranks = 1\nbatch-per-rank = 4\nnorms = bn\n", "s.cfg",
                                {"--sweep.init", "constant:1 constant_1"}));
            }).find("share the id"),
            std::string::npos);
}

}  // namespace
}  // namespace syncbn::study
