#include "study/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "study/results.h"
#include "syncbn/error.h"

namespace syncbn::study {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// The parts of a step that do not overlap; syncbn_comm lies inside forward and backward.
const std::vector<std::string> kDisjointParts = {
    "data", "forward", "backward", "grad_comm_exposed", "optimizer", "other"};

// Results of one (ranks, batch, norm) over its seeds.
struct Group {
  std::vector<double> error_percent, images_per_second;
  std::map<std::string, std::vector<double>> time_ms;  // per step, by component
  int64_t global_batch = 0, batch_per_rank = 0;
};

// ranks, batch key (batch per rank in weak mode, global batch in strong mode), norm.
using Key = std::tuple<int64_t, int64_t, std::string>;

struct Study {
  std::string mode = "weak", model;
  std::vector<int64_t> ranks, batches;
  std::vector<std::string> norms;  // in the order of the results
  std::map<Key, Group> groups;
  std::vector<json> failed;
  int64_t ok_cells = 0;
  bool has_time = false;

  const char* batch_label() const { return mode == "strong" ? "global batch" : "batch/rank"; }
  const Group* find(int64_t p, int64_t batch, const std::string& norm) const {
    const auto it = groups.find({p, batch, norm});
    return it == groups.end() ? nullptr : &it->second;
  }
};

void add_unique(std::vector<int64_t>& values, int64_t value) {
  if (std::find(values.begin(), values.end(), value) == values.end()) values.push_back(value);
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
    add_unique(study.ranks, p);
    add_unique(study.batches, batch);
    if (std::find(study.norms.begin(), study.norms.end(), norm) == study.norms.end())
      study.norms.push_back(norm);
    Group& group = study.groups[{p, batch, norm}];
    group.global_batch = row.value("global_batch", int64_t{0});
    group.batch_per_rank = row.value("batch_per_rank", int64_t{0});
    if (row["final_test_accuracy"].is_number())
      group.error_percent.push_back(100.0 * (1.0 - row["final_test_accuracy"].get<double>()));
    if (row["images_per_second"].is_number())
      group.images_per_second.push_back(row["images_per_second"].get<double>());
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

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  SYNCBN_CHECK(out.good(), "cannot write '", path.string(), "'");
}

std::string gnuplot_head(const std::string& png, const std::string& title) {
  return "# Drawn by syncbn-study report; rerun with: gnuplot " + png.substr(0, png.size() - 4) +
         ".gp\nset terminal pngcairo size 900,560 noenhanced\nset output '" + png +
         "'\nset title '" + title + "'\nset key outside right top\nset grid\n";
}

// One figure: its name (without extension), data and script.
struct Figure {
  std::string name, data, script;
};

std::vector<Figure> figures(const Study& study) {
  std::vector<Figure> out;
  const std::string batch_label = study.batch_label();
  for (const int64_t p : study.ranks) {
    Figure figure{"error_vs_batch_np" + std::to_string(p), "", ""};
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
              " using 1:2:3 with yerrorlines pointtype 7 title '" + norm + "'";
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
      Figure ips{"throughput_vs_ranks" + suffix, "", ""},
          eff{"efficiency_vs_ranks" + suffix, "", ""};
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
                    " using 1:2 with linespoints pointtype 7 title '" + norm + "'";
        eff_plot += std::string(eff_plot.empty() ? "plot " : ", \\\n     ") + item +
                    " using 1:3 with linespoints pointtype 7 title '" + norm + "'";
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
    Figure figure{"time_breakdown", "# cell", ""};
    for (const std::string& part : kDisjointParts) figure.data += " " + part;
    figure.data += "   (ms per step)\n";
    for (const auto& [key, group] : study.groups) {
      const auto& [p, batch, norm] = key;
      figure.data += "np" + std::to_string(p) + "-b" + std::to_string(batch) + "-" + norm;
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
  md << error_tables(study) << throughput_table(study) << time_table(study);
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
    md << "![" << figure.name << "](figures/" << figure.name << ".png)\n\n";
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
