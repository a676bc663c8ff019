#pragma once
// The models of the scaling studies, by name, each with the normalisation chosen by name.
//   mlp    : 784-256-256-10, Linear -> Norm -> ReLU after each hidden layer (the network of
//            the classic BN write-up); ModelOptions choose the norm's place and a Dropout.
//   cnn    : two Conv3x3 -> Norm -> ReLU -> MaxPool2 blocks (32, 64 channels) and a Linear head.
//   resnet : a small ResNet of basic blocks for 28x28 inputs (32-64-128 channels).
#include <memory>
#include <string>
#include <vector>

#include "syncbn/arg.h"
#include "syncbn/nn/sequential.h"

namespace syncbn::dist {
class Communicator;
}

namespace syncbn::nn {

// none | bn (local BatchNorm) | syncbn (SyncBatchNorm) | gn (GroupNorm) | ln (LayerNorm; on
// convolutional features GroupNorm with one group, i.e. LayerNorm over (C, H, W) without
// per-position affine) | in (InstanceNorm2d with affine, convolutional models only)
enum class NormKind { kNone, kBatch, kSyncBatch, kGroup, kLayer, kInstance };

// Where a hidden block's norm sits: Linear/Conv -> Norm -> ReLU (before the activation, the
// default) or Linear/Conv -> ReLU -> Norm (after it).
enum class NormPlacement { kBeforeActivation, kAfterActivation };
// Where a hidden block's Dropout sits: right before the norm (its output feeds the norm; where the
// norm would be with --norm none), or at the block's end, after the activation (and after the
// norm when that comes after the activation), so that it feeds the next layer.
enum class DropoutPlacement { kBeforeNorm, kAfterActivation };

NormKind parse_norm_kind(const std::string& name);
NormPlacement parse_norm_placement(const std::string& name);        // before-act | after-act
DropoutPlacement parse_dropout_placement(const std::string& name);  // before-norm | after-act
std::string norm_kind_name(NormKind kind);
const std::vector<std::string>& model_names();

struct ModelOptions {
  SYNCBN_ARG(std::string, name) = "mlp";
  SYNCBN_ARG(NormKind, norm) = NormKind::kBatch;
  SYNCBN_ARG(int64_t, in_channels) = 1;
  SYNCBN_ARG(int64_t, height) = 28;
  SYNCBN_ARG(int64_t, width) = 28;
  SYNCBN_ARG(int64_t, num_classes) = 10;
  SYNCBN_ARG(int64_t, group_norm_groups) = 8;  // capped at the channel count
  SYNCBN_ARG(uint64_t, seed) = 0;
  // mlp and cnn only (resnet keeps torchvision's BasicBlock and rejects other settings).
  SYNCBN_ARG(NormPlacement, norm_placement) = NormPlacement::kBeforeActivation;
  SYNCBN_ARG(float, dropout) = 0.0f;  // probability; 0 = no Dropout layers
  SYNCBN_ARG(DropoutPlacement, dropout_placement) = DropoutPlacement::kAfterActivation;
  // Seeds the Dropout masks: the i-th Dropout draws from derive_seed(dropout_seed, i). Give each
  // rank its own (syncbn-train: derive_seed(seed, rank)) so that ranks drop different units.
  SYNCBN_ARG(uint64_t, dropout_seed) = 0;
  // The group SyncBatchNorm synchronises over (required for NormKind::kSyncBatch).
  SYNCBN_ARG(std::shared_ptr<dist::Communicator>, sync_group);
};

std::shared_ptr<Sequential> make_model(const ModelOptions& options);

}  // namespace syncbn::nn
