#include "study/results.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>

#include "syncbn/error.h"

namespace syncbn::study {

namespace fs = std::filesystem;
using nlohmann::json;

const std::vector<std::string> kTimeParts = {
    "data", "forward", "backward", "syncbn_comm", "grad_comm_exposed", "optimizer", "other"};
const std::vector<std::string> kTrafficParts = {"syncbn_allreduce", "grad_allreduce", "other"};

namespace {

// The nested per-step objects of a row, with the prefix of their flattened CSV columns.
struct PerStepGroup {
  const char* row_key;
  const char* metrics_key;
  const char* csv_prefix;
  const std::vector<std::string>& parts;
};
const std::vector<PerStepGroup> kPerStepGroups = {
    {"time_per_step", "time", "time_", kTimeParts},
    {"bytes_per_step", "bytes", "bytes_", kTrafficParts},
    {"collectives_per_step", "collectives", "collectives_", kTrafficParts},
};

const std::vector<std::string> kLeadingColumns = {"cell",
                                                  "status",
                                                  "ranks",
                                                  "batch_per_rank",
                                                  "global_batch",
                                                  "norm",
                                                  "seed",
                                                  "mode",
                                                  "lr",
                                                  "model",
                                                  "sweep",
                                                  "final_test_accuracy",
                                                  "best_test_accuracy",
                                                  "final_test_loss",
                                                  "images_per_second",
                                                  "seconds",
                                                  "steps"};
const std::vector<std::string> kTrailingColumns = {"diverged_at_step", "error", "metrics_file",
                                                   "command"};

json number_or_null(const json& object, const char* key) {
  if (object.is_object() && object.contains(key) && object[key].is_number()) return object[key];
  return nullptr;
}

std::string field_text(const json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  SYNCBN_CHECK(out.good(), "cannot write '", path.string(), "'");
}

}  // namespace

std::string sweep_text(const json& sweep) {
  std::string text;
  if (!sweep.is_object()) return text;
  for (const auto& [key, value] : sweep.items())
    text += (text.empty() ? "" : " ") + key + "=" + field_text(value);
  return text;
}

json summarize_metrics(std::istream& lines, const std::string& name) {
  json last = nullptr, best = nullptr;
  int64_t epochs = 0, previous_step = 0, timed_steps = 0;
  std::vector<std::vector<double>> totals(kPerStepGroups.size());
  std::vector<bool> seen(kPerStepGroups.size(), false);
  for (std::size_t g = 0; g < kPerStepGroups.size(); ++g)
    totals[g].assign(kPerStepGroups[g].parts.size(), 0.0);
  json diverged = nullptr;
  std::string line;
  for (int64_t number = 1; std::getline(lines, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    // --health K writes its reports between the epochs: not epochs, and most of the file.
    if (line.rfind("{\"health_step\"", 0) == 0) continue;
    json epoch;
    try {
      epoch = json::parse(line);
    } catch (const json::exception& e) {
      SYNCBN_FAIL(name, " line ", number, " is not JSON: ", e.what());
    }
    SYNCBN_CHECK(epoch.is_object(), name, " line ", number, " is not a JSON object");
    ++epochs;
    last = epoch;
    const json accuracy = number_or_null(epoch, "test_accuracy");
    if (!accuracy.is_null() && (best.is_null() || accuracy.get<double>() > best.get<double>()))
      best = accuracy;
    // Steps of this epoch: the metrics say so, or the step counter's advance does.
    const json step = number_or_null(epoch, "step");
    const json in_epoch = number_or_null(epoch, "steps_in_epoch");
    int64_t steps = 0;
    if (!in_epoch.is_null()) {
      steps = in_epoch.get<int64_t>();
    } else if (!step.is_null()) {
      steps = step.get<int64_t>() - previous_step;
    }
    if (!step.is_null()) previous_step = step.get<int64_t>();
    timed_steps += steps;
    for (std::size_t g = 0; g < kPerStepGroups.size(); ++g) {
      const json& group = epoch.contains(kPerStepGroups[g].metrics_key)
                              ? epoch[kPerStepGroups[g].metrics_key]
                              : json(nullptr);
      if (!group.is_object()) continue;
      seen[g] = true;
      for (std::size_t p = 0; p < kPerStepGroups[g].parts.size(); ++p) {
        const json value = number_or_null(group, kPerStepGroups[g].parts[p].c_str());
        if (!value.is_null()) totals[g][p] += value.get<double>();
      }
    }
    if (epoch.contains("diverged_at_step") && !epoch["diverged_at_step"].is_null())
      diverged = epoch["diverged_at_step"];
  }
  json summary = {
      {"final_test_accuracy", number_or_null(last, "test_accuracy")},
      {"best_test_accuracy", best},
      {"final_test_loss", number_or_null(last, "test_loss")},
      {"images_per_second", number_or_null(last, "images_per_second")},
      {"steps", number_or_null(last, "step")},
      {"epochs", epochs},
  };
  for (std::size_t g = 0; g < kPerStepGroups.size(); ++g) {
    json per_step = json::object();
    for (std::size_t p = 0; p < kPerStepGroups[g].parts.size(); ++p) {
      per_step[kPerStepGroups[g].parts[p]] =
          seen[g] && timed_steps > 0 ? json(totals[g][p] / static_cast<double>(timed_steps))
                                     : json(nullptr);
    }
    summary[kPerStepGroups[g].row_key] = per_step;
  }
  if (!diverged.is_null()) summary["diverged_at_step"] = diverged;
  return summary;
}

json make_row(const Cell& cell, const StudySpec& spec, const CellOutcome& outcome) {
  json row = {
      {"cell", cell.id},
      {"ranks", cell.ranks},
      {"batch_per_rank", cell.batch_per_rank},
      {"global_batch", cell.global_batch},
      {"norm", cell.norm.name},
      {"seed", cell.seed},
      {"mode", spec.mode},
      {"lr", cell.lr},
      {"model", spec.model},
      {"status", outcome.ok ? "ok" : "failed"},
  };
  json sweep = json::object();
  for (const auto& [key, value] : cell.sweep) sweep[key] = value;
  row["sweep"] = sweep;
  if (!outcome.ok) row["error"] = outcome.error;
  for (const char* key : {"final_test_accuracy", "best_test_accuracy", "final_test_loss",
                          "images_per_second", "steps"})
    row[key] = outcome.summary.contains(key) ? outcome.summary[key] : json(nullptr);
  row["seconds"] = outcome.seconds;
  for (const PerStepGroup& group : kPerStepGroups) {
    if (outcome.summary.contains(group.row_key)) {
      row[group.row_key] = outcome.summary[group.row_key];
    } else {
      json empty = json::object();
      for (const std::string& part : group.parts) empty[part] = nullptr;
      row[group.row_key] = empty;
    }
  }
  if (outcome.summary.contains("diverged_at_step"))
    row["diverged_at_step"] = outcome.summary["diverged_at_step"];
  row["command"] = outcome.command;
  row["metrics_file"] = outcome.metrics_file;
  return row;
}

std::vector<std::string> csv_columns() {
  std::vector<std::string> columns = kLeadingColumns;
  for (const PerStepGroup& group : kPerStepGroups)
    for (const std::string& part : group.parts) columns.push_back(group.csv_prefix + part);
  columns.insert(columns.end(), kTrailingColumns.begin(), kTrailingColumns.end());
  return columns;
}

std::string csv_escape(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (const char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string csv_line(const json& row) {
  std::string line;
  for (const std::string& column : csv_columns()) {
    json value = nullptr;
    if (column == "sweep") {
      value = sweep_text(row.value("sweep", json::object()));
    } else if (row.contains(column)) {
      value = row[column];
    } else {
      for (const PerStepGroup& group : kPerStepGroups) {
        const std::string prefix = group.csv_prefix;
        if (column.rfind(prefix, 0) == 0 && row.contains(group.row_key) &&
            row[group.row_key].is_object())
          value = row[group.row_key].value(column.substr(prefix.size()), json(nullptr));
      }
    }
    if (!line.empty()) line += ',';
    line += csv_escape(field_text(value));
  }
  return line;
}

std::vector<json> read_rows(const std::string& dir) {
  const fs::path path = fs::path(dir) / "results.jsonl";
  std::vector<json> rows;
  std::ifstream in(path);
  if (!in) return rows;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      rows.push_back(json::parse(line));
    } catch (const json::exception& e) {
      SYNCBN_FAIL(path.string(), " line ", number, " is not JSON (", e.what(),
                  "): repair or remove that line");
    }
    SYNCBN_CHECK(rows.back().is_object() && rows.back().contains("cell"), path.string(), " line ",
                 number, " is not a results row (no \"cell\")");
  }
  return rows;
}

std::string csv_header() {
  std::string header;
  for (const std::string& column : csv_columns()) {
    if (!header.empty()) header += ',';
    header += column;
  }
  return header;
}

void append_row(const std::string& dir, const json& row) {
  const fs::path jsonl = fs::path(dir) / "results.jsonl", csv = fs::path(dir) / "results.csv";
  const bool new_csv = !fs::exists(csv) || fs::file_size(csv) == 0;
  std::ofstream json_out(jsonl, std::ios::app);
  json_out << row.dump() << '\n';
  json_out.flush();
  SYNCBN_CHECK(json_out.good(), "cannot append to '", jsonl.string(), "'");
  std::ofstream csv_out(csv, std::ios::app);
  if (new_csv) csv_out << csv_header() << '\n';
  csv_out << csv_line(row) << '\n';
  csv_out.flush();
  SYNCBN_CHECK(csv_out.good(), "cannot append to '", csv.string(), "'");
}

void rewrite_rows(const std::string& dir, const std::vector<json>& rows) {
  std::string jsonl_text, csv_text = csv_header() + '\n';
  for (const json& row : rows) {
    jsonl_text += row.dump() + '\n';
    csv_text += csv_line(row) + '\n';
  }
  for (const auto& [name, text] :
       {std::pair<std::string, const std::string&>{"results.jsonl", jsonl_text},
        {"results.csv", csv_text}}) {
    const fs::path path = fs::path(dir) / name, temporary = fs::path(dir) / (name + ".tmp");
    write_file(temporary, text);
    fs::rename(temporary, path);
  }
}

std::string shell_quote(const std::string& word) {
  const bool safe = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           std::string_view("_@%+=:,./-").find(c) != std::string_view::npos;
  });
  if (safe) return word;
  std::string out = "'";
  for (const char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string shell_join(const std::vector<std::string>& words) {
  std::string line;
  for (const std::string& word : words) {
    if (!line.empty()) line += ' ';
    line += shell_quote(word);
  }
  return line;
}

}  // namespace syncbn::study
