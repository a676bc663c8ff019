#include "study/step_model_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <istream>
#include <map>
#include <sstream>

#include "syncbn/error.h"

namespace syncbn::study {

namespace {

using nlohmann::json;

// The JSON objects of a JSON-lines input; blank lines and lines that are not JSON objects
// (a benchmark's human-readable table) are skipped.
std::vector<json> json_objects(std::istream& lines) {
  std::vector<json> rows;
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line.front() != '{') continue;
    json row = json::parse(line, nullptr, false);
    if (!row.is_discarded() && row.is_object()) rows.push_back(std::move(row));
  }
  return rows;
}

double number_or(const json& object, const char* key, double fallback) {
  const auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<double>() : fallback;
}

std::string format(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof text, pattern, value);
  return text;
}

}  // namespace

std::vector<AllreducePoint> read_allreduce_points(std::istream& lines, const std::string& name) {
  std::vector<AllreducePoint> points;
  for (const json& row : json_objects(lines)) {
    if (row.value("bench", "") != "allreduce") continue;
    AllreducePoint point{static_cast<int64_t>(number_or(row, "ranks", 0)),
                         number_or(row, "bytes", -1), number_or(row, "seconds", -1)};
    SYNCBN_CHECK(point.ranks >= 1 && point.bytes >= 0 && point.seconds > 0, name,
                 ": allreduce row without positive ranks, bytes and seconds: ", row.dump());
    points.push_back(point);
  }
  SYNCBN_CHECK(!points.empty(), name, ": no {\"bench\": \"allreduce\", ...} rows");
  return points;
}

Network fit_network(const std::vector<AllreducePoint>& points, AllreduceAlgorithm algorithm) {
  std::vector<AllreducePoint> used;
  double smallest = 1e300, largest = 0;
  for (const auto& p : points) {
    if (p.ranks < 2) continue;
    used.push_back(p);
    smallest = std::min(smallest, p.bytes);
    largest = std::max(largest, p.bytes);
  }
  SYNCBN_CHECK(!used.empty() && largest > smallest,
               "fitting the network needs allreduce times at P > 1 for at least two sizes");
  auto loss = [&](double log_alpha, double log_bandwidth) {
    const Network network{std::exp(log_alpha), std::exp(log_bandwidth)};
    double sum = 0;
    for (const auto& p : used) {
      const double r =
          std::log(allreduce_seconds(algorithm, p.ranks, p.bytes, network) / p.seconds);
      sum += r * r;
    }
    return sum;
  };
  // alpha from 10 ns to 100 ms, bandwidth from 1 MB/s to 10 TB/s, in log space; each pass
  // searches a 101 x 101 grid and the next one a grid 20 times finer around the best.
  double lo_a = std::log(1e-8), hi_a = std::log(1e-1), lo_b = std::log(1e6), hi_b = std::log(1e13);
  double best_a = 0, best_b = 0;
  for (int pass = 0; pass < 4; ++pass) {
    double best = 1e300;
    const int n = 100;
    for (int i = 0; i <= n; ++i) {
      for (int j = 0; j <= n; ++j) {
        const double a = lo_a + (hi_a - lo_a) * i / n, b = lo_b + (hi_b - lo_b) * j / n;
        const double value = loss(a, b);
        if (value < best) {
          best = value;
          best_a = a;
          best_b = b;
        }
      }
    }
    const double span_a = (hi_a - lo_a) / 20, span_b = (hi_b - lo_b) / 20;
    lo_a = best_a - span_a;
    hi_a = best_a + span_a;
    lo_b = best_b - span_b;
    hi_b = best_b + span_b;
  }
  return {std::exp(best_a), std::exp(best_b)};
}

