#include "syncbn/train/metrics.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "syncbn/error.h"
#include "util/clock.h"

namespace syncbn::train {

namespace {

nlohmann::ordered_json to_json(const CollectiveCounts& c) {
  return {{"syncbn_allreduce", c.syncbn_allreduce},
          {"grad_allreduce", c.grad_allreduce},
          {"other", c.other}};
}

}  // namespace

std::string to_json(const EpochMetrics& m) {
  nlohmann::ordered_json row = {
      {"epoch", m.epoch},
      {"step", m.step},
      {"train_loss", m.train_loss},
      {"train_accuracy", m.train_accuracy},
      {"test_loss", m.test_loss},
      {"test_accuracy", m.test_accuracy},
      {"images_per_second", m.images_per_second},
      {"seconds", m.seconds},
      {"lr", m.lr},
      {"world_size", m.world_size},
      {"batch_size", m.batch_size},
      {"steps_in_epoch", m.steps_in_epoch},
  };
  if (m.resumed_from_step >= 0) row["resumed_from_step"] = m.resumed_from_step;
  if (m.diverged_at_step > 0) row["diverged_at_step"] = m.diverged_at_step;
  if (!m.health.empty()) row["health"] = nlohmann::ordered_json::parse(m.health);
  // dump() writes NaN and infinities as null: every line is valid JSON.
  if (m.has_timing) {
    const PhaseSeconds& t = m.time;
    row["time"] = {{"data", t.data},
                   {"forward", t.forward},
                   {"backward", t.backward},
                   {"syncbn_comm", t.syncbn_comm},
                   {"grad_comm_exposed", t.grad_comm_exposed},
                   {"optimizer", t.optimizer},
                   {"eval", t.eval},
                   {"other", t.other}};
    row["bytes"] = to_json(m.bytes);
    row["collectives"] = to_json(m.collectives);
  }
  return row.dump();
}

std::string summary_line(const EpochMetrics& m, int64_t total_epochs) {
  char buffer[320];
  std::snprintf(buffer, sizeof buffer,
                "epoch %lld/%lld  step %lld  train loss %.4f acc %.2f%%  test loss %.4f acc "
                "%.2f%%  %.0f img/s  %.2f s",
                static_cast<long long>(m.epoch), static_cast<long long>(total_epochs),
                static_cast<long long>(m.step), m.train_loss, 100 * m.train_accuracy, m.test_loss,
                100 * m.test_accuracy, m.images_per_second, m.seconds);
  return buffer;
}

void append_metrics_line(const std::string& path, const std::string& line) {
  std::ofstream out(path, std::ios::app);
  SYNCBN_CHECK(out.good(), "cannot open metrics file '", path, "' for appending");
  out << line << '\n';
  out.flush();
  SYNCBN_CHECK(out.good(), "cannot write metrics file '", path, "'");
}

void append_metrics(const std::string& path, const EpochMetrics& m) {
  append_metrics_line(path, to_json(m));
}

ProgressBar::ProgressBar(bool enabled, int64_t epoch, int64_t total_epochs, int64_t total_steps)
    : enabled_(enabled && isatty(STDERR_FILENO)),
      epoch_(epoch),
      total_epochs_(total_epochs),
      total_steps_(total_steps) {}

void ProgressBar::update(int64_t step, double loss, double accuracy, double images_per_second) {
  if (!enabled_) return;
  const double now = now_seconds();
  if (step < total_steps_ && now - last_draw_ < 0.1) return;  // at most 10 redraws a second
  last_draw_ = now;
  constexpr int kWidth = 30;
  const int filled = total_steps_ > 0 ? static_cast<int>(kWidth * step / total_steps_) : kWidth;
  std::string bar(kWidth, ' ');
  for (int i = 0; i < filled; ++i) bar[i] = '=';
  if (filled < kWidth) bar[filled] = '>';
  std::fprintf(stderr, "\repoch %lld/%lld [%s] %lld/%lld  loss %.4f  acc %.2f%%  %.0f img/s ",
               static_cast<long long>(epoch_), static_cast<long long>(total_epochs_), bar.c_str(),
               static_cast<long long>(step), static_cast<long long>(total_steps_), loss,
               100 * accuracy, images_per_second);
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (!enabled_) return;
  std::fprintf(stderr, "\r\033[K");  // clear the bar; the summary line follows on stdout
  std::fflush(stderr);
}

}  // namespace syncbn::train
