#include "study/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "study/health_summary.h"
#include "study/results.h"
#include "syncbn/error.h"

namespace syncbn::study {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The parts of a step that do not overlap; syncbn_comm lies inside forward and backward.
const std::vector<std::string> kDisjointParts = {
    "data", "forward", "backward", "grad_comm_exposed", "optimizer", "other"};

// What the report reads from a run's metrics lines (syncbn-train --metrics): per epoch the test
// accuracy and training loss, and the health reports (`--health K` writes {"health_step": S,
// "health": H} every K steps; plain `--health` puts H into the epoch lines instead).
struct Metrics {
  std::vector<std::pair<int64_t, double>> test_accuracy;  // (epoch, accuracy in 0..1), finite
  std::optional<double> final_train_loss;
  int64_t epochs = 0;
  // (step, H); kept only when asked for. Ordered JSON keeps the parameters in model order.
  std::vector<std::pair<int64_t, nlohmann::ordered_json>> health;
};

// A missing file reads as no metrics (a cell may have none); a line that is not JSON throws.
Metrics read_metrics(const fs::path& path, bool with_health) {
  Metrics out;
  if (path.empty() || !fs::exists(path)) return out;
  std::ifstream in(path);
  std::string text;
  std::vector<std::pair<int64_t, nlohmann::ordered_json>> epoch_health;
  for (int64_t line_number = 1; std::getline(in, text); ++line_number) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    // Health lines are most of a `--health 1` file: not parsed when not wanted.
    if (!with_health && text.rfind("{\"health_step\"", 0) == 0) continue;
    nlohmann::ordered_json line;
    try {
      line = nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::json::exception& error) {
      SYNCBN_FAIL(path.string(), ":", line_number, ": not a JSON line (", error.what(), ")");
    }
    if (!line.is_object()) continue;
    const bool health = line.contains("health") && line["health"].is_object();
    const int64_t step = line.value("step", int64_t{0});
    if (line.contains("health_step")) {
      if (with_health && health)
        out.health.emplace_back(line.value("health_step", step), line["health"]);
      continue;
    }
    if (!line.contains("epoch")) continue;
    ++out.epochs;
    if (line.contains("test_accuracy") && line["test_accuracy"].is_number() &&
        std::isfinite(line["test_accuracy"].get<double>()))
      out.test_accuracy.emplace_back(line.value("epoch", out.epochs),
                                     line["test_accuracy"].get<double>());
    out.final_train_loss.reset();
    if (line.contains("train_loss") && line["train_loss"].is_number() &&
        std::isfinite(line["train_loss"].get<double>()))
      out.final_train_loss = line["train_loss"].get<double>();
    if (with_health && health)
      epoch_health.emplace_back(line["health"].value("step", step), line["health"]);
  }
  if (out.health.empty()) out.health = std::move(epoch_health);
  return out;
}

// One ok cell's outcome, and where its metrics lie.
struct Run {
  int64_t seed = 0;
  std::optional<int64_t> diverged_at_step;  // the run hit a NaN/inf loss and ended there
  std::optional<double> final_accuracy, best_accuracy;
  fs::path metrics_file;  // empty when the row names none
  Metrics metrics;        // its epochs (without the health reports)
};

// Results of one (ranks, batch, setting) over its seeds. A setting is the norm and the values of
// the study's sweep axes; its label ("bn", "bn · init=xavier lr=0.01") names it in every table.
struct Group {
  std::string norm;
  json sweep = json::object();  // option name -> value text
  std::vector<Run> runs;
  std::vector<double> error_percent, images_per_second;
  std::map<std::string, std::vector<double>> time_ms;  // per step, by component
  int64_t global_batch = 0, batch_per_rank = 0;
};

// ranks, batch key (batch per rank in weak mode, global batch in strong mode), setting label.
using Key = std::tuple<int64_t, int64_t, std::string>;

struct Study {
  std::string mode = "weak", model;
  std::vector<int64_t> ranks, batches;
  std::vector<std::string> norms;       // setting labels, in the order of the results
  std::vector<std::string> sweep_keys;  // the sweep axes' option names, in order of appearance
  std::map<Key, Group> groups;
  std::vector<Key> order;  // the groups in the order of the results
  std::vector<json> failed;
  int64_t ok_cells = 0;
  bool has_time = false, has_divergence = false;

  const char* batch_label() const { return mode == "strong" ? "global batch" : "batch/rank"; }
  const Group* find(int64_t p, int64_t batch, const std::string& norm) const {
    const auto it = groups.find({p, batch, norm});
    return it == groups.end() ? nullptr : &it->second;
  }
};

template <class T>
void add_unique(std::vector<T>& values, const T& value) {
  if (std::find(values.begin(), values.end(), value) == values.end()) values.push_back(value);
}

