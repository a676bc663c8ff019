#pragma once
// Checks that every rank runs with the same configuration or model, before a mismatch turns
// into a hang or silently wrong training. Both calls make the same collectives on every rank
// whatever the data, and either return on every rank or throw the same syncbn::Error on every
// rank.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "syncbn/distributed/communicator.h"

namespace syncbn::dist {

// settings: (key, value) pairs in a fixed order. On a mismatch the error names the first
// differing setting and the values per rank, against rank 0:
//   "training configuration differs across ranks: batch-size is 32 on rank 0 but 16 on rank 2"
// A key missing on some rank, or a different key at the same position, is reported the same way.
void check_consistent(Communicator& comm,
                      const std::vector<std::pair<std::string, std::string>>& settings,
                      const std::string& what);

// lines: one line per tensor ("layer1.0.bn1.weight [64]"), in order, as nn::model_signature
// writes them. On a mismatch the error names the first differing line, rank 0's and the other
// ranks' versions:
//   "model signature differs across ranks at line 5: 'fc.weight [10, 64]' on rank 0 but
//    'fc.weight [10, 32]' on rank 1"
void check_same_signature(Communicator& comm, const std::vector<std::string>& lines,
                          const std::string& what);

// What one rank has of one dataset: its size and a fingerprint of its content (as
// data::fingerprint computes it).
struct DataSummary {
  std::string label;  // "training", "test"
  int64_t samples = 0;
  uint64_t fingerprint = 0;
};

// datasets: the same labels in the same order on every rank. Sizes are compared first, then
// fingerprints; the error names the first difference against rank 0:
//   "training data differs across ranks: the training set has 60000 samples on rank 0 but
//    59000 on rank 1"
//   "training data differs across ranks: the training set has the same size (60000 samples) on
//    every rank but different content: fingerprint 0x... on rank 0 but 0x... on rank 1 (...)"
void check_same_data(Communicator& comm, const std::vector<DataSummary>& datasets,
                     const std::string& what);

}  // namespace syncbn::dist
