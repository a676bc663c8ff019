#include "study/step_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "study/step_model_report.h"
#include "support/error.h"
#include "syncbn/error.h"

namespace syncbn::study {
namespace {

using syncbn::testing::error_of;

// alpha = 10 us, 1 GB/s: every term below is worked out by hand from the formulas in
// step_model.h.
const Network kNet{10e-6, 1e9};

TEST(StepModelTest, AllreduceFormulasGiveTheTextbookValues) {
  // Ring, P = 4, 1 MB: 2*3*10us + 2*3/4 * 1e6 B / 1e9 B/s = 60 us + 1500 us.
  EXPECT_NEAR(allreduce_seconds(AllreduceAlgorithm::kRing, 4, 1e6, kNet), 1560e-6, 1e-12);
  // Recursive doubling, P = 8, 1 kB: 3*10us + 3 * 1 us.
  EXPECT_NEAR(allreduce_seconds(AllreduceAlgorithm::kRecursiveDoubling, 8, 1e3, kNet), 33e-6,
              1e-12);
  // Rabenseifner, P = 8, 1 MB: 2*3*10us + 2*7/8 * 1000 us.
  EXPECT_NEAR(allreduce_seconds(AllreduceAlgorithm::kRabenseifner, 8, 1e6, kNet), 1810e-6, 1e-12);
  // Tree, P = 8, 1 kB: 2*3*10us + 2*3 * 1 us.
  EXPECT_NEAR(allreduce_seconds(AllreduceAlgorithm::kTree, 8, 1e3, kNet), 66e-6, 1e-12);
  // MPI's choice: recursive doubling for the small message, Rabenseifner for the large one.
  EXPECT_NEAR(allreduce_seconds(AllreduceAlgorithm::kMpi, 8, 1e3, kNet), 33e-6, 1e-12);
  EXPECT_NEAR(allreduce_seconds(AllreduceAlgorithm::kMpi, 8, 1e6, kNet), 1810e-6, 1e-12);
  // NCCL's choice between ring (2*7*10us + 1750 us) and tree (60 us + 6000 us): ring.
  EXPECT_NEAR(allreduce_seconds(AllreduceAlgorithm::kNccl, 8, 1e6, kNet), 1890e-6, 1e-12);
  // One rank communicates nothing.
  EXPECT_EQ(allreduce_seconds(AllreduceAlgorithm::kMpi, 1, 1e6, kNet), 0.0);
  EXPECT_EQ(ceil_log2(5), 3);
}

TEST(StepModelTest, RingBandwidthTermIsNcclTestsBusBandwidth) {
  // Without latency, nccl-tests' busBw = algBw * 2(P-1)/P = (n / T) * 2(P-1)/P is the link
  // bandwidth for every P.
  const Network no_latency{0, 3e9};
  for (const int64_t p : {2, 3, 8, 512}) {
    const double n = 1 << 24;
    const double t = allreduce_seconds(AllreduceAlgorithm::kRing, p, n, no_latency);
    const double bus = n / t * 2.0 * static_cast<double>(p - 1) / static_cast<double>(p);
    EXPECT_NEAR(bus / 3e9, 1.0, 1e-12) << "P = " << p;
  }
}

TEST(StepModelTest, CnnStructureIsReadFromTheModel) {
  const ModelStructure cnn = model_structure("cnn");
  EXPECT_EQ(cnn.batch_norm_channels, (std::vector<int64_t>{32, 64}));
  // conv 1->32 3x3 (no bias before a norm), BN(32), conv 32->64 3x3, BN(64), Linear 64*7*7->10.
  EXPECT_EQ(cnn.parameters, 1 * 32 * 9 + 2 * 32 + 32 * 64 * 9 + 2 * 64 + 64 * 7 * 7 * 10 + 10);
  ASSERT_EQ(cnn.bucket_bytes.size(), 1u);  // 200 kB: less than the first 1 MiB bucket
  EXPECT_EQ(cnn.bucket_bytes[0], 4 * cnn.parameters);

  const ModelStructure resnet = model_structure("resnet");
  EXPECT_GT(resnet.batch_norm_channels.size(), 4u);
  for (const int64_t c : resnet.batch_norm_channels) {
    EXPECT_TRUE(c == 32 || c == 64 || c == 128) << c;
  }
  EXPECT_THROW(model_structure("vgg"), Error);
}

TEST(StepModelTest, BucketsCloseAtTheirCapsAsDataParallelDoes) {
  const int64_t mib = 1 << 20;
  EXPECT_EQ(gradient_buckets({600000, 600000, 30000000, 1000}),
            (std::vector<int64_t>{1200000, 30000000, 1000}));
  // The last parameter never opens an empty bucket of its own.
  EXPECT_EQ(gradient_buckets({mib, 5}), (std::vector<int64_t>{mib, 5}));
  EXPECT_EQ(gradient_buckets({5, mib}), (std::vector<int64_t>{mib + 5}));
}

StepInput cnn_input(int64_t ranks, const std::string& norm) {
  StepInput input;
  input.model = model_structure("cnn");
  input.compute = profile_from_total({1e-3, 1e-4});
  input.batch_per_rank = 16;
  input.ranks = ranks;
  input.norm = parse_norm_sync(norm);
  input.network = kNet;
  return input;
}

TEST(StepModelTest, SyncBnLatencyGrowsWithRanksAndGroupsCapIt) {
  double previous = 0;
  for (const int64_t p : {2, 4, 8, 16, 64, 512}) {
    const StepTime global = predict_step(cnn_input(p, "syncbn"));
    const StepTime grouped = predict_step(cnn_input(p, p % 8 == 0 ? "syncbn:8" : "syncbn:2"));
    const StepTime local = predict_step(cnn_input(p, "bn"));
    EXPECT_GT(global.syncbn_comm, previous) << "P = " << p;
    previous = global.syncbn_comm;
    EXPECT_LE(grouped.syncbn_comm, global.syncbn_comm);
    EXPECT_EQ(grouped.syncbn_group, p % 8 == 0 ? 8 : 2);
    EXPECT_EQ(local.syncbn_comm, 0.0);
    EXPECT_LT(local.total, global.total);
  }
  // Groups of 8 cost at P = 512 what global SyncBN costs at P = 8.
  EXPECT_DOUBLE_EQ(predict_step(cnn_input(512, "syncbn:8")).syncbn_comm,
                   predict_step(cnn_input(8, "syncbn")).syncbn_comm);
  // Two BN layers (32, 64 channels), 2 latency-bound allreduces each, recursive doubling at
  // P = 4: per allreduce 2 alpha + 2 n / bandwidth, n = 8 (2C+1) or 8 (2C) bytes.
  const double expected = 4 * 2 * 10e-6 + 2 * 8.0 * (65 + 64 + 129 + 128) / 1e9;
  EXPECT_NEAR(predict_step(cnn_input(4, "syncbn")).syncbn_comm, expected, 1e-12);
}

TEST(StepModelTest, OneBucketIsAllExposedAndLaterBucketsOverlapBackward) {
  StepInput input = cnn_input(8, "bn");
  const StepTime one = predict_step(input);
  EXPECT_NEAR(one.grad_comm_exposed, one.grad_comm, 1e-15);
  // Two equal buckets: the first is ready halfway through backward and hides behind it when
  // its allreduce is shorter than half of backward; the second is exposed.
  input.model.bucket_bytes = {100000, 100000};
  const StepTime two = predict_step(input);
  const double each = allreduce_seconds(AllreduceAlgorithm::kMpi, 8, 100000, kNet);
  ASSERT_LT(each, two.backward / 2);
  EXPECT_NEAR(two.grad_comm_exposed, each, 1e-12);
  EXPECT_NEAR(two.total,
              two.data + two.forward + two.backward + two.optimizer + two.syncbn_comm + each,
              1e-12);
}

TEST(StepModelTest, LinearFitRecoversFixedAndPerSampleTime) {
  const LinearFit fit = fit_linear({{2, 2.0 + 3 * 2}, {8, 2.0 + 3 * 8}, {32, 2.0 + 3 * 32}});
  EXPECT_NEAR(fit.fixed, 2.0, 1e-9);
  EXPECT_NEAR(fit.per_sample, 3.0, 1e-9);
  const LinearFit one = fit_linear({{16, 8.0}});
  EXPECT_EQ(one.fixed, 0.0);
  EXPECT_NEAR(one.per_sample, 0.5, 1e-12);
  EXPECT_THROW(fit_linear({}), Error);
  EXPECT_THROW(fit_linear({{0, 1.0}}), Error);
}

TEST(StepModelTest, NetworkFitRecoversAlphaAndBandwidthOfExactTimes) {
  const Network truth{30e-6, 1.2e9};
  std::vector<AllreducePoint> points;
  for (const int64_t p : {2, 4, 8}) {
    for (double bytes = 8; bytes <= 4 << 20; bytes *= 4) {
      points.push_back({p, bytes, allreduce_seconds(AllreduceAlgorithm::kMpi, p, bytes, truth)});
    }
  }
  const Network fit = fit_network(points, AllreduceAlgorithm::kMpi);
  EXPECT_NEAR(fit.alpha_seconds / truth.alpha_seconds, 1.0, 0.01);
  EXPECT_NEAR(fit.bandwidth_bytes_per_second / truth.bandwidth_bytes_per_second, 1.0, 0.01);
  EXPECT_THROW(fit_network({{1, 8, 1e-6}, {1, 64, 1e-6}}, AllreduceAlgorithm::kMpi), Error);
}

TEST(StepModelTest, MetricsGiveStepTimeWithoutTheWarmUpEpoch) {
  // Old metrics (no phases): epoch 1 is dropped, epochs 2-3 give (3 + 5) s / (10 + 10) steps.
  std::istringstream old_lines(
      "{\"epoch\":1,\"step\":10,\"seconds\":9,\"world_size\":4,\"batch_size\":16}\n"
      "{\"epoch\":2,\"step\":20,\"seconds\":3,\"world_size\":4,\"batch_size\":16}\n"
      "{\"epoch\":3,\"step\":30,\"seconds\":5,\"world_size\":4,\"batch_size\":16}\n");
  const MeasuredStep old_run = measured_from_metrics(old_lines, "old");
  EXPECT_EQ(old_run.ranks, 4);
  EXPECT_EQ(old_run.batch_per_rank, 16);
  EXPECT_EQ(old_run.steps, 20);
  EXPECT_NEAR(old_run.total, 0.4, 1e-12);
  EXPECT_FALSE(old_run.has_phases);

  std::istringstream new_lines(
      "{\"step\":4,\"seconds\":2,\"world_size\":1,\"batch_size\":8,\"steps_in_epoch\":4,"
      "\"time\":{\"data\":0.4,\"forward\":0.4,\"backward\":0.8,\"syncbn_comm\":0.0,"
      "\"grad_comm_exposed\":0,\"optimizer\":0.4,\"other\":0}}\n");
  const MeasuredStep new_run = measured_from_metrics(new_lines, "new");
  EXPECT_TRUE(new_run.has_phases);
  EXPECT_NEAR(new_run.total, 0.5, 1e-12);
  EXPECT_NEAR(new_run.backward, 0.2, 1e-12);
  const ComputeProfile compute = fit_compute({new_run});
  EXPECT_NEAR(compute.optimizer.at(8), 0.1, 1e-12);
  EXPECT_NEAR(compute_of_run(new_run).backward.fixed, 0.2, 1e-12);
  EXPECT_THROW(compute_of_run(old_run), Error);

  std::istringstream empty("not json\n");
  EXPECT_THROW(measured_from_metrics(empty, "empty"), Error);
}

TEST(StepModelTest, StudyRowsGiveStepTimeFromTheirPhases) {
  std::istringstream rows(
      "{\"cell\":\"a\",\"status\":\"ok\",\"model\":\"cnn\",\"norm\":\"syncbn:2\",\"ranks\":4,"
      "\"batch_per_rank\":8,\"global_batch\":32,\"time_per_step\":{\"data\":0.001,\"forward\":"
      "0.002,\"backward\":0.003,\"syncbn_comm\":0.001,\"grad_comm_exposed\":0.001,\"optimizer\":"
      "0.001,\"other\":0.001}}\n"
      "{\"cell\":\"b\",\"status\":\"failed\",\"model\":\"cnn\",\"ranks\":4}\n"
      "{\"cell\":\"c\",\"status\":\"ok\",\"model\":\"cnn\",\"norm\":\"bn\",\"ranks\":2,"
      "\"batch_per_rank\":8,\"global_batch\":16,\"images_per_second\":1600}\n"
      "{\"cell\":\"d\",\"status\":\"ok\",\"model\":\"mlp\",\"norm\":\"bn\",\"ranks\":2}\n");
  const auto runs = measured_from_results(rows, "results.jsonl", "cnn");
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].first, "syncbn:2");
  EXPECT_NEAR(runs[0].second.total, 0.009, 1e-12);  // the disjoint parts, syncbn_comm not again
  EXPECT_NEAR(runs[1].second.total, 0.01, 1e-12);   // 16 images at 1600 images/s
}

