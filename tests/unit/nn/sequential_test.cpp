#include "syncbn/nn/sequential.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "syncbn/nn/activation.h"
#include "syncbn/nn/flatten.h"
#include "syncbn/profile.h"

namespace syncbn::nn {
namespace {

std::vector<std::string> names(const std::vector<profile::Span>& spans) {
  std::vector<std::string> out;
  for (const auto& s : spans) out.push_back(std::string(s.category) + " " + s.name);
  return out;
}

TEST(SequentialTest, TracedChildrenBecomeForwardAndBackwardSpansOnlyWhileTheTimelineRecords) {
  auto inner = std::make_shared<Sequential>();
  inner->add("act", std::make_shared<ReLU>());
  Sequential model;
  model.add("flat", std::make_shared<Flatten>());
  model.add("block", inner);
  model.trace_children(true);
  profile::Recorder recorder;
  const profile::Install install(&recorder);
  const Tensor x = Tensor::full({2, 3, 1}, 1.0f);

  model.backward(model.forward(x));  // timeline off: nothing
  EXPECT_TRUE(recorder.spans().empty());
  recorder.set_timeline(true);
  model.backward(model.forward(x));
  // Only the top level is traced (the nested Sequential's ReLU is not), backward in reverse.
  EXPECT_EQ(names(recorder.spans()),
            (std::vector<std::string>{"forward flat: Flatten", "forward block: Sequential",
                                      "backward block: Sequential", "backward flat: Flatten"}));

  model.trace_children(false);
  model.backward(model.forward(x));
  EXPECT_EQ(recorder.spans().size(), 4u);
}

}  // namespace
}  // namespace syncbn::nn
