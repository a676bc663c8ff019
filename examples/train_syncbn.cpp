// Synchronised batch norm with data parallelism, in one page: every rank holds a replica of a
// small BatchNorm network, its BatchNorm layers become SyncBatchNorm over the world (so they
// normalise with the statistics of the whole global batch), DataParallel averages the gradients,
// and each rank trains on its own slice of every global batch. syncbn-train
// (src/train/trainer.cpp) is the full-featured version.
//   mpirun -np 2 build/example-train_syncbn [steps] [lr]
// Rank 0 prints the loss of the global batch, then a last line
//   "final loss <first> -> <last>: decreased" (exit 0) or "...: did not decrease" (exit 1),
// comparing the mean loss of the first and the last five steps.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "syncbn/data/loader.h"
#include "syncbn/data/sampler.h"
#include "syncbn/data/synthetic.h"
#include "syncbn/distributed/communicator.h"
#include "syncbn/distributed/data_parallel.h"
#include "syncbn/distributed/runtime.h"
#include "syncbn/error.h"
#include "syncbn/nn/activation.h"
#include "syncbn/nn/batch_norm.h"
#include "syncbn/nn/flatten.h"
#include "syncbn/nn/init.h"
#include "syncbn/nn/linear.h"
#include "syncbn/nn/loss.h"
#include "syncbn/nn/sequential.h"
#include "syncbn/nn/sync_batch_norm.h"
#include "syncbn/optim/sgd.h"

int main(int argc, char** argv) {
  using namespace syncbn;
  // MPI starts here (a world of one without mpirun) and stops when `runtime` goes out of scope.
  dist::Runtime runtime;
  // An exception on any rank prints "rank R: <message>" and ends the whole job.
  return dist::run_and_abort_on_error([&] {
    const std::shared_ptr<dist::Communicator> world = runtime.world();
    const bool leader = world->rank() == 0;
    const int64_t steps = argc > 1 ? std::atoll(argv[1]) : 60;
    const double lr = argc > 2 ? std::atof(argv[2]) : 0.1;
    SYNCBN_CHECK(steps >= 10, "steps must be at least 10, got ", steps);

    // A learnable synthetic dataset, the same on every rank: 4 classes of noisy 8x8 images.
    const auto synthetic =
        data::SyntheticOptions().samples(4096).height(8).width(8).classes(4).noise_std(4.0f);
    const data::Dataset train = data::make_synthetic(synthetic, /*train=*/true);

    // The model is built as for one process, with ordinary BatchNorm...
    auto net = std::make_shared<nn::Sequential>();
    net->add(std::make_shared<nn::Flatten>());
    net->add(std::make_shared<nn::Linear>(64, 64));
    net->add(std::make_shared<nn::BatchNorm1d>(64));
    net->add(std::make_shared<nn::ReLU>());
    net->add(std::make_shared<nn::Linear>(64, 4));
    nn::initialize(*net, nn::InitScheme::kKaiming, /*seed=*/0);
    // ...then every BatchNorm becomes a SyncBatchNorm over the world, sharing its parameters and
    // buffers: one allreduce of 2C+1 values per layer forward, 2C backward.
    const nn::ModulePtr model = nn::convert_sync_batchnorm(net, world);
    // DataParallel broadcasts rank 0's parameters and buffers, checks that every rank built the
    // same model, and averages the gradients over the ranks in every backward.
    dist::DataParallel ddp(model, world);
    if (leader) std::printf("%s\n", model->str().c_str());

    optim::Sgd optimizer(model->parameters(), optim::SgdOptions().lr(lr).momentum(0.9));
    nn::CrossEntropyLoss criterion;

    // Each step's global batch is 32 samples per rank; rank r reads the r-th slice of it.
    const int64_t batch_per_rank = 32;
    data::Loader loader(train, data::DistributedSampler(train.size(), batch_per_rank, world->size(),
                                                        world->rank(), /*seed=*/0));
    const int64_t steps_per_epoch = loader.steps_per_epoch();
    std::vector<double> losses;
    model->train();
    for (int64_t step = 0; step < steps; ++step) {
      // Each epoch visits a new permutation of the dataset, the same on every rank.
      if (step % steps_per_epoch == 0) loader.set_epoch(step / steps_per_epoch);
      const data::Batch& batch = loader.batch(step % steps_per_epoch);
      optimizer.zero_grad();
      const float loss = criterion.forward(ddp.forward(batch.images), batch.labels);
      ddp.backward(criterion.backward());
      optimizer.step();

      // The loss of the global batch: sum of (local mean loss * local samples) over the ranks,
      // divided by all samples. Every rank gets it, so every rank reaches the same verdict.
      double totals[2] = {loss * static_cast<double>(batch.size()),
                          static_cast<double>(batch.size())};
      world->allreduce_sum(totals, 2, dist::DataType::kFloat64);
      losses.push_back(totals[0] / totals[1]);
      if (leader && step % 10 == 0) {
        std::printf("step %3lld  loss %.4f\n", static_cast<long long>(step), losses.back());
      }
    }

    auto mean_of = [&](std::size_t begin) {
      double sum = 0;
      for (std::size_t i = begin; i < begin + 5; ++i) sum += losses[i];
      return sum / 5;
    };
    const double first = mean_of(0);
    const double last = mean_of(losses.size() - 5);
    // A 10% margin, so that batch-to-batch noise of an untrained model cannot pass for learning.
    const bool decreased = last < 0.9 * first;
    if (leader) {
      std::printf("final loss %.4f -> %.4f: %s\n", first, last,
                  decreased ? "decreased" : "did not decrease");
    }
    return decreased ? 0 : 1;
  });
}