MeasuredStep measured_from_metrics(std::istream& lines, const std::string& name) {
  std::vector<json> rows;
  for (json& row : json_objects(lines)) {
    if (row.contains("seconds") && row.contains("world_size")) rows.push_back(std::move(row));
  }
  SYNCBN_CHECK(!rows.empty(), name, ": no syncbn-train metrics line (with seconds, world_size)");
  std::vector<int64_t> steps(rows.size());
  int64_t previous = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto counter = static_cast<int64_t>(number_or(rows[i], "step", 0));
    steps[i] = static_cast<int64_t>(number_or(rows[i], "steps_in_epoch", counter - previous));
    previous = counter;
  }
  const std::size_t first = rows.size() > 1 ? 1 : 0;  // the first epoch warms up
  MeasuredStep m;
  m.ranks = static_cast<int64_t>(number_or(rows.back(), "world_size", 0));
  m.batch_per_rank = static_cast<int64_t>(number_or(rows.back(), "batch_size", 0));
  m.has_phases = true;
  double seconds = 0;
  json phases = json::object();
  for (std::size_t i = first; i < rows.size(); ++i) {
    seconds += number_or(rows[i], "seconds", 0);
    m.steps += steps[i];
    const auto time = rows[i].find("time");
    if (time == rows[i].end() || !time->is_object()) {
      m.has_phases = false;
      continue;
    }
    for (const char* key : {"data", "forward", "backward", "syncbn_comm", "grad_comm_exposed",
                            "optimizer", "other"}) {
      phases[key] = number_or(phases, key, 0) + number_or(*time, key, 0);
    }
  }
  SYNCBN_CHECK(m.steps > 0 && m.ranks > 0 && m.batch_per_rank > 0, name,
               ": metrics without steps, world_size or batch_size");
  const double steps_count = static_cast<double>(m.steps);
  m.total = seconds / steps_count;
  if (m.has_phases) {
    m.data = number_or(phases, "data", 0) / steps_count;
    m.forward = number_or(phases, "forward", 0) / steps_count;
    m.backward = number_or(phases, "backward", 0) / steps_count;
    m.syncbn_comm = number_or(phases, "syncbn_comm", 0) / steps_count;
    m.grad_comm_exposed = number_or(phases, "grad_comm_exposed", 0) / steps_count;
    m.optimizer = number_or(phases, "optimizer", 0) / steps_count;
    m.other = number_or(phases, "other", 0) / steps_count;
  }
  return m;
}

std::vector<std::pair<std::string, MeasuredStep>> measured_from_results(std::istream& lines,
                                                                        const std::string& name,
                                                                        const std::string& model) {
  std::vector<std::pair<std::string, MeasuredStep>> runs;
  for (const json& row : json_objects(lines)) {
    if (row.value("status", "") != "ok" || row.value("model", "") != model) continue;
    MeasuredStep m;
    m.ranks = static_cast<int64_t>(number_or(row, "ranks", 0));
    m.batch_per_rank = static_cast<int64_t>(number_or(row, "batch_per_rank", 0));
    m.steps = static_cast<int64_t>(number_or(row, "steps", 0));
    const auto time = row.find("time_per_step");
    if (time != row.end() && time->is_object() && time->contains("forward")) {
      m.has_phases = true;
      m.data = number_or(*time, "data", 0);
      m.forward = number_or(*time, "forward", 0);
      m.backward = number_or(*time, "backward", 0);
      m.syncbn_comm = number_or(*time, "syncbn_comm", 0);
      m.grad_comm_exposed = number_or(*time, "grad_comm_exposed", 0);
      m.optimizer = number_or(*time, "optimizer", 0);
      m.other = number_or(*time, "other", 0);
      m.total = m.data + m.forward + m.backward + m.grad_comm_exposed + m.optimizer + m.other;
    } else {
      const double images = number_or(row, "images_per_second", 0);
      const double global = number_or(row, "global_batch", 0);
      if (images <= 0 || global <= 0) continue;
      m.total = global / images;
    }
    SYNCBN_CHECK(m.ranks > 0 && m.batch_per_rank > 0, name,
                 ": results row without ranks or batch_per_rank: ", row.value("cell", "?"));
    runs.emplace_back(row.value("norm", "?"), m);
  }
  return runs;
}

ComputeProfile compute_of_run(const MeasuredStep& run) {
  SYNCBN_CHECK(run.has_phases, "a run without per-phase times has no compute of its own");
  ComputeProfile profile;
  profile.data.fixed = run.data + run.other;
  profile.forward.fixed = std::max(0.0, run.forward - run.syncbn_comm / 2);
  profile.backward.fixed = std::max(0.0, run.backward - run.syncbn_comm / 2);
  profile.optimizer.fixed = run.optimizer;
  return profile;
}