TEST(StepModelTest, NormNamesAreThoseOfTheStudy) {
  EXPECT_FALSE(parse_norm_sync("bn").sync);
  EXPECT_EQ(parse_norm_sync("syncbn").group_at(64), 64);
  EXPECT_EQ(parse_norm_sync("syncbn:8").group_at(64), 8);
  EXPECT_NE(error_of([] {
              parse_norm_sync("syncbn:8").group_at(4);
            }).find("group size 8 does not divide the number of ranks 4"),
            std::string::npos);
  EXPECT_EQ(parse_norm_sync("syncbn:8").group_size, 8);
  EXPECT_EQ(parse_norm_sync("syncbn").group_size, 0);
  EXPECT_THROW(parse_norm_sync("syncbn:0"), Error);
  EXPECT_THROW(parse_norm_sync("syncbn:x"), Error);
  EXPECT_NE(error_of([] { parse_norm_sync("gn"); }).find("unknown norm 'gn' for the step model"),
            std::string::npos);
  EXPECT_THROW(parse_norm_sync("bn:2"), Error);
}

TEST(StepModelTest, ProjectionOfATinyConfigHasItsRowsAndConclusion) {
  ProjectionSpec spec;
  spec.models = {"cnn"};
  spec.ranks = {8, 64};
  spec.batches = {2};
  spec.norms = {"bn", "syncbn", "syncbn:8"};
  spec.network = kNet;
  spec.algorithm = AllreduceAlgorithm::kNccl;
  // 0.1 ms fixed: tree SyncBN at P = 64 costs 2 layers * 2 * 12 alpha = 480 us, far above 10%.
  spec.compute["cnn"] = profile_from_total({1e-4, 1e-6});
  const std::string text = projection_markdown(spec);
  EXPECT_NE(text.find("| 2 | 8 |"), std::string::npos) << text;
  EXPECT_NE(text.find("| 2 | 64 |"), std::string::npos) << text;
  EXPECT_NE(text.find("2 BatchNorm layers"), std::string::npos) << text;
  EXPECT_NE(text.find("cnn, syncbn: SyncBN's collectives exceed 10.0% of the step at b = 2: "
                      "from P = 8 ("),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("cnn at P = 64, b = 2:"), std::string::npos) << text;
  spec.compute.clear();
  EXPECT_THROW(projection_markdown(spec), Error);
}

TEST(StepModelTest, ProjectionSortsRanksAndBatchesGivenInAnyOrder) {
  ProjectionSpec spec;
  spec.models = {"cnn"};
  spec.ranks = {8, 64};
  spec.batches = {2, 32};
  spec.norms = {"bn", "syncbn"};
  spec.network = kNet;
  spec.compute["cnn"] = profile_from_total({1e-4, 1e-6});
  const std::string ascending = projection_markdown(spec);
  spec.ranks = {64, 8};
  spec.batches = {32, 2};
  const std::string descending = projection_markdown(spec);
  EXPECT_EQ(descending, ascending);
  EXPECT_NE(descending.find("b = 2: from P = 8 ("), std::string::npos) << descending;
}

}  // namespace
}  // namespace syncbn::study
