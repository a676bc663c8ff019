#include "syncbn/nn/models.h"

#include <algorithm>

#include "syncbn/error.h"
#include "syncbn/nn/activation.h"
#include "syncbn/nn/batch_norm.h"
#include "syncbn/nn/conv2d.h"
#include "syncbn/nn/dropout.h"
#include "syncbn/nn/flatten.h"
#include "syncbn/nn/group_norm.h"
#include "syncbn/nn/instance_norm.h"
#include "syncbn/nn/layer_norm.h"
#include "syncbn/nn/linear.h"
#include "syncbn/nn/pooling.h"
#include "syncbn/nn/residual.h"
#include "syncbn/nn/sync_batch_norm.h"
#include "syncbn/random.h"

namespace syncbn::nn {

namespace {

struct NormName {
  NormKind kind;
  const char* name;
};
constexpr NormName kNormNames[] = {{NormKind::kNone, "none"},        {NormKind::kBatch, "bn"},
                                   {NormKind::kSyncBatch, "syncbn"}, {NormKind::kGroup, "gn"},
                                   {NormKind::kLayer, "ln"},         {NormKind::kInstance, "in"}};

// The norm layer after a Linear of `features` outputs (input (N, features)).
ModulePtr make_norm_1d(const ModelOptions& options, int64_t features) {
  switch (options.norm()) {
    case NormKind::kNone:
      return nullptr;
    case NormKind::kBatch:
      return std::make_shared<BatchNorm1d>(BatchNormOptions(features));
    case NormKind::kSyncBatch:
      return std::make_shared<SyncBatchNorm>(BatchNormOptions(features), options.sync_group());
    case NormKind::kGroup:
      return std::make_shared<GroupNorm>(std::min(options.group_norm_groups(), features), features);
    case NormKind::kLayer:
      return std::make_shared<LayerNorm>(std::vector<int64_t>{features});
    case NormKind::kInstance:
      SYNCBN_FAIL(
          "--norm in (InstanceNorm2d) needs a convolutional model (cnn or resnet); "
          "model '",
          options.name(), "' has no spatial dimensions to normalise over");
  }
  return nullptr;
}

// The norm layer after a convolution with `channels` output channels (input (N, C, H, W)).
ModulePtr make_norm_2d(const ModelOptions& options, int64_t channels) {
  switch (options.norm()) {
    case NormKind::kNone:
      return nullptr;
    case NormKind::kBatch:
      return std::make_shared<BatchNorm2d>(BatchNormOptions(channels));
    case NormKind::kSyncBatch:
      return std::make_shared<SyncBatchNorm>(BatchNormOptions(channels), options.sync_group());
    case NormKind::kGroup:
      return std::make_shared<GroupNorm>(std::min(options.group_norm_groups(), channels), channels);
    case NormKind::kLayer:
      return std::make_shared<GroupNorm>(1, channels);
    case NormKind::kInstance:
      return std::make_shared<InstanceNorm2d>(channels, 1e-5, 0.1, /*affine=*/true);
  }
  return nullptr;
}

// Appends a hidden block after its Linear/Conv `layer`: the norm (or nullptr), the ReLU and a
// Dropout (when options.dropout() > 0) in the order the options place them.
void add_hidden_block(Sequential& model, ModulePtr layer, ModulePtr norm, const ModelOptions& o,
                      uint64_t& dropout_stream) {
  ModulePtr dropout;
  if (o.dropout() > 0.0f)
    dropout =
        std::make_shared<Dropout>(o.dropout(), derive_seed(o.dropout_seed(), dropout_stream++));
  const bool dropout_before_norm = o.dropout_placement() == DropoutPlacement::kBeforeNorm;
  // The norm and the Dropout that feeds it, as one unit.
  std::vector<ModulePtr> norm_unit;
  if (dropout && dropout_before_norm) norm_unit.push_back(dropout);
  if (norm) norm_unit.push_back(norm);
  model.add(std::move(layer));
  if (o.norm_placement() == NormPlacement::kBeforeActivation) {
    for (auto& m : norm_unit) model.add(m);
    model.add(std::make_shared<ReLU>());
  } else {
    model.add(std::make_shared<ReLU>());
    for (auto& m : norm_unit) model.add(m);
  }
  if (dropout && !dropout_before_norm) model.add(dropout);
}

std::shared_ptr<Sequential> make_mlp(const ModelOptions& o) {
  auto model = std::make_shared<Sequential>();
  const bool bias = true;  // kept before the norm, as in the classic BN MLP
  int64_t features = o.in_channels() * o.height() * o.width();
  model->add(std::make_shared<Flatten>());
  uint64_t stream = 0, dropout_stream = 0;
  for (int64_t width : {256, 256}) {
    add_hidden_block(
        *model, std::make_shared<Linear>(features, width, bias, derive_seed(o.seed(), ++stream)),
        make_norm_1d(o, width), o, dropout_stream);
    features = width;
  }
  model->add(
      std::make_shared<Linear>(features, o.num_classes(), true, derive_seed(o.seed(), ++stream)));
  return model;
}

std::shared_ptr<Sequential> make_cnn(const ModelOptions& o) {
  auto model = std::make_shared<Sequential>();
  // A norm right after the conv makes its bias redundant (the norm's shift replaces it); with
  // the ReLU in between (after-act) the bias matters.
  const bool conv_bias =
      o.norm() == NormKind::kNone || o.norm_placement() == NormPlacement::kAfterActivation;
  int64_t channels = o.in_channels(), height = o.height(), width = o.width();
  uint64_t stream = 0, dropout_stream = 0;
  for (int64_t out : {32, 64}) {
    add_hidden_block(
        *model,
        std::make_shared<Conv2d>(Conv2dOptions(channels, out, 3).padding(1).bias(conv_bias),
                                 derive_seed(o.seed(), ++stream)),
        make_norm_2d(o, out), o, dropout_stream);
    model->add(std::make_shared<MaxPool2d>(2));
    channels = out;
    height /= 2;
    width /= 2;
  }
  model->add(std::make_shared<Flatten>());
  model->add(std::make_shared<Linear>(channels * height * width, o.num_classes(), true,
                                      derive_seed(o.seed(), ++stream)));
  return model;
}

std::shared_ptr<Sequential> make_resnet(const ModelOptions& o) {
  SYNCBN_CHECK(o.norm_placement() == NormPlacement::kBeforeActivation,
               "--norm-placement after-act: model resnet keeps torchvision's BasicBlock "
               "(conv -> norm -> relu); use mlp or cnn");
  SYNCBN_CHECK(o.dropout() == 0.0f,
               "--dropout: model resnet has no Dropout layers (torchvision's BasicBlock); use mlp "
               "or cnn");
  auto model = std::make_shared<Sequential>();
  const NormFactory norm = [&o](int64_t channels) { return make_norm_2d(o, channels); };
  const bool has_norm = o.norm() != NormKind::kNone;
  model->add("conv1", std::make_shared<Conv2d>(
                          Conv2dOptions(o.in_channels(), 32, 3).padding(1).bias(!has_norm),
                          derive_seed(o.seed(), 1)));
  if (has_norm) model->add("bn1", norm(32));
  model->add("relu", std::make_shared<ReLU>());
  int64_t channels = 32;
  uint64_t stream = 10;
  const struct {
    const char* name;
    int64_t out, stride;
  } stages[] = {{"layer1", 32, 1}, {"layer2", 64, 2}, {"layer3", 128, 2}};
  for (const auto& stage : stages) {
    auto layer = std::make_shared<Sequential>();
    layer->add(std::make_shared<Residual>(channels, stage.out, stage.stride, norm,
                                          derive_seed(o.seed(), ++stream)));
    layer->add(
        std::make_shared<Residual>(stage.out, stage.out, 1, norm, derive_seed(o.seed(), ++stream)));
    model->add(stage.name, layer);
    channels = stage.out;
  }
  model->add("avgpool", std::make_shared<GlobalAvgPool2d>());
  model->add("fc",
             std::make_shared<Linear>(channels, o.num_classes(), true, derive_seed(o.seed(), 2)));
  return model;
}

}  // namespace

NormKind parse_norm_kind(const std::string& name) {
  for (const auto& entry : kNormNames) {
    if (name == entry.name) return entry.kind;
  }
  SYNCBN_FAIL("unknown norm '", name, "': expected one of none, bn, syncbn, gn, ln, in");
}

NormPlacement parse_norm_placement(const std::string& name) {
  if (name == "before-act") return NormPlacement::kBeforeActivation;
  if (name == "after-act") return NormPlacement::kAfterActivation;
  SYNCBN_FAIL("unknown --norm-placement '", name,
              "': expected before-act (Linear -> Norm -> ReLU, the default) or after-act "
              "(Linear -> ReLU -> Norm)");
}

DropoutPlacement parse_dropout_placement(const std::string& name) {
  if (name == "before-norm") return DropoutPlacement::kBeforeNorm;
  if (name == "after-act") return DropoutPlacement::kAfterActivation;
  SYNCBN_FAIL("unknown --dropout-placement '", name,
              "': expected after-act (the default: Dropout after the ReLU, feeding the next "
              "layer) or before-norm (Dropout feeding the norm)");
}

std::string norm_kind_name(NormKind kind) {
  for (const auto& entry : kNormNames) {
    if (kind == entry.kind) return entry.name;
  }
  return "?";
}

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {"mlp", "cnn", "resnet"};
  return names;
}

std::shared_ptr<Sequential> make_model(const ModelOptions& options) {
  SYNCBN_CHECK(options.norm() != NormKind::kSyncBatch || options.sync_group(),
               "--norm syncbn needs a communicator for its sync group");
  if (options.name() == "mlp") return make_mlp(options);
  if (options.name() == "cnn") return make_cnn(options);
  if (options.name() == "resnet") return make_resnet(options);
  SYNCBN_FAIL("unknown model '", options.name(), "': expected one of mlp, cnn, resnet");
}

}  // namespace syncbn::nn