ComputeProfile fit_compute(const std::vector<MeasuredStep>& single_rank_runs) {
  SYNCBN_CHECK(!single_rank_runs.empty(), "no single-rank runs to fit compute to");
  bool phases = true;
  for (const auto& run : single_rank_runs) {
    SYNCBN_CHECK(run.ranks == 1,
                 "compute is fitted to single-rank runs; got one at P = ", run.ranks);
    phases = phases && run.has_phases;
  }
  auto fit = [&](auto seconds_of) {
    std::vector<std::pair<double, double>> points;
    for (const auto& run : single_rank_runs) {
      points.emplace_back(static_cast<double>(run.batch_per_rank), seconds_of(run));
    }
    return fit_linear(points);
  };
  if (!phases) return profile_from_total(fit([](const MeasuredStep& r) { return r.total; }));
  ComputeProfile profile;
  profile.data = fit([](const MeasuredStep& r) { return compute_of_run(r).data.fixed; });
  profile.forward = fit([](const MeasuredStep& r) { return compute_of_run(r).forward.fixed; });
  profile.backward = fit([](const MeasuredStep& r) { return compute_of_run(r).backward.fixed; });
  profile.optimizer = fit([](const MeasuredStep& r) { return compute_of_run(r).optimizer.fixed; });
  return profile;
}

nlohmann::ordered_json compute_to_json(const ComputeProfile& compute) {
  nlohmann::ordered_json out;
  const std::pair<const char*, const LinearFit*> phases[] = {{"data", &compute.data},
                                                             {"forward", &compute.forward},
                                                             {"backward", &compute.backward},
                                                             {"optimizer", &compute.optimizer}};
  for (const auto& [key, fit] : phases) {
    out[key] = {{"fixed_seconds", fit->fixed}, {"per_sample_seconds", fit->per_sample}};
  }
  return out;
}

ComputeProfile compute_from_json(const json& in, const std::string& where) {
  SYNCBN_CHECK(in.is_object(), where, ": compute must be an object of phases");
  ComputeProfile compute;
  const std::pair<const char*, LinearFit*> phases[] = {{"data", &compute.data},
                                                       {"forward", &compute.forward},
                                                       {"backward", &compute.backward},
                                                       {"optimizer", &compute.optimizer}};
  for (const auto& [key, fit] : phases) {
    const auto it = in.find(key);
    if (it == in.end()) continue;
    fit->fixed = number_or(*it, "fixed_seconds", 0);
    fit->per_sample = number_or(*it, "per_sample_seconds", 0);
    SYNCBN_CHECK(fit->fixed >= 0 && fit->per_sample >= 0, where, ": negative compute time in '",
                 key, "'");
  }
  return compute;
}

Calibration read_calibration(const std::string& path) {
  std::ifstream file(path);
  SYNCBN_CHECK(file.good(), "cannot open calibration file '", path, "'");
  const json in = json::parse(file, nullptr, false);
  SYNCBN_CHECK(!in.is_discarded() && in.is_object(), path, ": not a JSON object");
  Calibration calibration;
  const auto network = in.find("network");
  SYNCBN_CHECK(network != in.end() && network->is_object(), path, ": no \"network\" object");
  calibration.network.alpha_seconds = number_or(*network, "alpha_seconds", -1);
  calibration.network.bandwidth_bytes_per_second =
      number_or(*network, "bandwidth_bytes_per_second", -1);
  SYNCBN_CHECK(
      calibration.network.alpha_seconds >= 0 && calibration.network.bandwidth_bytes_per_second > 0,
      path, ": network needs alpha_seconds >= 0 and bandwidth_bytes_per_second > 0");
  calibration.algorithm = parse_allreduce_algorithm(network->value("algorithm", "mpi"));
  if (const auto by = in.find("network_by_ranks"); by != in.end() && by->is_array()) {
    for (const auto& entry : *by) {
      const auto ranks = static_cast<int64_t>(number_or(entry, "ranks", 0));
      const Network fit{number_or(entry, "alpha_seconds", -1),
                        number_or(entry, "bandwidth_bytes_per_second", -1)};
      SYNCBN_CHECK(ranks > 1 && fit.alpha_seconds >= 0 && fit.bandwidth_bytes_per_second > 0, path,
                   ": bad network_by_ranks entry ", entry.dump());
      calibration.network_by_ranks[ranks] = fit;
    }
  }
  if (const auto compute = in.find("compute"); compute != in.end() && compute->is_object()) {
    for (const auto& [model, phases] : compute->items()) {
      calibration.compute[model] =
          compute_from_json(phases.value("phases", json::object()), path + ": " + model);
    }
  }
  return calibration;
}