// A sweep value as the spec wrote it: strings bare, anything else as JSON.
std::string value_text(const json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

std::optional<double> number(const json& row, const char* name) {
  if (!row.contains(name) || !row[name].is_number()) return std::nullopt;
  const double value = row[name].get<double>();
  return std::isfinite(value) ? std::optional<double>(value) : std::nullopt;
}

Study load(const std::string& dir) {
  const std::vector<json> rows = read_rows(dir);
  SYNCBN_CHECK(!rows.empty(), (fs::path(dir) / "results.jsonl").string(),
               ": no results (run `syncbn-study run SPEC --out ", dir, "` first)");
  // The last row of a cell is its current state (a retried cell has a failed row before).
  std::vector<json> latest;
  std::map<std::string, std::size_t> at;
  for (const json& row : rows) {
    const std::string id = row["cell"].get<std::string>();
    if (at.count(id)) {
      latest[at[id]] = row;
    } else {
      at[id] = latest.size();
      latest.push_back(row);
    }
  }
  Study study;
  for (const json& row : latest) {
    study.mode = row.value("mode", study.mode);
    if (row.contains("model") && row["model"].is_string()) study.model = row["model"];
    if (row.value("status", "") != "ok") {
      study.failed.push_back(row);
      continue;
    }
    ++study.ok_cells;
    const int64_t p = row.value("ranks", int64_t{1});
    const int64_t batch = study.mode == "strong" ? row.value("global_batch", int64_t{0})
                                                 : row.value("batch_per_rank", int64_t{0});
    const std::string norm = row.value("norm", "?");
    const json sweep =
        row.contains("sweep") && row["sweep"].is_object() ? row["sweep"] : json::object();
    const std::string label = sweep.empty() ? norm : norm + " · " + sweep_text(sweep);
    add_unique(study.ranks, p);
    add_unique(study.batches, batch);
    add_unique(study.norms, label);
    for (const auto& item : sweep.items()) add_unique(study.sweep_keys, item.key());
    const Key key{p, batch, label};
    if (!study.groups.count(key)) study.order.push_back(key);
    Group& group = study.groups[key];
    group.norm = norm;
    group.sweep = sweep;
    Run run;
    run.seed = row.value("seed", int64_t{0});
    if (row.contains("diverged_at_step") && row["diverged_at_step"].is_number_integer()) {
      run.diverged_at_step = row["diverged_at_step"].get<int64_t>();
      study.has_divergence = true;
    }
    run.final_accuracy = number(row, "final_test_accuracy");
    run.best_accuracy = number(row, "best_test_accuracy");
    if (row.contains("metrics_file") && row["metrics_file"].is_string() &&
        !row["metrics_file"].get<std::string>().empty())
      run.metrics_file = fs::path(dir) / row["metrics_file"].get<std::string>();
    run.metrics = read_metrics(run.metrics_file, false);
    if (run.final_accuracy) group.error_percent.push_back(100.0 * (1.0 - *run.final_accuracy));
    if (const auto ips = number(row, "images_per_second")) group.images_per_second.push_back(*ips);
    group.runs.push_back(std::move(run));
    group.global_batch = row.value("global_batch", int64_t{0});
    group.batch_per_rank = row.value("batch_per_rank", int64_t{0});
    const json& time = row.contains("time_per_step") ? row["time_per_step"] : json(nullptr);
    for (const std::string& part : kTimeParts) {
      if (time.is_object() && time.contains(part) && time[part].is_number()) {
        group.time_ms[part].push_back(1000.0 * time[part].get<double>());
        study.has_time = true;
      }
    }
  }
  std::sort(study.ranks.begin(), study.ranks.end());
  std::sort(study.batches.begin(), study.batches.end());
  return study;
}

std::string fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

double mean_of(const std::vector<double>& values) { return mean_std(values).mean; }

std::string table_row(const std::vector<std::string>& cells) {
  std::string line = "|";
  for (const std::string& cell : cells) line += " " + cell + " |";
  return line + "\n";
}

std::string table_head(const std::vector<std::string>& cells) {
  std::string rule = "|";
  for (std::size_t i = 0; i < cells.size(); ++i) rule += i == 0 ? " --- |" : " ---: |";
  return table_row(cells) + rule + "\n";
}

// Appends one cell per norm to a table row: format(norm, values) where the (p, batch, norm) group
// has values of the kind `member`, "—" elsewhere. Returns whether any norm had values.
template <class Format>
bool add_norm_cells(const Study& study, int64_t p, int64_t batch,
                    std::vector<double> Group::*member, std::vector<std::string>& cells,
                    Format format) {
  bool any = false;
  for (const std::string& norm : study.norms) {
    const Group* group = study.find(p, batch, norm);
    if (!group || (group->*member).empty()) {
      cells.push_back("—");
      continue;
    }
    any = true;
    cells.push_back(format(norm, group->*member));
  }
  return any;
}

std::string error_tables(const Study& study) {
  std::ostringstream md;
  md << "## Test error (%)\n\nFinal test error, mean ± standard deviation over seeds; the best "
        "of each row in bold.\n\n";
  for (const int64_t p : study.ranks) {
    md << "### " << p << (p == 1 ? " rank" : " ranks") << "\n\n";
    std::vector<std::string> head = {study.batch_label()};
    head.insert(head.end(), study.norms.begin(), study.norms.end());
    md << table_head(head);
    for (const int64_t batch : study.batches) {
      std::vector<std::string> cells = {std::to_string(batch)};
      double best = INFINITY;
      for (const std::string& norm : study.norms) {
        const Group* group = study.find(p, batch, norm);
        if (group && !group->error_percent.empty())
          best = std::min(best, mean_of(group->error_percent));
      }
      const bool any = add_norm_cells(study, p, batch, &Group::error_percent, cells,
                                      [&](const std::string&, const std::vector<double>& values) {
                                        const MeanStd value = mean_std(values);
                                        const std::string text = format_mean_std(value, 2);
                                        return value.mean == best ? "**" + text + "**" : text;
                                      });
      if (any) md << table_row(cells);
    }
    md << "\n";
  }
  return md.str();
}

// Scaling efficiency at P: images/s over (images/s at the smallest P) * P / P_smallest.
std::map<Key, double> efficiencies(const Study& study) {
  std::map<Key, double> out;
  for (const int64_t batch : study.batches) {
    for (const std::string& norm : study.norms) {
      double base = 0;
      int64_t base_p = 0;
      for (const int64_t p : study.ranks) {
        const Group* group = study.find(p, batch, norm);
        if (!group || group->images_per_second.empty()) continue;
        const double ips = mean_of(group->images_per_second);
        if (base_p == 0) {
          base = ips;
          base_p = p;
        }
        out[{p, batch, norm}] = ips / (base * static_cast<double>(p) / base_p);
      }
    }
  }
  return out;
}

std::string throughput_table(const Study& study) {
  const bool ratio =
      std::find(study.norms.begin(), study.norms.end(), "bn") != study.norms.end() &&
      std::find(study.norms.begin(), study.norms.end(), "syncbn") != study.norms.end();
  const bool scaling = study.ranks.size() > 1;
  const std::map<Key, double> efficiency = efficiencies(study);
  std::ostringstream md;
  md << "## Throughput (images/s)\n\nTraining images per second over all ranks (last epoch), "
        "mean over seeds.";
  if (ratio)
    md << " SyncBN/BN is the time per image of syncbn over that of local bn (1.25 = SyncBN costs "
          "25% more).";
  if (scaling)
    md << " In parentheses: scaling efficiency against the smallest number of ranks, "
          "images/s(P) / (images/s(P0) * P / P0).";
  md << "\n\n";
  std::vector<std::string> head = {"ranks", study.batch_label()};
  head.insert(head.end(), study.norms.begin(), study.norms.end());
  if (ratio) head.push_back("SyncBN/BN");
  md << table_head(head);
  for (const int64_t p : study.ranks) {
    for (const int64_t batch : study.batches) {
      std::vector<std::string> cells = {std::to_string(p), std::to_string(batch)};
      const bool any =
          add_norm_cells(study, p, batch, &Group::images_per_second, cells,
                         [&](const std::string& norm, const std::vector<double>& values) {
                           std::string text = fixed(mean_of(values), 0);
                           if (scaling && efficiency.count({p, batch, norm}))
                             text += " (" + fixed(100 * efficiency.at({p, batch, norm}), 0) + "%)";
                           return text;
                         });
      if (ratio) {
        const Group* bn = study.find(p, batch, "bn");
        const Group* sync = study.find(p, batch, "syncbn");
        cells.push_back(
            bn && sync && !bn->images_per_second.empty() && !sync->images_per_second.empty()
                ? fixed(mean_of(bn->images_per_second) / mean_of(sync->images_per_second), 2)
                : "—");
      }
      if (any) md << table_row(cells);
    }
  }
  return md.str() + "\n";
}

std::string time_table(const Study& study) {
  std::ostringstream md;
  md << "## Time per step (ms)\n\n";
  if (!study.has_time) {
    md << "The metrics have no time breakdown (a syncbn-train without the \"time\" keys).\n\n";
    return md.str();
  }
  md << "Milliseconds per optimizer step, averaged over the run's epochs and the seeds. "
        "syncbn_comm (SyncBN's statistic allreduces) is contained in forward and backward; total "
        "is the sum of the other, disjoint parts.\n\n";
  std::vector<std::string> head = {"ranks", study.batch_label(), "norm"};
  head.insert(head.end(), kTimeParts.begin(), kTimeParts.end());
  head.push_back("total");
  md << table_head(head);
  for (const auto& [key, group] : study.groups) {
    const auto& [p, batch, norm] = key;
    std::vector<std::string> cells = {std::to_string(p), std::to_string(batch), norm};
    double total = 0;
    for (const std::string& part : kTimeParts) {
      const auto values = group.time_ms.find(part);
      if (values == group.time_ms.end() || values->second.empty()) {
        cells.push_back("—");
        continue;
      }
      const double ms = mean_of(values->second);
      if (std::find(kDisjointParts.begin(), kDisjointParts.end(), part) != kDisjointParts.end())
        total += ms;
      cells.push_back(fixed(ms, 3));
    }
    cells.push_back(fixed(total, 3));
    md << table_row(cells);
  }
  return md.str() + "\n";
}

// "2/3 (steps 14, 37)": diverged runs of all, and where each diverged.
std::string divergence_text(const Group& group) {
  std::string steps;
  int64_t diverged = 0;
  for (const Run& run : group.runs) {
    if (!run.diverged_at_step) continue;
    ++diverged;
    steps += (steps.empty() ? "" : ", ") + std::to_string(*run.diverged_at_step);
  }
  std::string text = std::to_string(diverged) + "/" + std::to_string(group.runs.size());
  if (diverged > 0) text += (diverged == 1 ? " (step " : " (steps ") + steps + ")";
  return text;
}

std::string mean_std_cell(const std::vector<double>& values, int decimals) {
  return values.empty() ? "—" : format_mean_std(mean_std(values), decimals);
}

std::string divergence_table(const Study& study) {
  std::ostringstream md;
  md << "## Accuracy and divergence by setting\n\nOne row per setting (norm and sweep values): "
        "how many of its runs diverged (a NaN or infinite loss ended the run early; the steps "
        "where it did), and the final and best test accuracy and the final training loss, mean "
        "± standard deviation over the runs that did not diverge.\n\n";
  const bool show_ranks = study.ranks.size() > 1, show_batch = study.batches.size() > 1;
  std::vector<std::string> head = {"norm"};
  head.insert(head.end(), study.sweep_keys.begin(), study.sweep_keys.end());
  if (show_ranks) head.push_back("ranks");
  if (show_batch) head.push_back(study.batch_label());
  // Speed of learning: the accuracy after the first epoch, when the runs have more than one.
  bool several_epochs = false;
  for (const Key& key : study.order)
    for (const Run& run : study.groups.at(key).runs)
      several_epochs = several_epochs || run.metrics.epochs > 1;
  head.insert(head.end(), {"runs", "diverged"});
  if (several_epochs) head.push_back("test accuracy after epoch 1 (%)");
  for (const char* column :
       {"final test accuracy (%)", "best test accuracy (%)", "final train loss"})
    head.push_back(column);
  md << table_head(head);
  for (const Key& key : study.order) {
    const Group& group = study.groups.at(key);
    std::vector<std::string> cells = {group.norm};
    for (const std::string& name : study.sweep_keys)
      cells.push_back(group.sweep.contains(name) ? value_text(group.sweep[name]) : "—");
    if (show_ranks) cells.push_back(std::to_string(std::get<0>(key)));
    if (show_batch) cells.push_back(std::to_string(std::get<1>(key)));
    std::vector<double> first_percent, final_percent, best_percent, train_loss;
    for (const Run& run : group.runs) {
      if (run.diverged_at_step) continue;
      for (const auto& [epoch, accuracy] : run.metrics.test_accuracy)
        if (epoch == 1) first_percent.push_back(100 * accuracy);
      if (run.final_accuracy) final_percent.push_back(100 * *run.final_accuracy);
      if (run.best_accuracy) best_percent.push_back(100 * *run.best_accuracy);
      if (run.metrics.final_train_loss) train_loss.push_back(*run.metrics.final_train_loss);
    }
    cells.push_back(std::to_string(group.runs.size()));
    cells.push_back(divergence_text(group));
    if (several_epochs) cells.push_back(mean_std_cell(first_percent, 2));
    cells.push_back(mean_std_cell(final_percent, 2));
    cells.push_back(mean_std_cell(best_percent, 2));
    cells.push_back(mean_std_cell(train_loss, 4));
    md << table_row(cells);
  }
  return md.str() + "\n";
}

// Every setting's --health records, all its seeds together, labelled like its table row.
std::vector<std::pair<std::string, HealthSummary>> health_by_setting(const Study& study) {
  std::vector<std::pair<std::string, HealthSummary>> out;
  for (const Key& key : study.order) {
    std::string label = std::get<2>(key);
    if (study.ranks.size() > 1) label += ", " + std::to_string(std::get<0>(key)) + " ranks";
    if (study.batches.size() > 1)
      label += ", " + std::string(study.batch_label()) + " " + std::to_string(std::get<1>(key));
    HealthSummary summary;
    for (const Run& run : study.groups.at(key).runs)
      if (!run.metrics_file.empty()) merge_health(summary, summarize_health(run.metrics_file));
    out.emplace_back(label, summary);
  }
  return out;
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  SYNCBN_CHECK(out.good(), "cannot write '", path.string(), "'");
}

// `text` inside a gnuplot single-quoted string, where '' stands for a quote.
std::string quoted(const std::string& text) {
  std::string out = "'";
  for (const char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string gnuplot_head(const std::string& png, const std::string& title,
                         const std::string& size = "900,560") {
  return "# Drawn by syncbn-study report; rerun with: gnuplot " + png.substr(0, png.size() - 4) +
         ".gp\nset terminal pngcairo size " + size + " noenhanced\nset output '" + png +
         "'\nset title " + quoted(title) + "\nset key outside right top\nset grid\n";
}

// One figure: its name (without extension), data and script, and what it shows.
struct Figure {
  std::string name, data, script, caption;
};

// Index of `value` in `values`, appended when new.
std::size_t index_of(std::vector<std::string>& values, const std::string& value) {
  add_unique(values, value);
  return static_cast<std::size_t>(std::find(values.begin(), values.end(), value) - values.begin());
}

// Test accuracy per epoch, one line per setting, one figure per (ranks, batch). The line is the
// mean over the seeds with a finite accuracy at that epoch, so a diverged seed's part ends there.
std::vector<Figure> accuracy_figures(const Study& study) {
  int64_t most_epochs = 0;
  std::vector<std::pair<int64_t, int64_t>> pairs;
  for (const Key& key : study.order) {
    add_unique(pairs, std::make_pair(std::get<0>(key), std::get<1>(key)));
    for (const Run& run : study.groups.at(key).runs)
      most_epochs = std::max(most_epochs, run.metrics.epochs);
  }
  if (most_epochs <= 1) return {};
  // Norms differ by dash type, sweep values by colour (by norm when nothing is swept).
  std::vector<std::string> norms, sweeps;
  for (const Key& key : study.order) {
    index_of(norms, study.groups.at(key).norm);
    index_of(sweeps, sweep_text(study.groups.at(key).sweep));
  }
  std::vector<Figure> out;
  for (const auto& [p, batch] : pairs) {
    const std::string where = "np" + std::to_string(p) + "-b" + std::to_string(batch);
    Figure figure{"test-accuracy-per-epoch" + (pairs.size() == 1 ? "" : "-" + where), "", "",
                  "Test accuracy after each epoch, one line per setting (mean over its seeds; a "
                  "diverged seed drops out where it diverged, and a line ends where every seed "
                  "has)."};
    std::string plot;
    int index = 0;
    for (const Key& key : study.order) {
      if (std::get<0>(key) != p || std::get<1>(key) != batch) continue;
      const Group& group = study.groups.at(key);
      std::map<int64_t, std::vector<double>> by_epoch;
      for (const Run& run : group.runs)
        for (const auto& [epoch, accuracy] : run.metrics.test_accuracy)
          by_epoch[epoch].push_back(100 * accuracy);
      if (by_epoch.empty()) continue;
      figure.data += "# " + std::get<2>(key) + ": epoch, test accuracy % mean, seeds\n";
      for (const auto& [epoch, values] : by_epoch)
        figure.data += std::to_string(epoch) + " " + fixed(mean_of(values), 4) + " " +
                       std::to_string(values.size()) + "\n";
      figure.data += "\n\n";
      const std::size_t dash = index_of(norms, group.norm);
      const std::size_t colour =
          sweeps.size() > 1 ? index_of(sweeps, sweep_text(group.sweep)) : dash;
      plot += std::string(plot.empty() ? "plot " : ", \\\n     ") + "'" + figure.name +
              ".dat' index " + std::to_string(index++) +
              " using 1:2 with linespoints pointtype 7 pointsize 0.6 dashtype " +
              std::to_string(dash + 1) + " linecolor " + std::to_string(colour + 1) +
              " linewidth 1.5 title " + quoted(std::get<2>(key));
    }
    if (plot.empty()) continue;
    const std::string title =
        "test accuracy per epoch (mean over seeds)" +
        (pairs.size() == 1 ? ""
                           : ", " + std::to_string(p) + " ranks, " + study.batch_label() + " " +
                                 std::to_string(batch));
    figure.script = gnuplot_head(figure.name + ".png", title, "900,680") +
                    "set key outside below\nset xlabel 'epoch'\nset ylabel 'test accuracy (%)'\n" +
                    (most_epochs <= 20 ? "set xtics 1\n" : "") +
                    "set offsets 0, 0, graph 0.03, graph 0.03\n" + plot + "\n";
    out.push_back(figure);
  }
  return out;
}

// Gradient norm of each Linear/Conv weight over the steps, one panel per setting (its smallest
// seed), from the health reports. A norm layer's parameters (module index among H's "norms")
// are left out; so are non-finite and non-positive values (the axis is logarithmic).
std::vector<Figure> gradient_figures(const Study& study) {
  Figure figure{"grad-norm-per-layer", "", "",
                "Gradient norm of each Linear/Conv weight over the training steps, one panel per "
                "setting (its smallest seed), from the --health reports; the grey lines mark "
                "1e-4 and 1e-1, the range usually called healthy."};
  std::vector<std::string> panels;
  int index = 0;
  bool several_pairs = false;
  for (const Key& key : study.order)
    several_pairs = several_pairs || std::get<0>(key) != std::get<0>(study.order.front()) ||
                    std::get<1>(key) != std::get<1>(study.order.front());
  for (const Key& key : study.order) {
    const Group& group = study.groups.at(key);
    const auto first = std::min_element(group.runs.begin(), group.runs.end(),
                                        [](const Run& a, const Run& b) { return a.seed < b.seed; });
    if (first == group.runs.end()) continue;
    const Metrics metrics = read_metrics(first->metrics_file, true);
    std::vector<std::pair<std::string, std::string>> series;  // parameter, "step norm" lines
    for (const auto& [step, health] : metrics.health) {
      if (!health.contains("parameters") || !health["parameters"].is_object()) continue;
      const nlohmann::ordered_json& norms =
          health.contains("norms") ? health["norms"] : nlohmann::ordered_json();
      for (const auto& [name, parameter] : health["parameters"].items()) {
        if (!is_layer_weight(name, parameter, norms)) continue;
        // The series are in model order even when a parameter's first value is left out.
        auto it = std::find_if(series.begin(), series.end(),
                               [&](const auto& item) { return item.first == name; });
        if (it == series.end()) it = series.insert(series.end(), {name, ""});
        if (!parameter.is_object() || !parameter.contains("grad_norm") ||
            !parameter["grad_norm"].is_number())
          continue;
        const double grad_norm = parameter["grad_norm"].get<double>();
        if (!std::isfinite(grad_norm) || grad_norm <= 0) continue;
        char line[64];
        std::snprintf(line, sizeof line, "%lld %.6g\n", static_cast<long long>(step), grad_norm);
        it->second += line;
      }
    }
    std::erase_if(series, [](const auto& item) { return item.second.empty(); });
    if (series.empty()) continue;
    const std::string title =
        std::get<2>(key) +
        (several_pairs ? ", " + std::to_string(std::get<0>(key)) + " ranks, " +
                             study.batch_label() + " " + std::to_string(std::get<1>(key))
                       : "") +
        " (seed " + std::to_string(first->seed) + ")";
    std::string plot = "set title " + quoted(title) + "\nplot ";
    for (const auto& [name, lines] : series) {
      figure.data += "# " + title + ", " + name + ": step, gradient norm\n" + lines + "\n\n";
      plot += "'" + figure.name + ".dat' index " + std::to_string(index++) +
              " using 1:2 with lines linewidth 1.5 title " + quoted(name) + ", \\\n     ";
    }
    plot +=
        "1e-4 with lines linecolor rgb '#a0a0a0' notitle, 1e-1 with lines linecolor rgb '#a0a0a0' "
        "notitle\n";
    panels.push_back(plot);
  }
  if (panels.empty()) return {};
  const std::size_t columns = panels.size() == 1 ? 1 : 2;
  const std::size_t rows = (panels.size() + columns - 1) / columns;
  figure.script = gnuplot_head(figure.name + ".png", "gradient norm per layer",
                               std::to_string(columns == 1 ? 900 : 1400) + "," +
                                   std::to_string(60 + 420 * rows)) +
                  "set logscale y\nset format y '%g'\nset xlabel 'step'\nset format x "
                  "'%.0s%c'\nset ylabel 'gradient norm'\n"
                  "set multiplot layout " +
                  std::to_string(rows) + "," + std::to_string(columns) +
                  " title 'gradient norm per Linear/Conv weight'\n";
  for (const std::string& panel : panels) figure.script += panel;
  figure.script += "unset multiplot\n";
  return {figure};
}

std::vector<Figure> figures(const Study& study) {
  std::vector<Figure> out;
  const std::string batch_label = study.batch_label();
  for (const int64_t p : study.ranks) {
    Figure figure{"error_vs_batch_np" + std::to_string(p), "", "", ""};
    std::string plot;
    int index = 0;
    for (const std::string& norm : study.norms) {
      std::string block;
      for (const int64_t batch : study.batches) {
        const Group* group = study.find(p, batch, norm);
        if (!group || group->error_percent.empty()) continue;
        const MeanStd value = mean_std(group->error_percent);
        block +=
            std::to_string(batch) + " " + fixed(value.mean, 4) + " " + fixed(value.std, 4) + "\n";
      }
      if (block.empty()) continue;
      figure.data +=
          "# norm " + norm + ": " + batch_label + ", test error % mean, std\n" + block + "\n\n";
      plot += std::string(plot.empty() ? "plot " : ", \\\n     ") + "'" + figure.name +
              ".dat' index " + std::to_string(index++) +
              " using 1:2:3 with yerrorlines pointtype 7 title " + quoted(norm);
    }
    if (plot.empty()) continue;
    figure.script =
        gnuplot_head(figure.name + ".png",
                     "test error vs " + batch_label + ", " + std::to_string(p) + " ranks") +
        "set logscale x 2\nset xlabel '" + batch_label +
        "'\nset ylabel 'test error (%)'\nset offsets graph 0.05, graph 0.05, 0, 0\n" + plot + "\n";
    out.push_back(figure);
  }
  if (study.ranks.size() > 1) {
    const std::map<Key, double> efficiency = efficiencies(study);
    for (const int64_t batch : study.batches) {
      const std::string suffix = "_b" + std::to_string(batch);
      Figure ips{"throughput_vs_ranks" + suffix, "", "", ""},
          eff{"efficiency_vs_ranks" + suffix, "", "", ""};
      std::string ips_plot, eff_plot;
      int index = 0;
      for (const std::string& norm : study.norms) {
        std::string block;
        for (const int64_t p : study.ranks) {
          const Group* group = study.find(p, batch, norm);
          if (!group || group->images_per_second.empty()) continue;
          block += std::to_string(p) + " " + fixed(mean_of(group->images_per_second), 2) + " " +
                   fixed(100 * efficiency.at({p, batch, norm}), 2) + "\n";
        }
        if (block.empty()) continue;
        const std::string data =
            "# norm " + norm + ": ranks, images/s, scaling efficiency %\n" + block + "\n\n";
        ips.data += data;
        const std::string item = "'" + ips.name + ".dat' index " + std::to_string(index++);
        ips_plot += std::string(ips_plot.empty() ? "plot " : ", \\\n     ") + item +
                    " using 1:2 with linespoints pointtype 7 title " + quoted(norm);
        eff_plot += std::string(eff_plot.empty() ? "plot " : ", \\\n     ") + item +
                    " using 1:3 with linespoints pointtype 7 title " + quoted(norm);
      }
      if (ips_plot.empty()) continue;
      const std::string axes = "set logscale x 2\nset xlabel 'ranks P'\n";
      ips.script = gnuplot_head(ips.name + ".png",
                                "images/s vs ranks, " + batch_label + " " + std::to_string(batch)) +
                   axes + "set ylabel 'images/s'\n" + ips_plot + "\n";
      // Both figures read the throughput figure's data file.
      eff.script = gnuplot_head(eff.name + ".png", "scaling efficiency vs ranks, " + batch_label +
                                                       " " + std::to_string(batch)) +
                   axes + "set ylabel 'scaling efficiency (%)'\nset yrange [0:*]\n" + eff_plot +
                   "\n";
      out.push_back(ips);
      out.push_back(eff);
    }
  }
  if (study.has_time) {
    Figure figure{"time_breakdown", "# cell", "", ""};
    for (const std::string& part : kDisjointParts) figure.data += " " + part;
    figure.data += "   (ms per step)\n";
    for (const auto& [key, group] : study.groups) {
      const auto& [p, batch, norm] = key;
      // Quoted: a setting's label has spaces, and the label is one column (the x tic).
      figure.data += "\"np" + std::to_string(p) + "-b" + std::to_string(batch) + "-" + norm + "\"";
      for (const std::string& part : kDisjointParts) {
        const auto values = group.time_ms.find(part);
        figure.data += " " + (values == group.time_ms.end() || values->second.empty()
                                  ? std::string("0")
                                  : fixed(mean_of(values->second), 4));
      }
      figure.data += "\n";
    }
    std::string plot;
    for (std::size_t i = 0; i < kDisjointParts.size(); ++i) {
      plot += std::string(i == 0 ? "plot '" + figure.name + ".dat' using 2:xtic(1)"
                                 : ", \\\n     '' using " + std::to_string(i + 2)) +
              " title '" + kDisjointParts[i] + "'";
    }
    figure.script =
        gnuplot_head(figure.name + ".png", "time per step by component") +
        "set style data histograms\nset style histogram rowstacked\n"
        "set style fill solid 0.8 border -1\nset boxwidth 0.75\n"
        "set xtics rotate by -45 scale 0\nset ylabel 'ms per step'\nset yrange [0:*]\n" +
        plot + "\n";
    out.push_back(figure);
  }
  for (const std::vector<Figure>& more : {accuracy_figures(study), gradient_figures(study)})
    out.insert(out.end(), more.begin(), more.end());
  return out;
}

bool have_gnuplot() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

}  // namespace

MeanStd mean_std(const std::vector<double>& values) {
  MeanStd out;
  out.n = static_cast<int64_t>(values.size());
  if (values.empty()) return out;
  double sum = 0;
  for (const double value : values) sum += value;
  out.mean = sum / static_cast<double>(out.n);
  if (out.n > 1) {
    // s^2 = sum (x - mean)^2 / (n - 1)
    double squares = 0;
    for (const double value : values) squares += (value - out.mean) * (value - out.mean);
    out.std = std::sqrt(squares / static_cast<double>(out.n - 1));
  }
  return out;
}

std::string format_mean_std(const MeanStd& value, int decimals) {
  if (value.n <= 1) return fixed(value.mean, decimals);
  return fixed(value.mean, decimals) + " ± " + fixed(value.std, decimals);
}

ReportOutcome write_report(const std::string& dir) {
  const Study study = load(dir);
  const fs::path root(dir), figure_dir = root / "figures";
  fs::create_directories(figure_dir);
  ReportOutcome outcome;
  const std::vector<Figure> all = figures(study);
  const bool gnuplot = have_gnuplot();
  for (const Figure& figure : all) {
    if (!figure.data.empty()) write_text(figure_dir / (figure.name + ".dat"), figure.data);
    write_text(figure_dir / (figure.name + ".gp"), figure.script);
    if (!gnuplot) continue;
    const std::string command = "cd " + shell_quote(figure_dir.string()) + " && gnuplot " +
                                shell_quote(figure.name + ".gp") + " 2>>gnuplot.log";
    SYNCBN_CHECK(std::system(command.c_str()) == 0, "gnuplot failed on ",
                 (figure_dir / (figure.name + ".gp")).string(), " (see ",
                 (figure_dir / "gnuplot.log").string(), ")");
    outcome.figures.push_back((figure_dir / (figure.name + ".png")).string());
  }
  if (!gnuplot)
    outcome.warning =
        "gnuplot not found (apt-get install gnuplot-nox): figures/*.gp and *.dat are written, "
        "the PNGs are not";

  std::ostringstream md;
  md << "# Scaling study\n\n"
     << study.ok_cells << " cells ok, " << study.failed.size() << " failed; mode " << study.mode
     << (study.model.empty() ? "" : ", model " + study.model)
     << ". Data: `results.csv`, `results.jsonl`; per cell: `cells/<id>/` (log, metrics). "
        "Regenerate with `syncbn-study report DIR`.\n\n";
  if (fs::exists(root / "projection.md"))
    md << "A projection to other scales: [projection.md](projection.md) (below).\n\n";
  md << error_tables(study);
  if (!study.sweep_keys.empty() || study.has_divergence) md << divergence_table(study);
  md << health_section(health_by_setting(study));
  md << throughput_table(study) << time_table(study);
  if (!study.failed.empty()) {
    md << "## Failed cells\n\n" << table_head({"cell", "error"});
    for (const json& row : study.failed) {
      std::string error = row.value("error", "");
      std::replace(error.begin(), error.end(), '|', '/');
      md << table_row({row["cell"].get<std::string>(), error});
    }
    md << "\n";
  }
  md << "## Figures\n\n";
  if (!outcome.warning.empty()) md << outcome.warning << ".\n\n";
  for (const Figure& figure : all)
    md << "![" << figure.name << "](figures/" << figure.name << ".png)\n\n"
       << (figure.caption.empty() ? "" : figure.caption + "\n\n");
  md << "Each figure's data and gnuplot script are next to it: `figures/<name>.dat`, "
        "`figures/<name>.gp` (`cd figures && gnuplot <name>.gp`).\n";
  if (fs::exists(root / "projection.md"))
    md << "\n## Projection\n\n(from [projection.md](projection.md))\n\n"
       << std::ifstream(root / "projection.md").rdbuf() << "\n";
  outcome.report_path = (root / "report.md").string();
  write_text(outcome.report_path, md.str());
  return outcome;
}

}  // namespace syncbn::study
