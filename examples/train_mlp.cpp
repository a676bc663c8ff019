// The smallest complete use of the library: the classic BN MLP (784-256-256-10,
// Linear -> BatchNorm1d -> ReLU) trained on Fashion-MNIST for one epoch, then evaluated.
// Reads top to bottom; syncbn-train (src/train/trainer.cpp) is the full-featured version.
//   build/example-train_mlp [data-dir]
#include <cstdio>

#include "syncbn/data/idx.h"
#include "syncbn/data/loader.h"
#include "syncbn/data/sampler.h"
#include "syncbn/error.h"
#include "syncbn/nn/init.h"
#include "syncbn/nn/loss.h"
#include "syncbn/nn/models.h"
#include "syncbn/optim/sgd.h"

int main(int argc, char** argv) try {
  using namespace syncbn;
  const std::string dir = argc > 1 ? argv[1] : data::kFashionMnistDefaultDir;
  const data::Dataset train = data::load_fashion_mnist(dir, /*train=*/true);
  const data::Dataset test = data::load_fashion_mnist(dir, /*train=*/false);

  nn::ModelOptions options;  // mlp + BatchNorm by default
  auto model = nn::make_model(options);
  nn::initialize(*model, nn::InitScheme::kKaiming, /*seed=*/0);
  std::printf("%s\n", model->str().c_str());

  optim::SgdOptions sgd;
  sgd.lr(0.05);
  sgd.momentum(0.9);
  optim::Sgd optimizer(model->parameters(), sgd);
  nn::CrossEntropyLoss criterion;

  // One process: a world of size 1, rank 0, batches of 64 in a shuffled order.
  data::Loader loader(train, data::DistributedSampler(train.size(), 64, 1, 0, /*seed=*/0));
  model->train();
  for (int64_t step = 0; step < loader.steps_per_epoch(); ++step) {
    const data::Batch& batch = loader.batch(step);
    optimizer.zero_grad();
    const float loss = criterion.forward(model->forward(batch.images), batch.labels);
    model->backward(criterion.backward());
    optimizer.step();
    if (step % 200 == 0) std::printf("step %4lld  loss %.4f\n", static_cast<long long>(step), loss);
  }

  // Evaluation uses the running statistics the training accumulated.
  model->eval();
  int64_t correct = 0;
  data::for_each_chunk(test, 0, test.size(), 1000, [&](const data::Batch& batch) {
    criterion.forward(model->forward(batch.images), batch.labels);
    correct += criterion.correct();
  });
  std::printf("test accuracy %.2f%%\n", 100.0 * correct / test.size());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s\n", e.what());
  return 1;
}