std::string validation_markdown(const std::vector<ValidationRow>& rows) {
  std::ostringstream out;
  out << "| model | norm | P | batch/rank | CPU slowdown | alpha us | bandwidth MB/s | measured ms "
         "| predicted ms | measured/predicted | predicted SyncBN ms | predicted grad exposed ms | "
         "measured SyncBN ms |\n"
      << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& row : rows) {
    const auto& m = row.measured;
    const auto& p = row.predicted;
    out << "| " << row.model << " | " << row.norm << " | " << m.ranks << " | " << m.batch_per_rank
        << " | "
        << (row.compute_from_run ? std::string("run's own") : format("%.2f", row.compute_slowdown))
        << " | " << format("%.1f", 1e6 * row.network.alpha_seconds) << " | "
        << format("%.1f", row.network.bandwidth_bytes_per_second / 1e6) << " | "
        << format("%.2f", 1e3 * m.total) << " | " << format("%.2f", 1e3 * p.total) << " | "
        << format("%.2f", m.total / p.total) << " | " << format("%.3f", 1e3 * p.syncbn_comm)
        << " | " << format("%.3f", 1e3 * p.grad_comm_exposed) << " | "
        << (m.has_phases ? format("%.3f", 1e3 * m.syncbn_comm) : std::string("n/a")) << " |\n";
  }
  return out.str();
}

namespace {

StepTime project_one(const ProjectionSpec& spec, const ModelStructure& model, int64_t batch,
                     int64_t ranks, const std::string& norm) {
  StepInput input;
  input.model = model;
  input.compute = spec.compute.at(model.name);
  input.batch_per_rank = batch;
  input.ranks = ranks;
  input.norm = parse_norm_sync(norm);
  input.network = spec.network;
  input.algorithm = spec.algorithm;
  return predict_step(input);
}

std::string percent(double share) { return format("%.1f%%", 100 * share); }

}  // namespace

std::string projection_markdown(const ProjectionSpec& given) {
  SYNCBN_CHECK(!given.models.empty() && !given.ranks.empty() && !given.batches.empty() &&
                   !given.norms.empty(),
               "projection needs models, ranks, batches and norms");
  // Ascending ranks and batches: the tables read in order and "from P = ..." is the first P.
  ProjectionSpec spec = given;
  std::sort(spec.ranks.begin(), spec.ranks.end());
  std::sort(spec.batches.begin(), spec.batches.end());
  for (const auto& norm : spec.norms) parse_norm_sync(norm);  // names are checked up front
  std::ostringstream out;
  std::ostringstream conclusion;
  out << "Network: alpha = " << format("%.2f", 1e6 * spec.network.alpha_seconds)
      << " us per message step, bandwidth = "
      << format("%.2f", spec.network.bandwidth_bytes_per_second / 1e9) << " GB/s, allreduce "
      << allreduce_algorithm_name(spec.algorithm) << ".\n\n";
  for (const auto& name : spec.models) {
    SYNCBN_CHECK(spec.compute.count(name) == 1, "projection: no compute times for model '", name,
                 "'");
    const ModelStructure model = model_structure(name);
    const ComputeProfile& c = spec.compute.at(name);
    int64_t channels = 0;
    for (const int64_t ch : model.batch_norm_channels) channels += ch;
    out << "### " << name << "\n\n"
        << model.batch_norm_channels.size() << " BatchNorm layers (" << channels
        << " channels in all), " << model.parameters << " parameters in "
        << model.bucket_bytes.size() << " gradient bucket(s). Compute per step: "
        << format("%.3f",
                  1e3 * (c.data.fixed + c.forward.fixed + c.backward.fixed + c.optimizer.fixed))
        << " ms + "
        << format("%.4f", 1e3 * (c.data.per_sample + c.forward.per_sample + c.backward.per_sample +
                                 c.optimizer.per_sample))
        << " ms per sample.\n\n| batch/rank | P |";
    for (const auto& norm : spec.norms) out << " " << norm << " ms |";
    for (const auto& norm : spec.norms) {
      if (parse_norm_sync(norm).sync) out << " " << norm << " SyncBN share |";
    }
    out << "\n|---:|---:|";
    for (const auto& norm : spec.norms) {
      out << "---:|";
      if (parse_norm_sync(norm).sync) out << "---:|";
    }
    out << "\n";
    // (batch, ranks) -> the step time of each norm, in the order of spec.norms; the conclusion
    // reads the same numbers.
    std::map<std::pair<int64_t, int64_t>, std::vector<StepTime>> step_times;
    for (const int64_t batch : spec.batches) {
      for (const int64_t ranks : spec.ranks) {
        out << "| " << batch << " | " << ranks << " |";
        std::vector<StepTime>& times = step_times[{batch, ranks}];
        for (const auto& norm : spec.norms) {
          times.push_back(project_one(spec, model, batch, ranks, norm));
          out << " " << format("%.3f", 1e3 * times.back().total) << " |";
        }
        for (std::size_t i = 0; i < spec.norms.size(); ++i) {
          if (parse_norm_sync(spec.norms[i]).sync) {
            out << " " << percent(times[i].syncbn_comm / times[i].total) << " |";
          }
        }
        out << "\n";
      }
    }
    out << "\n";

    // The conclusion, from the same numbers.
    const int64_t smallest = spec.ranks.front();
    const int64_t largest = spec.ranks.back();
    for (std::size_t n = 0; n < spec.norms.size(); ++n) {
      const std::string& norm = spec.norms[n];
      if (!parse_norm_sync(norm).sync) continue;
      // Per batch: the first P where SyncBN's share passes the threshold, and its share at the
      // smallest and largest P.
      conclusion << "- " << name << ", " << norm << ": SyncBN's collectives exceed "
                 << percent(spec.threshold) << " of the step";
      std::vector<std::string> parts;
      for (const int64_t batch : spec.batches) {
        std::string where = "never up to P = " + std::to_string(largest);
        for (const int64_t ranks : spec.ranks) {
          const StepTime& t = step_times.at({batch, ranks})[n];
          if (t.syncbn_comm > spec.threshold * t.total) {
            where = "from P = " + std::to_string(ranks);
            break;
          }
        }
        const StepTime& low = step_times.at({batch, smallest})[n];
        const StepTime& high = step_times.at({batch, largest})[n];
        parts.push_back(
            "b = " + std::to_string(batch) + ": " + where + " (" +
            percent(low.syncbn_comm / low.total) + " at P = " + std::to_string(smallest) + ", " +
            percent(high.syncbn_comm / high.total) + " at P = " + std::to_string(largest) + ")");
      }
      for (std::size_t i = 0; i < parts.size(); ++i) conclusion << (i ? "; " : " at ") << parts[i];
      conclusion << ".\n";
    }
    // What grouping buys at the largest P: step time of each norm against local BN's.
    for (const int64_t batch : {spec.batches.front(), spec.batches.back()}) {
      conclusion << "- " << name << " at P = " << largest << ", b = " << batch << ":";
      const StepTime local = project_one(spec, model, batch, largest, "bn");
      const std::vector<StepTime>& times = step_times.at({batch, largest});
      for (std::size_t n = 0; n < spec.norms.size(); ++n) {
        conclusion << " " << spec.norms[n] << " " << format("%.3f", 1e3 * times[n].total) << " ms ("
                   << format("%.2f", times[n].total / local.total) << "x bn)";
        if (n + 1 < spec.norms.size()) conclusion << ",";
      }
      conclusion << ".\n";
      if (batch == spec.batches.back()) break;  // one batch given: one line
    }
  }
  out << "### Conclusion (computed from the tables)\n\n" << conclusion.str();
  return out.str();
}

}  // namespace syncbn::study
